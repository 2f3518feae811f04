"""`settle sql`: read-only SQL on the settlement database, with the DuckDB that wrote it.

A user's own `duckdb` shell may be too old to read the file's format version, so Settle ships a
way in. The database is opened read-only: a statement that would write fails and changes nothing.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click
import duckdb

from .errors import SettleError
from .workflow import connect_read_only

READ_ONLY_HINT = (
    "settle sql opens the database read-only: statements that change it are refused and nothing "
    "was changed. Changes go through settle run, close, approve, dispute and resolve."
)


def _execute(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple]]:
    try:
        cur = con.execute(query)
    except duckdb.Error as exc:
        text = str(exc)
        if "read-only" in text:
            raise SettleError(f"{READ_ONLY_HINT} ({text.splitlines()[0]})") from None
        raise SettleError(f"the query failed: {text}") from None
    if cur.description is None:
        return [], []
    return [d[0] for d in cur.description], cur.fetchall()


def _cell(value) -> str:
    return "NULL" if value is None else str(value)


def render(columns: list[str], rows: list[tuple], as_csv: bool = False) -> str:
    if not columns:
        return "OK\n"
    if as_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else str(v) for v in r] for r in rows])
        return buffer.getvalue()
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def run_query(db_path: Path, query: str, as_csv: bool = False) -> str:
    with connect_read_only(db_path) as con:
        return render(*_execute(con, query), as_csv=as_csv)


def prompt(db_path: Path) -> None:
    """Statements end with ';'. `.quit` or end of input leaves. An error is shown and the prompt
    goes on; with input from a pipe the first error stops with exit 1."""
    interactive = sys.stdin.isatty()
    with connect_read_only(db_path) as con:
        if interactive:
            click.echo(
                f"settle sql on {db_path} (read-only). End statements with ';', .quit to leave."
            )
        buffer: list[str] = []
        while True:
            try:
                line = (
                    input("settle> " if not buffer else "   ...> ")
                    if interactive
                    else next(sys.stdin)
                )
            except (EOFError, StopIteration):
                break
            if not buffer and line.strip() in {".quit", ".exit", "\\q"}:
                break
            buffer.append(line)
            if not line.rstrip().endswith(";"):
                continue
            statement, buffer = "\n".join(buffer), []
            try:
                click.echo(render(*_execute(con, statement)), nl=False)
            except SettleError as exc:
                if not interactive:
                    raise
                click.echo(f"error: {exc}", err=True)
        if buffer and "".join(buffer).strip():
            click.echo(render(*_execute(con, "\n".join(buffer))), nl=False)
