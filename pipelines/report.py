"""`settle report`: the month's settlement pack for sign-off, as an Excel workbook or one HTML page.

The pack is read from the stored tables alone (the `current_*` views of a DuckDB file opened
read-only), so whoever holds the database gets the same pack. Every figure is the engine's: the
sums and splits are done in SQL (`pack_data`) over the engine's rounded lines, exactly (DECIMAL).
A Decimal goes into a cell as its exact decimal text; Excel reads it as a double.

Sheets (the HTML page shows the same tables per contract, with charts):
    Summary         one row per contract: charges, indexation effect, credits, earn-back, bonus,
                    gain-share, adjustments, amount due, billed, difference, exceptions, the
                    month-end state and restatement marks; totals per currency (SUMIFS); sign-off
    Waterfall       per contract, the steps from charges to the amount due and a native chart
    Invoice lines   the invoice the contract says is due, line by line
    Reconciliation  expected against billed per line, with the variance split
    KPIs & credits  each KPI's result and the credit, earn-back and bonus it produced
    Gain-share      the windows billed in the twelve months to the period
    Adjustments     restated closed months billed on this month's invoice
    Parameters      the runs behind the figures: code version, as-known-at, config and input hashes

The contract sheets hold one Excel table per contract, in its currency and amount scale, with a
totals row of SUBTOTAL formulas (cached with the SQL sums, so a viewer that does not recalculate
shows the same figure). Every sheet prints landscape on A4, one page wide, its header repeated.

The figures and their tables are read by `pack_data` (the stored columns only); this module writes
them as Excel, `report_html` as one HTML page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import SettleError
from .explain.readers import connect_read_only, has_settled_figures
from .pack_data import (
    CURRENCY_TOTAL_KEYS,
    MONTH_STATE_COLUMNS,
    TOTALLED,
    Column,
    Pack,
    Row,
    Table,
    load_pack,
)
from .periods import fmt
from .report_html import render_html

# --------------------------------------------------------------------------- Excel

EXCEL_FORMATS = {
    "rate": "#,##0.00######",
    "qty": "#,##0.00####",
    "kpi": "0.0000##",
    "pct": "0.00%",
    "share": "0.00####",
    "int": "0",
    "month": "yyyy-mm",
    "datetime": "yyyy-mm-dd hh:mm:ss",
}
TABLE_STYLE = "Table Style Medium 2"
# the per-point colours of the waterfall: totals, increases, decreases
WATERFALL_COLOURS = {"total": "#2F6FB0", "up": "#2E8540", "down": "#C0392B"}
WATERFALL_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("Step", "step", width=14),
    Column("Amount", "amount", "money"),
    Column("From", "level_from", "money"),
    Column("To", "level_to", "money"),
    # the chart's stacks, hidden: an invisible base and the visible bar on either side of zero
    Column("Base above zero", "base_above", "money"),
    Column("Base below zero", "base_below", "money"),
    Column("Bar above zero", "bar_above", "money"),
    Column("Bar below zero", "bar_below", "money"),
]
WATERFALL_ROWS_PER_CONTRACT = 17  # the chart's height in rows, so one contract prints per page


def money_format(scale: int) -> str:
    """The money format at the contract's amount scale (`rounding.amount_scale`)."""
    digits = "#,##0" + ("." + "0" * scale if scale > 0 else "")
    return f"{digits};[Red]-{digits}"


MONEY_FORMAT = money_format(2)


class _Formats:
    """The workbook's cell formats, made once each (xlsxwriter keeps every format it is given)."""

    def __init__(self, workbook: Any):
        self._workbook = workbook
        self._made: dict[tuple, Any] = {}

    def get(self, kind: str, scale: int = 2, **extra: Any) -> Any:
        key = (kind, scale if kind == "money" else None, tuple(sorted(extra.items())))
        if key not in self._made:
            props = dict(extra)
            if kind == "money":
                props["num_format"] = money_format(scale)
            elif kind in EXCEL_FORMATS:
                props["num_format"] = EXCEL_FORMATS[kind]
            self._made[key] = self._workbook.add_format(props) if props else None
        return self._made[key]


def _put(sheet: Any, row: int, col: int, value: Any, cell_format: Any = None) -> None:
    """A stored value into a cell with its own type: a number (a Decimal is written as its exact
    decimal text, which Excel reads as the nearest double), a boolean, a date or datetime, or a
    string (never read as a formula)."""
    if value is None:
        if cell_format is not None:
            sheet.write_blank(row, col, None, cell_format)
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value, cell_format)
    elif isinstance(value, int | float | Decimal):
        sheet.write_number(row, col, value, cell_format)
    elif isinstance(value, dt.datetime | dt.date):
        sheet.write_datetime(row, col, value, cell_format)
    else:
        sheet.write_string(row, col, str(value), cell_format)


def _display_length(value: Any, kind: str) -> int:
    if value is None:
        return 0
    if kind == "month":
        return 7
    if isinstance(value, dt.datetime):
        return 19
    if isinstance(value, dt.date):
        return 10
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        return len(f"{value:,.2f}") if kind == "money" else len(str(value))
    return len(str(value))


def _width(column: Column, values: list[Any]) -> float:
    if column.width:
        return column.width
    longest = max([len(column.header), *(_display_length(v, column.kind) for v in values)])
    return min(longest + 2, 60)


def _col(index: int) -> str:
    from xlsxwriter.utility import xl_col_to_name

    return xl_col_to_name(index)


def _table(
    sheet: Any,
    formats: _Formats,
    top: int,
    name: str,
    columns: list[Column],
    rows: list[Row],
    scale_of: Callable[[Row], int],
    totals: Row | None = None,
    total_label: str = "Total",
) -> int:
    """One Excel table from `top`: a header row, the rows, and a totals row when `totals` is
    given, whose cells for the totalled columns are SUBTOTAL(109) formulas over exactly the data
    rows (so they recompute, and follow a filter), cached with the figure summed in SQL. Returns
    the first row below the table."""
    first_data, last_data = top + 1, top + len(rows)
    scale = scale_of(rows[0]) if rows else 2
    spec = []
    for i, column in enumerate(columns):
        entry: dict[str, Any] = {"header": column.header}
        if column.kind in ("money", *EXCEL_FORMATS):
            entry["format"] = formats.get(column.kind, scale)
        if totals is not None:
            if i == 0:
                entry["total_string"] = total_label
            elif column.key in totals:
                letter = _col(i)
                entry["total_function"] = (
                    f"=SUBTOTAL(109,{letter}{first_data + 1}:{letter}{last_data + 1})"
                )
                entry["total_value"] = totals[column.key]
                entry["format"] = formats.get(column.kind, scale, bold=True)
        spec.append(entry)
    last = last_data + (1 if totals is not None else 0)
    sheet.add_table(
        top,
        0,
        last,
        len(columns) - 1,
        {"name": name, "style": TABLE_STYLE, "columns": spec, "total_row": totals is not None},
    )
    for r, record in enumerate(rows, start=first_data):
        row_scale = scale_of(record)
        for c, column in enumerate(columns):
            value = record.get(column.key)
            kind = column.kind
            if isinstance(value, dt.datetime) and kind not in ("month", "datetime"):
                kind = "datetime"  # a typed cell in a column of mixed values (Parameters)
            _put(sheet, r, c, value, formats.get(kind, row_scale))
    return last + 1


def _page_setup(sheet: Any, pack: Pack, last_row: int, last_col: int, one_page: bool = False):
    """Landscape A4, as wide as one page (the summary on one page), the header row on every page."""
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 1 if one_page else 0)
    sheet.repeat_rows(0)
    sheet.print_area(0, 0, max(last_row, 1), last_col)
    sheet.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    sheet.set_footer(f"&L&A&CSettlement pack {fmt(pack.period)}&RPage &P of &N")
    sheet.freeze_panes(1, 0)


def _set_widths(sheet: Any, columns: list[Column], rows: list[Row], hidden: set[str] = frozenset()):
    for i, column in enumerate(columns):
        width = _width(column, [r.get(column.key) for r in rows])
        sheet.set_column(i, i, width, None, {"hidden": column.key in hidden})


def _notes(sheet: Any, formats: _Formats, row: int, notes: list[str]) -> int:
    note = formats.get("text", italic=True, font_color="#555555")
    for n, text in enumerate(notes):
        sheet.write_string(row + n, 0, text, note)
    return row + len(notes)


def _scales(pack: Pack) -> dict[str, int]:
    return {cid: int(s.get("amount_scale", 2)) for cid, s in pack.month_states.items()}


def _summary_sheet(workbook: Any, formats: _Formats, pack: Pack) -> None:
    sheet = workbook.add_worksheet(pack.summary.title)
    scales = _scales(pack)
    columns = [*pack.summary.columns, *MONTH_STATE_COLUMNS]
    rows = [{**pack.month_states.get(r["contract_id"], {}), **r} for r in pack.summary.rows]
    below = _table(
        sheet,
        formats,
        0,
        pack.summary.name,
        columns,
        rows,
        lambda r: scales.get(r["contract_id"], 2),
    )
    # totals per currency, under the table: SUMIFS over its rows recompute; a total across
    # currencies would mean nothing
    keys = {c.key: i for i, c in enumerate(columns)}
    first, last = 2, len(rows) + 1
    currency_col = _col(keys["currency"])
    row = below + 1
    bold = formats.get("text", bold=True)
    for total in pack.currency_totals:
        scale = int(total["amount_scale"])
        sheet.write_string(row, 0, f"Total {total['currency']}", bold)
        sheet.write_string(row, keys["currency"], total["currency"], bold)
        for key in CURRENCY_TOTAL_KEYS:
            letter = _col(keys[key])
            sheet.write_formula(
                row,
                keys[key],
                f"=SUMIFS({letter}{first}:{letter}{last},"
                f'{currency_col}{first}:{currency_col}{last},"{total["currency"]}")',
                formats.get("money", scale, bold=True),
                total[key],
            )
        row += 1
    row = _notes(sheet, formats, row + 1, pack.summary.notes) + 1
    # the sign-off block: blank lines to sign, "approved by" filled from the stored approvals
    approvals = [f"{r['approved_by']} ({r['contract_id']})" for r in rows if r.get("approved_by")]
    sheet.write_string(row, 0, "Sign-off", bold)
    line = formats.get("text", bottom=1)
    for n, label in enumerate(("Prepared by", "Reviewed by", "Approved by", "Date"), start=1):
        sheet.write_string(row + n, 0, label, bold)
        value = ", ".join(approvals) if label == "Approved by" and approvals else ""
        sheet.merge_range(row + n, 1, row + n, 5, value, line)
    last_row = row + 4
    _set_widths(sheet, columns, rows)
    _page_setup(sheet, pack, last_row, len(columns) - 1, one_page=True)


def _per_contract_sheet(workbook: Any, formats: _Formats, pack: Pack, table: Table) -> None:
    """One Excel table per contract (its own totals row, in the contract's currency), stacked
    with a blank row between them; every table has the same header, repeated on each page."""
    sheet = workbook.add_worksheet(table.title)
    scales = _scales(pack)
    contracts = [r["contract_id"] for r in pack.summary.rows]
    contracts += sorted({r["contract_id"] for r in table.rows} - set(contracts))
    totalled = set(TOTALLED.get(table.name, ((), []))[1])
    row, k = 0, 0
    for contract in contracts:
        rows = [r for r in table.rows if r.get("contract_id") == contract]
        if not rows:
            continue
        k += 1
        sums = pack.totals.get((table.name, contract), {}) if totalled else None
        totals = {key: sums.get(key, 0) for key in totalled} if sums is not None else None
        row = (
            _table(
                sheet,
                formats,
                row,
                f"{table.name}_{k}",
                table.columns,
                rows,
                lambda r: scales.get(r.get("contract_id"), 2),
                totals,
                f"Total {contract}",
            )
            + 1
        )
    if k == 0:
        row = (
            _table(
                sheet,
                formats,
                0,
                table.name,
                table.columns,
                [{table.columns[0].key: "(none)"}],
                lambda r: 2,
            )
            + 1
        )
    last_row = _notes(sheet, formats, row, table.notes)
    _set_widths(sheet, table.columns, table.rows)
    _page_setup(sheet, pack, last_row, len(table.columns) - 1)


def _plain_sheet(workbook: Any, formats: _Formats, pack: Pack, table: Table) -> None:
    sheet = workbook.add_worksheet(table.title)
    # the run's start and finish as date-times where the query gives them typed
    rows = [{**r, "value": r["value_at"]} if r.get("value_at") else r for r in table.rows]
    rows = rows or [{table.columns[0].key: "(none)"}]
    below = _table(sheet, formats, 0, table.name, table.columns, rows, lambda r: 2)
    last_row = _notes(sheet, formats, below + 1, table.notes)
    _set_widths(sheet, table.columns, table.rows)
    _page_setup(sheet, pack, last_row, len(table.columns) - 1)


def _waterfall_sheet(workbook: Any, formats: _Formats, pack: Pack) -> None:
    """Per contract, the waterfall's bars (read from WATERFALL_SQL) and a native stacked column
    chart of them: an invisible base under each visible bar, coloured per point."""
    title = "Waterfall"
    sheet = workbook.add_worksheet(title)
    scales = _scales(pack)
    keys = {c.key: i for i, c in enumerate(WATERFALL_COLUMNS)}
    hidden = {"base_above", "base_below", "bar_above", "bar_below"}
    top = 0
    breaks = []
    for k, summary in enumerate(pack.summary.rows, start=1):
        contract = summary["contract_id"]
        bars = [r for r in pack.waterfall if r["contract_id"] == contract]
        if not bars:
            continue
        scale = scales.get(contract, 2)
        _table(
            sheet,
            formats,
            top,
            f"Waterfall_{k}",
            WATERFALL_COLUMNS,
            bars,
            lambda r: scales.get(r["contract_id"], 2),
        )
        first, last = top + 1, top + len(bars)
        chart = workbook.add_chart({"type": "column", "subtype": "stacked"})
        colours = [
            WATERFALL_COLOURS[
                "total" if b["kind"] == "total" else "up" if b["amount"] >= 0 else "down"
            ]
            for b in bars
        ]
        # the step's signed amount labels its bar: on the part above zero, or below it when
        # the bar lies wholly below zero
        below_only = [b["bar_above"] == 0 and b["bar_below"] != 0 for b in bars]
        amount_col = keys["amount"]
        for key in ("base_above", "base_below", "bar_above", "bar_below"):
            series: dict[str, Any] = {
                "name": [title, top, keys[key]],
                "categories": [title, first, keys["step"], last, keys["step"]],
                "values": [title, first, keys[key], last, keys[key]],
                "gap": 60,
            }
            if key.startswith("base"):
                series["fill"] = {"none": True}
                series["border"] = {"none": True}
            else:
                series["points"] = [
                    {"fill": {"color": c}, "border": {"none": True}} for c in colours
                ]
                labelled = [not b if key == "bar_above" else b for b in below_only]
                series["data_labels"] = {
                    "value": True,
                    "custom": [
                        {"value": f"={title}!${_col(amount_col)}${first + i + 1}"}
                        if on
                        else {"delete": True}
                        for i, on in enumerate(labelled)
                    ],
                }
            chart.add_series(series)
        chart.set_title(
            {"name": f"{contract}: charges to amount due ({summary['currency']})", "overlay": False}
        )
        chart.set_legend({"none": True})
        chart.set_y_axis({"num_format": money_format(scale), "major_gridlines": {"visible": True}})
        chart.set_size({"width": 720, "height": 320})
        chart.show_hidden_data()
        sheet.insert_chart(top, len(WATERFALL_COLUMNS) + 1, chart)
        if top:
            breaks.append(top)
        top += max(len(bars) + 2, WATERFALL_ROWS_PER_CONTRACT)
    if breaks:
        sheet.set_h_pagebreaks(breaks)
    sheet.write_string(
        top,
        0,
        "Each bar runs From - To: a total from zero, a step from the running level; the hidden "
        "columns are the chart's stacks (an invisible base under each bar).",
        formats.get("text", italic=True, font_color="#555555"),
    )
    _set_widths(sheet, WATERFALL_COLUMNS, pack.waterfall, hidden)
    # the chart sits right of the table: print it too
    _page_setup(sheet, pack, top, len(WATERFALL_COLUMNS) + 12)


def write_xlsx(pack: Pack, path: Path) -> None:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(
        str(path),
        {"strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False},
    )
    # a fixed creation time (the latest run's) keeps the same database's pack byte-identical
    workbook.set_properties(
        {
            "title": f"Settlement pack {fmt(pack.period)}",
            "author": "Settle",
            "created": pack.as_of or dt.datetime(2000, 1, 1),
        }
    )
    formats = _Formats(workbook)
    _summary_sheet(workbook, formats, pack)
    _waterfall_sheet(workbook, formats, pack)
    for table in pack.sheets()[1:]:
        if any(c.key == "contract_id" for c in table.columns):
            _per_contract_sheet(workbook, formats, pack, table)
        else:
            _plain_sheet(workbook, formats, pack, table)
    workbook.close()


# --------------------------------------------------------------------------- entry point


def default_path(period: dt.date, pack_format: str) -> Path:
    return Path("reports") / f"settlement_pack_{fmt(period)}.{pack_format}"


def write_pack(
    db_path: Path,
    period: dt.date,
    pack_format: str = "xlsx",
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the month's settlement pack; returns where it was written.

    The pack goes to a temporary file in the target folder, renamed over the target once complete,
    so a failed write leaves nothing. The target must not be the database, and may only replace a
    file that is itself a settlement pack (a rerun); anything else is refused untouched."""
    if pack_format not in ("xlsx", "html"):
        raise SettleError(f"--format {pack_format!r}: the pack is xlsx or html")
    path = Path(out) if out else default_path(period, pack_format)
    _check_target(path, Path(db_path), pack_format)
    con = connect_read_only(db_path)
    try:
        if not has_settled_figures(con):
            raise SettleError(f"{db_path}: no settled figures yet; run `settle run` first")
        pack = load_pack(con, period, Path(db_path).name)
    finally:
        con.close()
    if progress:
        progress(f"read {len(pack.summary.rows)} contract(s) for {fmt(period)} from {db_path}")
    if pack_format == "xlsx":
        _write_atomically(path, lambda tmp: write_xlsx(pack, tmp))
    else:
        text = render_html(pack)
        _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


# --------------------------------------------------------------------------- writing the file


def _check_target(path: Path, db_path: Path, pack_format: str) -> None:
    """Refuse, before anything is read or written, a target the pack must not replace."""
    db_files = [db_path, db_path.with_name(db_path.name + ".wal")]
    for db_file in db_files:
        same = path.resolve() == db_file.resolve()
        with contextlib.suppress(OSError):
            same = same or (path.exists() and db_file.exists() and path.samefile(db_file))
        if same:
            raise SettleError(
                f"--out {path}: that is the settlement database ({db_file}); writing the pack "
                "over it would destroy every run and closed month. Nothing was written; choose "
                "another file."
            )
    if path.is_dir():
        raise SettleError(
            f"--out {path}: is a folder; give the pack's file name, for example "
            f"{path / f'settlement_pack_YYYY-MM.{pack_format}'}. Nothing was written."
        )
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise SettleError(
                f"--out {path}: is not a regular file (a device, pipe or dangling link); "
                "refusing to write there. Nothing was written."
            )
        if not is_pack(path):
            raise SettleError(
                f"--out {path}: the file exists and is not a settlement pack written by "
                "`settle report`; refusing to overwrite it. Nothing was written; remove it or "
                "choose another name."
            )
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise SettleError(
                    f"--out {path}: {parent} is a file, not a folder, so the pack cannot be "
                    "written under it. Nothing was written."
                )
            break


def is_pack(path: Path) -> bool:
    """A file `settle report` wrote: an xlsx whose document properties name Settle and a
    settlement pack, or an HTML page titled as one."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                core = archive.read("docProps/core.xml").decode("utf-8", "replace")
            return "<dc:creator>Settle</dc:creator>" in core and "Settlement pack" in core
        with open(path, "rb") as handle:
            head = handle.read(8192)
        return head.lstrip().lower().startswith(b"<!doctype html") and (
            b"<title>Settlement pack" in head
        )
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError):
        return False


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettleError(
            f"--out {path}: cannot create the folder {path.parent}: {exc.strerror or exc}. "
            "Nothing was written."
        ) from None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SettleError(
            f"--out {path}: cannot write in {path.parent}: {exc.strerror or exc}. "
            "Nothing was written."
        ) from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a pack is an ordinary file
        os.replace(tmp, path)
    except Exception as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, OSError) or type(exc).__name__ == "FileCreateError":
            raise SettleError(
                f"--out {path}: the pack could not be written: {reason}. Nothing was written "
                "(a partial file was removed)."
            ) from None
        raise
