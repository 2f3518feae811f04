"""`settle report`: the month's settlement pack for sign-off, as an Excel workbook or one HTML page.

The pack is read from the stored tables alone (the `current_*` views of a DuckDB file opened
read-only), so whoever holds the database gets the same pack. Every figure is the engine's: the
sums and splits are done here in SQL over the engine's rounded lines, exactly (DECIMAL), and a
value becomes a float only as it is written into a cell, because Excel stores doubles.

Sheets (the HTML page shows the same tables per contract, with charts):
    Summary         one row per contract: charges, indexation effect, credits, earn-back, bonus,
                    gain-share, adjustments, amount due, billed, difference, exceptions
    Invoice lines   the invoice the contract says is due, line by line
    Reconciliation  expected against billed per line, with the variance split
    KPIs & credits  each KPI's result and the credit, earn-back and bonus it produced
    Gain-share      the windows billed in the twelve months to the period
    Adjustments     restated closed months billed on this month's invoice
    Parameters      the runs behind the figures: code version, as-known-at, config and input hashes

The figures and their tables are read by `pack_data` (the stored columns only); this module writes
them as Excel, `report_html` as one HTML page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import SettleError
from .explain.readers import connect_read_only, has_settled_figures
from .pack_data import Column, Pack, load_pack
from .periods import fmt
from .report_html import render_html

# --------------------------------------------------------------------------- Excel

MONEY_FORMAT = "#,##0.00;[Red]-#,##0.00"
EXCEL_FORMATS = {
    "money": MONEY_FORMAT,
    "rate": "#,##0.00######",
    "qty": "#,##0.00####",
    "kpi": "0.0000##",
    "pct": "0.00%",
    "share": "0.00####",
    "int": "0",
}


def _cell(value: Any, kind: str) -> Any:
    """A stored value as an Excel cell value: the only place a Decimal becomes a float."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "month" and isinstance(value, dt.date):
        return fmt(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return value


def _width(column: Column, values: list[Any]) -> float:
    if column.width:
        return column.width
    longest = len(column.header)
    for v in values:
        if v is None:
            continue
        text = f"{v:,.2f}" if isinstance(v, float) else str(v)
        longest = max(longest, len(text))
    return min(longest + 2, 60)


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
    formats = {kind: workbook.add_format({"num_format": f}) for kind, f in EXCEL_FORMATS.items()}
    wrap = workbook.add_format({"text_wrap": False, "italic": True, "font_color": "#555555"})
    for table in pack.sheets():
        sheet = workbook.add_worksheet(table.title)
        data = [[_cell(r.get(c.key), c.kind) for c in table.columns] for r in table.rows]
        if not data:
            data = [["(none)"] + [None] * (len(table.columns) - 1)]
        sheet.add_table(
            0,
            0,
            len(data),
            len(table.columns) - 1,
            {
                "name": table.name,
                "style": "Table Style Medium 2",
                "data": data,
                "columns": [
                    {
                        "header": c.header,
                        **({"format": formats[c.kind]} if c.kind in formats else {}),
                    }
                    for c in table.columns
                ],
            },
        )
        for i, column in enumerate(table.columns):
            sheet.set_column(i, i, _width(column, [row[i] for row in data]))
        sheet.freeze_panes(1, 0)
        for n, note in enumerate(table.notes):
            sheet.write_string(len(data) + 2 + n, 0, note, wrap)
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
    """Write the month's settlement pack; returns where it was written."""
    if pack_format not in ("xlsx", "html"):
        raise SettleError(f"--format {pack_format!r}: the pack is xlsx or html")
    con = connect_read_only(db_path)
    try:
        if not has_settled_figures(con):
            raise SettleError(f"{db_path}: no settled figures yet; run `settle run` first")
        pack = load_pack(con, period, Path(db_path).name)
    finally:
        con.close()
    path = Path(out) if out else default_path(period, pack_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"read {len(pack.summary.rows)} contract(s) for {fmt(period)} from {db_path}")
    if pack_format == "xlsx":
        write_xlsx(pack, path)
    else:
        path.write_text(render_html(pack), encoding="utf-8")
    return path
