"""The settlement pack as one self-contained HTML page: inline CSS, charts drawn as inline SVG.

Nothing is fetched when the page opens (no script, font, style sheet or image from anywhere), so it
reads the same offline, attached to an e-mail or archived with the month's sign-off. Numbers are
printed from the engine's decimals exactly (never through a float); floats appear only as chart
coordinates.

Per contract: the month's state (approval, disputes), headline figures, a waterfall from charges
to the amount due (charges, credits, earn-back, bonus, gain-share, adjustments; the last bar is the
engine's amount due), one chart per KPI of actual against its labelled target over the twelve
months to the period, the pack's tables, a dispute notice while a dispute is open, the closed
months restated since and a sign-off block.

Made to print (A4 landscape): the summary alone on the first page, each contract from a new page,
table headers repeated on every page, rows never cut. A table wider than the page is split into
parts that repeat its first column, so nothing scrolls sideways on screen or on paper. Every
figure is a stored one: money at the contract's amount_scale (the exact working figures as their
stored `*_rounded` columns), KPIs by their stored kind, a package line in packages, a stairstep
line by the step its units reached; a difference is red by the stored exceptions, not its sign.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from html import escape
from typing import Any

from .explain.text import num, pct
from .pack_data import Column, Pack, PrintFigures, Table
from .periods import add_months, fmt

Row = dict[str, Any]

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --neg: #b42318; --pos: #1e7d4f;
        --total: #2f4a7a; --bg: #f7f9fb; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: var(--bg); font-size: 13px; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0; }
h3 { font-size: 14px; margin: 22px 0 8px; color: var(--total); text-transform: uppercase;
     letter-spacing: .04em; break-after: avoid; }
p.meta { color: var(--muted); margin: 0 0 18px; }
section.contract { background: #fff; border: 1px solid var(--line); border-radius: 8px;
                   padding: 20px 24px; margin: 28px 0; }
.state { margin: 6px 0 0; }
.state span { display: inline-block; margin-right: 14px; }
.state .flag { font-weight: 600; }
.flag.disputed, .flag.unapproved { color: var(--neg); }
.flag.approved, .flag.closed { color: var(--pos); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.card .label { color: var(--muted); font-size: 11px; text-transform: uppercase; }
.card .value { font-size: 17px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 11px; }
.card.alert { border-color: var(--neg); }
.card.alert .value { color: var(--neg); }
.card.ok .value { color: var(--pos); }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; break-inside: avoid; }
figcaption { color: var(--muted); font-size: 11px; margin-top: 2px; }
/* tables fit the page: headers on one line, numbers never wrap, text wraps; a table too wide
   for the page is split into parts that repeat its first column (no sideways scrolling) */
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums;
        font-size: 12px; margin-bottom: 8px; }
table.part { margin-top: 6px; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { padding: 3px 6px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { background: #eef2f7; font-weight: 600; font-size: 11px; white-space: nowrap; }
td { overflow-wrap: anywhere; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.num.worded { white-space: normal; min-width: 8em; }
td.month { white-space: nowrap; }
td.neg { color: var(--neg); }
td.alert { color: var(--neg); font-weight: 600; }
td.key { white-space: nowrap; }
tr.total td { font-weight: 600; border-top: 2px solid var(--ink); }
tr.restated td { background: #fff8e6; }
td.status-match { color: var(--pos); }
td.status-over_billed, td.status-under_billed, td.status-not_billed, td.status-unexpected,
td.status-failed { color: var(--neg); font-weight: 600; }
table.summary td:first-child { min-width: 9em; }
.note { color: var(--muted); font-size: 11px; margin: 4px 0 0; }
.empty { color: var(--muted); font-style: italic; }
.letter { border: 1px solid var(--neg); border-radius: 6px; padding: 10px 16px; margin: 8px 0;
          break-inside: avoid; }
.letter p { margin: 6px 0; }
.signoff { display: grid; grid-template-columns: repeat(4, 1fr); gap: 18px; margin: 10px 0 4px;
           break-inside: avoid; }
.signoff .who { border-bottom: 1px solid var(--ink); min-height: 30px; padding: 10px 2px 2px;
                font-weight: 600; }
.signoff .role { color: var(--muted); font-size: 11px; margin-top: 3px; }
@media (max-width: 1100px) { main { padding: 16px; } table { font-size: 11px; } }
@page { size: A4 landscape; margin: 10mm; }
@media print {
  body { background: #fff; font-size: 11px; }
  main { max-width: none; padding: 0; }
  section.contract { break-before: page; border: none; border-radius: 0; padding: 0; margin: 0; }
  table { font-size: 9.5px; }
  th { font-size: 9px; }
  table.summary { font-size: 9px; }
  th, td { padding: 2px 4px; }
  .card { padding: 5px 10px; }
  .card .value { font-size: 14px; }
}
"""

STEP_COLOURS = {"total": "#2f4a7a", "up": "#1e7d4f", "down": "#b42318"}
STATUS_COLOURS = {"met": "#1e7d4f", "failed": "#b42318", "excused": "#9aa5b1", "no_data": "#9aa5b1"}


# --------------------------------------------------------------------------- text

# how many characters of a part's columns fit across the page (A4 landscape at the print font,
# the screen's 1,320 px at its own): wider tables are split into parts
PART_CHARS = 150
# a wrapping text column counts this wide at most
TEXT_CHARS = 30
# a numeric column's worded cell (a stairstep's step) wraps beyond this
WORDED_CHARS = 16


def _money(value: Decimal | None, scale: int | None = 2) -> str:
    """A stored money figure at the contract's amount scale: the stored figures are rounded to
    it, so this pads (never rounds); an exact intermediate keeps every digit it has."""
    return "" if value is None else num(value, 2 if scale is None else scale)


def kpi_text(value: Decimal | None, kind: str | None) -> str:
    """A KPI value or target by its stored kind: shares as percentages, seconds with a unit."""
    if value is None:
        return ""
    if kind == "share":
        return pct(value)
    if kind == "seconds":
        return f"{num(value)} s"
    return num(value)


def _value_text(value: Any, kind: str, scale: int | None = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if kind == "money":
        return _money(value, scale)
    if kind in ("rate", "qty", "kpi", "share", "int"):
        return num(value)
    if kind == "pct":
        return pct(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return fmt(value) if kind == "month" else value.isoformat()
    return str(value)


def _is_num(column: Column) -> bool:
    return column.kind not in ("text", "month", "flag")


class View:
    """A table as printed: each cell's text (overrides from stored figures), classes per row."""

    def __init__(self, table: Table, scale: int | None = 2):
        self.table = table
        self.columns = list(table.columns)
        self.text: list[dict[str, str]] = [
            {c.key: _value_text(r.get(c.key), c.kind, scale) for c in self.columns}
            for r in table.rows
        ]
        self.row_classes: list[str] = ["" for _ in table.rows]
        self.alert: list[set[str]] = [set() for _ in table.rows]
        # a difference is not coloured by its sign: its line's status (or the exceptions) says
        # whether it is within tolerance
        self.unsigned = {"difference"}

    def chars(self, column: Column) -> int:
        longest = max([len(t[column.key]) for t in self.text] + [0])
        if column.width and column.kind == "text":
            longest = min(longest, TEXT_CHARS)
        elif _is_num(column):
            # a number never wraps; a worded price (a stairstep's step) may
            longest = max([len(t[column.key]) for t in self.text if " " not in t[column.key]] + [0])
            longest = max(longest, min(WORDED_CHARS, *[len(t[column.key]) for t in self.text]))
        return max(len(column.header), longest) + 2

    def parts(self) -> list[list[Column]]:
        """The columns in parts that fit across the page, each repeating the first column."""
        widths = [self.chars(c) for c in self.columns]
        if sum(widths) <= PART_CHARS:
            return [self.columns]
        # each part repeats the row's key (the first column that is not the currency)
        k = next((n for n, c in enumerate(self.columns) if c.key != "currency"), 0)
        key = self.columns[k]
        rest = [(c, w) for n, (c, w) in enumerate(zip(self.columns, widths, strict=True)) if n != k]
        parts, current, used = [], [key], widths[k]
        for column, width in rest:
            if used + width > PART_CHARS and len(current) > 1:
                parts.append(current)
                current, used = [key], widths[k]
            current.append(column)
            used += width
        parts.append(current)
        return parts


def _cell(view: View, i: int, column: Column) -> str:
    value = view.table.rows[i].get(column.key)
    text = escape(view.text[i][column.key])
    classes = []
    if _is_num(column):
        classes.append("num")
        if " " in view.text[i][column.key]:
            classes.append("worded")
    if column.key in view.alert[i]:
        classes.append("alert")
    elif isinstance(value, Decimal) and value < 0 and column.key not in view.unsigned:
        classes.append("neg")
    if column.kind == "month":
        classes.append("month")
    if column.key == "status" and value:
        classes.append(f"status-{value}")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{text}</td>"


def view_html(view: View, split: bool = True, css_class: str = "") -> str:
    if not view.table.rows:
        return '<p class="empty">None this month.</p>'
    out = []
    parts = view.parts() if split else [view.columns]
    for n, columns in enumerate(parts):
        head = "".join(
            f'<th class="num">{escape(c.header)}</th>'
            if _is_num(c)
            else f"<th>{escape(c.header)}</th>"
            for c in columns
        )
        body = "\n".join(
            (f'<tr class="{view.row_classes[i]}">' if view.row_classes[i] else "<tr>")
            + "".join(_cell(view, i, c) for c in columns)
            + "</tr>"
            for i in range(len(view.table.rows))
        )
        classes = " ".join(x for x in (css_class, "part" if n else "") if x)
        attr = f' class="{classes}"' if classes else ""
        out.append(f"<table{attr}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in view.table.notes)
    return "".join(out) + notes


def table_html(table: Table, scale: int | None = 2) -> str:
    return view_html(View(table, scale))


# --------------------------------------------------------------------------- charts


def _f(value: Decimal | None) -> float:
    # chart geometry only: printed figures never go through this
    return float(value) if value is not None else 0.0


def _axis_text(value: float) -> str:
    size = abs(value)
    if size >= 1_000_000:
        return f"{value / 1_000_000:.1f}m"
    if size >= 10_000:
        return f"{value / 1_000:.0f}k"
    if size >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:.0f}"


def _step(span: float, count: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 x 10^n) giving about `count` ticks over `span`."""
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = _step(high - low, count)
    return [
        round(k * step, 6)
        for k in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)
    ]


def waterfall_svg(summary: Row, currency: str, scale: int | None = 2) -> str:
    """Charges -> credits -> earn-back -> bonus -> gain-share -> adjustments -> amount due."""
    steps = [
        ("Charges", summary["charges"], "total"),
        ("Credits", summary["credits"], "step"),
        ("Earn-back", summary["earn_back"], "step"),
        ("Bonus", summary["bonus"], "step"),
        ("Gain-share", summary["gain_share"], "step"),
        ("Adjustments", summary["adjustments"], "step"),
    ]
    if summary.get("other"):
        steps.append(("Other", summary["other"], "step"))
    steps.append(("Amount due", summary["amount_due"], "total"))
    # geometry: each bar spans [start, end]; totals start at zero
    bars, level = [], 0.0
    for label, amount, kind in steps:
        value = _f(amount)
        if kind == "total":
            bars.append((label, amount, 0.0, value, "total"))
            level = value
        else:
            bars.append((label, amount, level, level + value, "up" if value >= 0 else "down"))
            level += value
    low = min(0.0, *(min(b[2], b[3]) for b in bars))
    high = max(0.0, *(max(b[2], b[3]) for b in bars))
    if high == low:
        high = low + 1
    # steps that are small against the totals would be invisible on an axis from zero: start the
    # axis below the lowest level instead, and mark the total bars as broken
    levels = [b[3] for b in bars] + [b[2] for b in bars if b[4] != "total"]
    floor = 0.0
    if low == 0.0 and min(levels) > 0 and high - min(levels) < 0.35 * high:
        wanted = min(levels) - max(high - min(levels), 0.02 * high) * 1.5
        step = _step(high - max(wanted, 0.0))
        floor = max(0.0, step * math.floor(wanted / step))
        low = floor
    width, height = 760, 300
    left, right, top, bottom = 64, 16, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    pad = (high - low) * 0.08
    low_s, high_s = low - (pad if low < 0 else 0), high + pad

    def y(v: float) -> float:
        return top + plot_h * (high_s - v) / (high_s - low_s)

    slot = plot_w / len(bars)
    bar_w = slot * 0.62
    parts = [
        f'<svg class="waterfall" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Waterfall from charges to the amount due">',
        f'<text x="{left}" y="16" font-size="12" fill="#616e7c">{escape(currency)}</text>',
    ]
    for t in _ticks(low_s, high_s):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'stroke="#e4e7eb" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#616e7c">{_axis_text(t)}</text>'
        )
    base = y(0) if floor == 0 else y(low)
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{base:.1f}" y2="{base:.1f}" '
        f'stroke="#52606d" stroke-width="1"/>'
    )
    if floor > 0:
        parts.append(
            f'<text x="{width - right}" y="16" font-size="10" text-anchor="end" '
            f'fill="#616e7c">axis from {_axis_text(floor)}, not zero</text>'
        )
    for i, (label, amount, start, end, kind) in enumerate(bars):
        x = left + slot * i + (slot - bar_w) / 2
        start = max(start, low) if kind == "total" else start
        top_y, bottom_y = y(max(start, end)), y(min(start, end))
        h = max(bottom_y - top_y, 1.0)
        colour = STEP_COLOURS[kind]
        parts.append(
            f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{escape(label)}: {_money(amount, scale)}</title></rect>'
        )
        text_y = top_y - 5 if end >= start else bottom_y + 13
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{text_y:.1f}" font-size="11" '
            f'text-anchor="middle" fill="#1f2933">{_money(amount, scale)}</text>'
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="#3e4c59">{escape(label)}</text>'
        )
        if kind == "total" and floor > 0:
            # the axis does not start at zero: a break across the bar says so
            by = bottom_y - 10
            parts.append(
                f'<path d="M{x - 3:.1f},{by + 3:.1f} L{x + bar_w + 3:.1f},{by - 3:.1f} '
                f'M{x - 3:.1f},{by + 8:.1f} L{x + bar_w + 3:.1f},{by + 2:.1f}" stroke="#fff" '
                f'stroke-width="3"/>'
            )
        if i + 1 < len(bars):
            parts.append(
                f'<line x1="{x + bar_w:.1f}" x2="{x + slot:.1f}" y1="{y(end):.1f}" '
                f'y2="{y(end):.1f}" stroke="#9aa5b1" stroke-dasharray="3 2"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _tick_text(value: float, step: float, kind: str | None) -> str:
    """An axis tick (chart geometry, never a printed figure): a share as a percentage."""
    if kind == "share":
        places = max(0, -math.floor(math.log10(step * 100) + 1e-9)) if step > 0 else 0
        return f"{value * 100:.{places}f}%"
    places = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:,.{places}f}" + (" s" if kind == "seconds" else "")


def kpi_svg(kpi_id: str, history: list[Row], months: list[dt.date], kind: str | None = None) -> str:
    """A KPI's actual (line, dots coloured by status) against its target (dashed, labelled) by
    month; the axis in the KPI's kind (a share in per cent)."""
    width, height = 330, 170
    left, right, top, bottom = 48, 62, 24, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    by_month = {r["period"]: r for r in history}
    values = [_f(r["value"]) for r in history if r["value"] is not None]
    targets = [_f(r["target"]) for r in history if r["target"] is not None]
    low, high = min(values + targets, default=0.0), max(values + targets, default=1.0)
    pad = (high - low) * 0.15 or max(abs(high) * 0.05, 0.01)
    low, high = low - pad, high + pad
    direction = (history[0].get("direction") or "") if history else ""
    arrow = {"higher_is_better": "higher is better", "lower_is_better": "lower is better"}

    def x(i: int) -> float:
        return left + plot_w * (i + 0.5) / len(months)

    def y(v: float) -> float:
        return top + plot_h * (high - v) / (high - low)

    parts = [
        f'<svg class="kpi-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(kpi_id)}: actual against target">',
        f'<text x="{left}" y="15" font-size="12" font-weight="600" fill="#1f2933">'
        f"{escape(kpi_id)}</text>",
        f'<text x="{width - right}" y="15" font-size="10" text-anchor="end" fill="#616e7c">'
        f"{escape(arrow.get(direction, direction))}</text>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfcfd" '
        f'stroke="#e4e7eb"/>',
    ]
    ticks = _ticks(low, high, 4)
    if kind == "share":
        # a share lies in [0, 1]: no tick beyond 0% or 100%
        ticks = [t for t in ticks if -1e-9 <= t <= 1 + 1e-9] or ticks
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.0
    for t in ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'stroke="#eef1f4"/>'
            f'<text x="{left - 4}" y="{y(t) + 3:.1f}" font-size="9" text-anchor="end" '
            f'fill="#616e7c" class="tick">{_tick_text(t, step, kind)}</text>'
        )
    for i, month in enumerate(months):
        if (len(months) - 1 - i) % 3 == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - 12}" font-size="9" text-anchor="middle" '
                f'fill="#616e7c">{month:%b %y}</text>'
            )

    def path(points: list[tuple[float, float] | None], step: bool) -> str:
        segments, current = [], []
        for p in points:
            if p is None:
                if current:
                    segments.append(current)
                current = []
                continue
            if current and step:
                current.append((p[0], current[-1][1]))
            current.append(p)
        if current:
            segments.append(current)
        return " ".join("M" + " L".join(f"{px:.1f},{py:.1f}" for px, py in seg) for seg in segments)

    target_points = []
    actual_points = []
    for i, month in enumerate(months):
        r = by_month.get(month)
        target_points.append((x(i), y(_f(r["target"]))) if r and r["target"] is not None else None)
        actual_points.append((x(i), y(_f(r["value"]))) if r and r["value"] is not None else None)
    parts.append(
        f'<path d="{path(target_points, True)}" fill="none" stroke="#7b8794" '
        f'stroke-width="1.5" stroke-dasharray="5 3" class="target"/>'
    )
    last_target = next(
        (r for r in reversed([by_month.get(m) for m in months]) if r and r["target"] is not None),
        None,
    )
    if last_target is not None:
        # the target line labelled at its right end with the stored target
        parts.append(
            f'<text x="{left + plot_w + 4}" y="{y(_f(last_target["target"])) + 3:.1f}" '
            f'font-size="9" fill="#52606d" class="target-label">target '
            f"{escape(kpi_text(last_target['target'], kind))}</text>"
        )
    parts.append(
        f'<path d="{path(actual_points, False)}" fill="none" stroke="#2f4a7a" '
        f'stroke-width="2" class="actual"/>'
    )
    for i, month in enumerate(months):
        r = by_month.get(month)
        if not r:
            continue
        status = r.get("status") or ""
        colour = STATUS_COLOURS.get(status, "#2f4a7a")
        actual = kpi_text(r["value"], kind) if r["value"] is not None else "no data"
        target = kpi_text(r["target"], kind) if r["target"] is not None else "n/a"
        tip = f"{fmt(month)}: actual {actual}, target {target}, {status}"
        if r["value"] is None:
            # no value: a hollow marker on the target line, so the month is still visible
            cy = y(_f(r["target"])) if r["target"] is not None else top + plot_h / 2
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{cy:.1f}" r="3.5" fill="#fff" stroke="{colour}" '
                f'stroke-width="1.5"><title>{escape(tip)}</title></circle>'
            )
        else:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(_f(r["value"])):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- page


def _card(label: str, value: str, state: str = "", sub: str = "") -> str:
    cls = f"card {state}" if state else "card"
    extra = f'<div class="sub">{escape(sub)}</div>' if sub else ""
    return (
        f'<div class="{cls}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div>{extra}</div>'
    )


def _figures(pack: Pack) -> PrintFigures:
    return pack.print_figures or PrintFigures()


def _invoice_view(pack: Pack, cid: str, scale: int | None) -> View:
    """Invoice lines with quantity and rate in the same unit: a package line counts packages at
    the package price, a stairstep line names the step its units reached and its fee."""
    view = View(pack.invoice_lines.for_contract(cid), scale)
    units = _figures(pack).line_units
    for i, row in enumerate(view.table.rows):
        u = units.get((cid, row["line_key"]))
        if not u:
            continue
        text = view.text[i]
        if u["pricing_model"] == "package" and u["package_count"] is not None:
            size = num(u["package_size"])
            text["quantity"] = f"{num(u['package_count'])} packs of {size}"
            text["rate"] = f"{num(row['rate'])} per pack"
        elif u["pricing_model"] == "stairstep" and u["step"] is not None:
            text["rate"] = _step_text(u, scale)
    return view


def _step_text(u: Row, scale: int | None) -> str:
    """A stairstep line's price: the flat fee of the one step its units reached."""
    reach = (
        f"{num(u['step_from'])}-{num(u['step_to'])}"
        if u["step_to"] is not None
        else f"{num(u['step_from'])}+"
    )
    return f"{_money(u['step_fee'], scale)} flat (step {u['step']}: {reach})"


def _reconciliation_view(pack: Pack, cid: str, scale: int | None) -> View:
    """The expected rate of a stairstep line is its step's flat fee, as on the invoice; the
    provider's side prints as the provider billed it."""
    view = View(pack.reconciliation.for_contract(cid), scale)
    units = _figures(pack).line_units
    for i, row in enumerate(view.table.rows):
        u = units.get((cid, row["line_key"]))
        if u and u["pricing_model"] == "stairstep" and u["step"] is not None:
            view.text[i]["expected_rate"] = _step_text(u, scale)
    return view


def _kpi_view(pack: Pack, cid: str, scale: int | None) -> View:
    figures = _figures(pack)
    view = View(pack.kpis.for_contract(cid), scale)
    for i, row in enumerate(view.table.rows):
        kind = figures.kpi_kinds.get((cid, row["kpi_id"]))
        text = view.text[i]
        for key in ("value", "target"):
            if key in text:
                text[key] = kpi_text(row.get(key), kind)
        rounded = figures.credits_rounded.get((cid, row["kpi_id"]))
        if rounded:
            # the credit's exact working figures, printed as stored rounded at the contract's scale
            for key, stored in (
                ("at_risk_amount", "at_risk_rounded"),
                ("uncapped_amount", "uncapped_rounded"),
                ("cap_amount", "cap_rounded"),
            ):
                if key in text:
                    text[key] = _money(rounded[stored], scale)
    return view


def _restated_by_month(pack: Pack, cid: str) -> dict[tuple[dt.date, str], list[Row]]:
    found: dict[tuple[dt.date, str], list[Row]] = {}
    for r in _figures(pack).restated:
        if r["contract_id"] == cid:
            found.setdefault((r["restated_month"], r["line_key"]), []).append(r)
    return found


def _where_it_went(r: Row, scale: int | None) -> str:
    line = r["adjustment_line"] or "its adjustment line"
    return f"restated: {_money(r['delta'], scale)} billed in {fmt(r['billed_in_period'])} as {line}"


def _gain_share_view(pack: Pack, cid: str, scale: int | None) -> View:
    figures = _figures(pack)
    table = pack.gain_share.for_contract(cid)
    restated = _restated_by_month(pack, cid)
    has_restated = any((r["billed_period"], "gain_share") in restated for r in table.rows)
    if has_restated:
        table = Table(
            table.title,
            table.name,
            [*table.columns, Column("Restated since", "_restated", width=40)],
            table.rows,
            table.notes,
        )
    view = View(table, scale)
    for i, row in enumerate(table.rows):
        text = view.text[i]
        rounded = figures.gain_share_rounded.get((cid, row["window_start"]))
        if rounded:
            # the exact figures as the engine rounded them with the contract's own terms
            for key, stored in (
                ("baseline_cost", "baseline_cost_rounded"),
                ("actual_cost", "actual_cost_rounded"),
                ("savings", "savings_rounded"),
                ("threshold_amount", "threshold_rounded"),
                ("tiered_amount", "tiered_rounded"),
            ):
                if key in text:
                    text[key] = _money(rounded[stored], scale)
        marks = restated.get((row["billed_period"], "gain_share"), [])
        if marks:
            view.row_classes[i] = "restated"
            text["_restated"] = "; ".join(_where_it_went(m, scale) for m in marks)
    return view


RESTATED_COLUMNS = [
    Column("Restated month", "restated_month", "month"),
    Column("Line", "line_key"),
    Column("Closed", "closed_amount", "money"),
    Column("Previously adjusted", "previously_adjusted", "money"),
    Column("Restated", "restated_amount", "money"),
    Column("Delta", "delta", "money"),
    Column("Billed in", "billed_in_period", "month"),
    Column("Adjustment line", "adjustment_line"),
    Column("Reason", "reason", width=40),
]


def _restated_html(pack: Pack, cid: str, scale: int | None) -> str:
    found = [r for r in _figures(pack).restated if r["contract_id"] == cid]
    if not found:
        return '<p class="empty">No closed month of the twelve was restated.</p>'
    table = Table(
        "Restated closed months",
        "Restated",
        RESTATED_COLUMNS,
        found,
        [
            "A closed month keeps its closing figures (shown elsewhere in this pack); the "
            "difference a later restatement found is billed on the open month named here."
        ],
    )
    return table_html(table, scale)


def _state_html(pack: Pack, cid: str) -> str:
    state = _figures(pack).month_state.get(cid)
    if not state:
        return ""
    status = state["status"]
    parts = [f'<span>Month <span class="flag {escape(status)}">{escape(status)}</span></span>']
    if state.get("approved_by"):
        at = state["approved_at"]
        when = at.isoformat(sep=" ", timespec="minutes") if at else ""
        parts.append(
            f"<span>Approved by <b>{escape(state['approved_by'])}</b> {escape(when)} "
            f"(run {state['run_id']})</span>"
        )
    elif status != "closed":
        parts.append('<span class="flag unapproved">not approved</span>')
    if state.get("closed_at"):
        parts.append(
            f"<span>Closed {escape(state['closed_at'].date().isoformat())} "
            f"({escape(str(state.get('closed_how') or ''))})</span>"
        )
    disputes = state.get("open_disputes") or 0
    parts.append(
        f'<span class="flag disputed">{disputes} open dispute(s)</span>'
        if disputes
        else "<span>no open dispute</span>"
    )
    return f'<p class="state">{"".join(parts)}</p>'


def _dispute_letter(pack: Pack, cid: str, currency: str, scale: int | None) -> str:
    open_ = [d for d in _figures(pack).open_disputes if d["contract_id"] == cid]
    if not open_:
        return ""
    invoices = sorted(
        {
            str(r["invoice_id"])
            for r in pack.reconciliation.rows
            if r.get("contract_id") == cid and r.get("invoice_id")
        }
    )
    rows_ = "".join(
        f'<tr><td class="month">{fmt(d["period"])}</td><td>{escape(str(d["line_key"]))}</td>'
        f'<td class="num">{escape(_money(d["amount"], scale))}</td>'
        f"<td>{escape(str(d['reason'] or ''))}</td>"
        f"<td>{escape(str(d['raised_by'] or ''))} "
        f"{escape(d['raised_at'].date().isoformat() if d['raised_at'] else '')}</td></tr>"
        for d in open_
    )
    ref = f" (your invoice {', '.join(invoices)})" if invoices else ""
    return f"""
<h3>Dispute notice</h3>
<div class="letter">
<p>To the provider of contract {escape(cid)}: re the settlement of
{fmt(pack.period)}{escape(ref)}.</p>
<p>We dispute the line(s) below. Each amount is the disputed amount recorded with the dispute
({escape(currency)}); we ask you to review them and reply before the month is closed.</p>
<table><thead><tr><th>Month</th><th>Line</th><th class="num">Amount</th><th>Reason</th>
<th>Raised</th></tr></thead><tbody>{rows_}</tbody></table>
<p>Signed: ______________________ &nbsp; Date: ____________</p>
</div>"""


def _signoff_html(pack: Pack, cid: str) -> str:
    state = _figures(pack).month_state.get(cid) or {}
    approver = state.get("approved_by") or ""
    at = state.get("approved_at")
    date = at.date().isoformat() if (approver and at) else ""

    def box(role: str, who: str = "") -> str:
        return f'<div><div class="who">{escape(who)}</div><div class="role">{role}</div></div>'

    return (
        f'<h3>Sign-off</h3><div class="signoff">{box("Prepared by")}{box("Reviewed by")}'
        f"{box('Approved by', approver)}{box('Date', date)}</div>"
    )


def _summary_html(pack: Pack) -> str:
    view = View(pack.summary)
    scales = _figures(pack).amount_scale
    states = _figures(pack).month_state
    for i, row in enumerate(pack.summary.rows):
        scale = scales.get(row["contract_id"], 2)
        state = states.get(row["contract_id"])
        if state and "month_status" in view.text[i]:
            # open | approved | disputed | closed (sql/month_status.sql), not only open/closed
            view.text[i]["month_status"] = state["status"]
        for c in view.columns:
            if c.kind == "money":
                view.text[i][c.key] = _value_text(row.get(c.key), c.kind, scale)
        # the difference reads red only when lines fall outside tolerance (stored exceptions),
        # never by its sign
        if row.get("exceptions"):
            view.alert[i] |= {"difference", "exceptions"}
    return view_html(view, split=False, css_class="summary")


def _contract_section(pack: Pack, summary: Row) -> str:
    cid = summary["contract_id"]
    currency = summary["currency"] or ""
    scale = _figures(pack).amount_scale.get(cid, 2)
    months = [add_months(pack.period, -i) for i in range(11, -1, -1)]
    history = [r for r in pack.kpi_history if r["contract_id"] == cid]
    kpi_ids = list(dict.fromkeys(r["kpi_id"] for r in history))
    kinds = _figures(pack).kpi_kinds
    difference = summary.get("difference")
    exceptions = summary.get("exceptions") or 0
    if summary.get("billed") is None:
        diff_state, diff_sub = "", "no provider invoice"
    elif exceptions:
        diff_state, diff_sub = "alert", f"{exceptions} line(s) outside tolerance"
    else:
        diff_state, diff_sub = "ok", "every line within tolerance"
    cards = "".join(
        [
            _card("Charges", f"{_money(summary['charges'], scale)} {currency}"),
            _card("Credits", _money(summary["credits"], scale)),
            _card("Amount due", f"{_money(summary['amount_due'], scale)} {currency}"),
            _card("Billed", _money(summary.get("billed"), scale) or "not billed"),
            _card("Difference", _money(difference, scale), diff_state, diff_sub),
            _card("Exceptions", str(exceptions), "alert" if exceptions else ""),
        ]
    )
    charts = "".join(
        "<figure>"
        + kpi_svg(k, [r for r in history if r["kpi_id"] == k], months, kinds.get((cid, k)))
        + "</figure>"
        for k in kpi_ids
    )
    kpi_block = (
        f'<div class="charts">{charts}</div><p class="note">Actual (solid, dots: green met, red '
        "failed, grey excused or no data; hollow: no value) against target (dashed, labelled "
        f"with the latest target), {fmt(months[0])} to {fmt(months[-1])}.</p>"
        if kpi_ids
        else '<p class="empty">No KPIs.</p>'
    )
    return f"""
<section class="contract" id="{escape(cid)}">
<h2>{escape(cid)} <span style="font-weight:400;color:#616e7c">{escape(currency)} &middot;
{fmt(pack.period)} &middot; run {summary.get("run_id")}</span></h2>
{_state_html(pack, cid)}
<div class="cards">{cards}</div>
<h3>From charges to the amount due</h3>
<figure>{waterfall_svg(summary, currency, scale)}</figure>
<h3>KPIs, last 12 months</h3>
{kpi_block}
<h3>Invoice lines</h3>
{view_html(_invoice_view(pack, cid, scale))}
<h3>Reconciliation</h3>
{view_html(_reconciliation_view(pack, cid, scale))}
{_dispute_letter(pack, cid, currency, scale)}
<h3>KPIs &amp; credits</h3>
{view_html(_kpi_view(pack, cid, scale))}
<h3>Gain-share</h3>
{view_html(_gain_share_view(pack, cid, scale))}
<h3>Adjustments on this invoice</h3>
{table_html(pack.adjustments.for_contract(cid), scale)}
<h3>Restated closed months</h3>
{_restated_html(pack, cid, scale)}
{_signoff_html(pack, cid)}
</section>"""


def render_html(pack: Pack) -> str:
    period = fmt(pack.period)
    as_of = pack.as_of.isoformat(sep=" ", timespec="seconds") if pack.as_of else "n/a"
    sections = "".join(_contract_section(pack, s) for s in pack.summary.rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Settlement pack {period}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>Settlement pack {period}</h1>
<p class="meta">{len(pack.summary.rows)} contract(s), read from {escape(pack.source)}; figures of
the runs that stand for {period} (latest finished {escape(as_of)}). Credits and pain-share are
negative; a difference is billed less expected.</p>
<h3>Summary</h3>
{_summary_html(pack)}
{sections}
<section class="contract">
<h2>Parameters</h2>
{table_html(pack.parameters)}
</section>
</main>
</body>
</html>
"""
