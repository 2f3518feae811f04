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
