"""The settlement pack as one self-contained HTML page: inline CSS, charts drawn as inline SVG.

Nothing is fetched when the page opens (no script, font, style sheet or image from anywhere), so it
reads the same offline, attached to an e-mail or archived with the month's sign-off. Numbers are
printed from the engine's decimals exactly (never through a float); floats appear only as chart
coordinates.

Per contract: headline figures, a waterfall from charges to the amount due (charges, credits,
earn-back, bonus, gain-share, adjustments; the last bar is the engine's amount due), one chart per
KPI of actual against target over the twelve months to the period, and the pack's tables.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from html import escape
from typing import Any

from .explain.text import num, pct
from .pack_data import Column, Pack, Table
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
     letter-spacing: .04em; }
p.meta { color: var(--muted); margin: 0 0 18px; }
section.contract { background: #fff; border: 1px solid var(--line); border-radius: 8px;
                   padding: 20px 24px; margin: 28px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.card .label { color: var(--muted); font-size: 11px; text-transform: uppercase; }
.card .value { font-size: 17px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card.alert { border-color: var(--neg); }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 11px; margin-top: 2px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { background: #eef2f7; font-weight: 600; font-size: 12px; position: sticky; top: 0; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.month { white-space: nowrap; }
td.neg { color: var(--neg); }
tr.total td { font-weight: 600; border-top: 2px solid var(--ink); }
td.status-match { color: var(--pos); }
td.status-over_billed, td.status-under_billed, td.status-not_billed, td.status-unexpected,
td.status-failed { color: var(--neg); font-weight: 600; }
.note { color: var(--muted); font-size: 11px; margin: 4px 0 0; }
.empty { color: var(--muted); font-style: italic; }
@media print { body { background: #fff; } section.contract { break-inside: avoid-page; } }
"""

STEP_COLOURS = {"total": "#2f4a7a", "up": "#1e7d4f", "down": "#b42318"}
STATUS_COLOURS = {"met": "#1e7d4f", "failed": "#b42318", "excused": "#9aa5b1", "no_data": "#9aa5b1"}


# --------------------------------------------------------------------------- text


def _money(value: Decimal | None) -> str:
    return "" if value is None else num(value, 2)


def _value_text(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if kind == "money":
        return num(value, 2)
    if kind in ("rate", "qty", "kpi", "share", "int"):
        return num(value)
    if kind == "pct":
        return pct(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return fmt(value) if kind == "month" else value.isoformat()
    return str(value)


def _cell(value: Any, column: Column) -> str:
    text = escape(_value_text(value, column.kind))
    if column.width and column.kind == "text":
        # long text (descriptions, reasons) keeps a readable width; the table scrolls instead
        return f'<td style="min-width:{column.width * 4}px">{text}</td>'
    classes = []
    if column.kind not in ("text", "month", "flag"):
        classes.append("num")
    if isinstance(value, Decimal) and value < 0:
        classes.append("neg")
    if column.kind == "month":
        classes.append("month")
    if column.key == "status" and value:
        classes.append(f"status-{value}")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{text}</td>"


def table_html(table: Table, total_keys: tuple[str, ...] = ()) -> str:
    if not table.rows:
        return '<p class="empty">None this month.</p>'
    head = "".join(
        f'<th class="num">{escape(c.header)}</th>'
        if c.kind not in ("text", "month", "flag")
        else f"<th>{escape(c.header)}</th>"
        for c in table.columns
    )
    body = "\n".join(
        "<tr>" + "".join(_cell(r.get(c.key), c) for c in table.columns) + "</tr>"
        for r in table.rows
    )
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n'
        f"</tbody></table></div>{notes}"
    )


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


def waterfall_svg(summary: Row, currency: str) -> str:
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
            f'fill="{colour}"><title>{escape(label)}: {_money(amount)}</title></rect>'
        )
        text_y = top_y - 5 if end >= start else bottom_y + 13
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{text_y:.1f}" font-size="11" '
            f'text-anchor="middle" fill="#1f2933">{_money(amount)}</text>'
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


def kpi_svg(kpi_id: str, history: list[Row], months: list[dt.date]) -> str:
    """A KPI's actual (line, dots coloured by status) against its target (dashed) by month."""
    width, height = 330, 170
    left, right, top, bottom = 44, 10, 24, 30
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
    for v in (low + pad, high - pad):
        parts.append(
            f'<text x="{left - 4}" y="{y(v) + 3:.1f}" font-size="9" text-anchor="end" '
            f'fill="#616e7c">{v:.4g}</text>'
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
        tip = (
            f"{fmt(month)}: actual {num(r['value']) if r['value'] is not None else 'no data'}, "
            f"target {num(r['target']) if r['target'] is not None else 'n/a'}, {status}"
        )
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


def _card(label: str, value: str, alert: bool = False) -> str:
    cls = "card alert" if alert else "card"
    return (
        f'<div class="{cls}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div></div>'
    )


def _contract_section(pack: Pack, summary: Row) -> str:
    cid = summary["contract_id"]
    currency = summary["currency"] or ""
    months = [add_months(pack.period, -i) for i in range(11, -1, -1)]
    history = [r for r in pack.kpi_history if r["contract_id"] == cid]
    kpi_ids = list(dict.fromkeys(r["kpi_id"] for r in history))
    difference = summary.get("difference")
    cards = "".join(
        [
            _card("Charges", f"{_money(summary['charges'])} {currency}"),
            _card("Credits", _money(summary["credits"])),
            _card("Amount due", f"{_money(summary['amount_due'])} {currency}"),
            _card("Billed", _money(summary.get("billed")) or "not billed"),
            _card("Difference", _money(difference), bool(difference)),
            _card("Exceptions", str(summary.get("exceptions", 0)), bool(summary.get("exceptions"))),
        ]
    )
    charts = "".join(
        f"<figure>{kpi_svg(k, [r for r in history if r['kpi_id'] == k], months)}</figure>"
        for k in kpi_ids
    )
    kpi_block = (
        f'<div class="charts">{charts}</div><p class="note">Actual (solid, dots: green met, red '
        "failed, grey excused or no data; hollow: no value) against target (dashed), "
        f"{fmt(months[0])} to {fmt(months[-1])}.</p>"
        if kpi_ids
        else '<p class="empty">No KPIs.</p>'
    )
    status = summary.get("month_status")
    return f"""
<section class="contract" id="{escape(cid)}">
<h2>{escape(cid)} <span style="font-weight:400;color:#616e7c">{escape(currency)} &middot;
run {summary.get("run_id")} &middot; month {escape(str(status))}</span></h2>
<div class="cards">{cards}</div>
<h3>From charges to the amount due</h3>
<figure>{waterfall_svg(summary, currency)}</figure>
<h3>KPIs, last 12 months</h3>
{kpi_block}
<h3>Invoice lines</h3>
{table_html(pack.invoice_lines.for_contract(cid))}
<h3>Reconciliation</h3>
{table_html(pack.reconciliation.for_contract(cid))}
<h3>KPIs &amp; credits</h3>
{table_html(pack.kpis.for_contract(cid))}
<h3>Gain-share</h3>
{table_html(pack.gain_share.for_contract(cid))}
<h3>Adjustments</h3>
{table_html(pack.adjustments.for_contract(cid))}
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
negative.</p>
<h3>Summary</h3>
{table_html(pack.summary)}
{sections}
<section class="contract">
<h2>Parameters</h2>
{table_html(pack.parameters)}
</section>
</main>
</body>
</html>
"""
