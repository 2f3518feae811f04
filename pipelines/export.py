"""`settle export`: the current figures of a range of months as files for the ledger (SPEC 11).

Every export reads stored rows only. Column names and types are stable: Parquet keeps the stored
DECIMAL(38, 4) money; CSV and JSON carry money and quantities as exact decimal strings (never a
binary float). A file is written to a temporary name in the target folder and renamed, so a
failed export leaves no partial file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from pathlib import Path

import duckdb

from .engine import SQL_DIR
from .errors import SettleError
from .periods import fmt
from .workflow import connect_read_only

FORMATS = ("csv", "parquet", "json")

_LINES = """
SELECT contract_id, period, run_id, line_key, line_type, description, quantity, rate, amount,
       currency
FROM current_invoice_lines WHERE period BETWEEN $1 AND $2
ORDER BY contract_id, period, sort_order, line_key
"""
_RECONCILIATION = """
SELECT contract_id, period, run_id, line_key, description, invoice_id,
       expected_quantity, expected_rate, expected_amount,
       billed_quantity, billed_rate, billed_amount, difference, status,
       rate_variance, volume_variance, other_variance
FROM current_invoice_reconciliation WHERE period BETWEEN $1 AND $2
ORDER BY contract_id, period, line_key
"""
_DISPUTES = """
SELECT dispute_id, contract_id, period, line_key, run_id, amount, reason, raised_by, raised_at,
       status, outcome, resolution_amount, resolved_by, resolved_at, note
FROM current_disputes WHERE period BETWEEN $1 AND $2
ORDER BY dispute_id
"""

WHAT = {
    "invoice_lines": _LINES,
    "reconciliation": _RECONCILIATION,
    "disputes": _DISPUTES,
    "journal": None,  # sql/journal.sql
}


def _query(what: str) -> str:
    text = WHAT[what] or (SQL_DIR / "journal.sql").read_text()
    return text.strip().rstrip(";")


def export(
    db_path: Path,
    first: dt.date,
    last: dt.date,
    what: str,
    file_format: str,
    out_dir: Path,
    contract_ids: set[str] | None = None,
) -> tuple[Path, int]:
    if what not in WHAT or file_format not in FORMATS:
        raise SettleError(f"export --what {what} --format {file_format}: not supported")
    if last < first:
        raise SettleError(f"--to {fmt(last)} is before --period {fmt(first)}")
    name = f"{what}_{fmt(first)}" + (f"_{fmt(last)}" if last != first else "") + f".{file_format}"
    out_dir = Path(out_dir)
    target = out_dir / name
    if out_dir.exists() and not out_dir.is_dir():
        raise SettleError(f"--out {out_dir}: is a file, not a folder")
    db_real = Path(db_path).resolve()
    if target.exists() and target.resolve() == db_real:
        raise SettleError(f"{target}: that is the database; refusing to write over it")
    with connect_read_only(db_path) as con:
        has_lines = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = 'current_invoice_lines'"
        ).fetchone()[0]
        if not has_lines:
            raise SettleError(f"{db_path}: no month has been settled yet; nothing to export")
        query = f"SELECT * FROM ({_query(what)}) q"
        params: list = [first, last]
        if contract_ids:
            query += " WHERE q.contract_id IN (SELECT unnest($3::VARCHAR[]))"
            params.append(sorted(contract_ids))
        con.execute(f"CREATE TEMP TABLE export_rows AS {query}", params)
        count = con.execute("SELECT count(*) FROM export_rows").fetchone()[0]
        if count == 0:
            raise SettleError(
                f"nothing to export: no {what} rows for {fmt(first)}..{fmt(last)}"
                + (f" and {', '.join(sorted(contract_ids))}" if contract_ids else "")
            )
        if what == "journal":
            _require_accounts(con)
        _write(con, out_dir, target, file_format)
    return target, count


def _require_accounts(con: duckdb.DuckDBPyConnection) -> None:
    unmapped = con.execute(
        "SELECT contract_id, list(DISTINCT line_type ORDER BY line_type) FROM export_rows "
        "WHERE account IS NULL GROUP BY contract_id ORDER BY contract_id"
    ).fetchall()
    if unmapped:
        shown = "; ".join(f"{cid}: {', '.join(types)}" for cid, types in unmapped)
        raise SettleError(
            f"journal: line types with no ledger account and no `default`: {shown}. Add them to "
            'the contract\'s accounting.accounts (e.g. `default: "6199"`) and settle the months '
            "again (rule: every journal line posts to an account). Nothing was written."
        )


def _text_columns(con: duckdb.DuckDBPyConnection) -> str:
    """Every DECIMAL column as its exact text, the rest as stored."""
    parts = []
    for name, dtype, *_ in con.execute("DESCRIBE export_rows").fetchall():
        quoted = f'"{name}"'
        if dtype.startswith("DECIMAL"):
            parts.append(f"CAST({quoted} AS VARCHAR) AS {quoted}")
        elif name == "period":
            parts.append(f"strftime({quoted}, '%Y-%m') AS {quoted}")
        else:
            parts.append(quoted)
    return ", ".join(parts)


def _write(con: duckdb.DuckDBPyConnection, out_dir: Path, target: Path, file_format: str) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=out_dir)
        os.close(fd)
    except OSError as exc:
        raise SettleError(f"--out {out_dir}: cannot write there ({exc.strerror})") from None
    tmp_path = Path(tmp)
    try:
        if file_format == "parquet":
            select, options = "SELECT * FROM export_rows", "FORMAT parquet"
        elif file_format == "csv":
            select, options = f"SELECT {_text_columns(con)} FROM export_rows", "FORMAT csv"
        else:
            select = f"SELECT {_text_columns(con)} FROM export_rows"
            options = "FORMAT json, ARRAY true"
        literal = str(tmp_path).replace("'", "''")
        con.execute(f"COPY ({select}) TO '{literal}' ({options})")
        os.replace(tmp_path, target)
    except (duckdb.Error, OSError) as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise SettleError(f"{target}: the export could not be written ({exc})") from None
