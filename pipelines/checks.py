"""Every rule that stops a run on data, declared one way and run by one runner.

A check is a name, the rule in words and one SQL query that returns the offending rows (none: the
rule holds). It runs at a stage of the settlement:

    inputs     before anything is computed: inputs against the contracts (sql/input_rules.sql)
               and the raw interactions (pipelines/interactions.py declares those)
    <step>     right after the settlement step of that name (`indexation` after
               sql/03_indexation.sql ...): data a step needs and the inputs do not hold
               (sql/run_stops.sql); `settle validate` runs these too, through kpi_results
    stored     after the run's rows are stored, inside its transaction: invariants of the
               figures (sql/invariants.sql), which read the run's rows by `$run_id`; a broken one
               is a bug, fails the run and rolls everything back

Columns of the offending rows with a meaning to the runner: `_file` (the input file, shown as the
place of the error), `_row` (its 0-based row), `_column` (the column, when it varies by row),
`_detail` (the row's description, instead of its values). Every other column is shown as
`name=value`. The first failing check raises the one SettleError:

    <files or place>: column <column>: <n> row(s) break the rule '<rule>'; first: row 0 (...).

Check blocks in a .sql file start with `-- name:` and carry `-- rule:`, and optionally `-- stage:`
(default `inputs`), `-- column:` (else the rule's first word when it names a column), `-- where:`
(the place when the rows have no `_file`) and `-- hint:` (what to do, appended).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import SettleError
from .periods import fmt

SHOWN_ROWS = 3
SHOWN_FILES = 3
INVARIANT_NOTE = (
    "This is a bug in Settle, not in the inputs: the run was rolled back and nothing was written."
)


@dataclass(frozen=True)
class Check:
    name: str
    rule: str
    sql: str
    stage: str = "inputs"
    column: str = ""
    where: str = ""
    hint: str = ""
    # a cheap query whose first value is 0 when the rule surely holds (skips `sql`)
    precheck: str = ""
    # how `_file` is shown (interaction files are listed with their full paths)
    show_file: Callable[[str], str] | None = None


_HEADER = re.compile(r"^-- (name|rule|stage|column|where|hint): ?(.*)$")


def parse(text: str) -> list[Check]:
    """The check blocks of one .sql file, in file order."""
    checks = []
    for block in re.split(r"\n(?=-- name: )", text):
        lines = block.strip().splitlines()
        if not lines or not lines[0].startswith("-- name: "):
            continue
        fields: dict[str, str] = {}
        body = []
        for line in lines:
            match = _HEADER.match(line)
            if match and not body:
                key, value = match.groups()
                fields[key] = f"{fields[key]} {value}".strip() if key in fields else value.strip()
            elif body or not line.startswith("--"):
                body.append(line)
        sql = "\n".join(body).strip().rstrip(";").strip()
        checks.append(
            Check(
                name=fields["name"],
                rule=fields["rule"].rstrip("."),
                sql=sql,
                stage=fields.get("stage", "inputs"),
                column=fields.get("column", ""),
                where=fields.get("where", ""),
                hint=fields.get("hint", ""),
            )
        )
    return checks


FILES = ("input_rules.sql", "run_stops.sql", "invariants.sql")


def load(sql_dir: Path) -> list[Check]:
    """Every check declared in SQL, from the SQL folder the engine runs."""
    out: list[Check] = []
    for name in FILES:
        out += parse((sql_dir / name).read_text())
    return out


def at(checks: Iterable[Check], stage: str) -> list[Check]:
    return [c for c in checks if c.stage == stage]


def named(checks: Iterable[Check], name: str) -> Check:
    return next(c for c in checks if c.name == name)


# --------------------------------------------------------------------------- running


def run(
    con: duckdb.DuckDBPyConnection, checks: Iterable[Check], params: dict | None = None
) -> None:
    """Run the checks in order; the first one that returns rows raises its SettleError."""
    for check in checks:
        message = failure(con, check, params)
        if message:
            raise SettleError(message)


def _execute(con: duckdb.DuckDBPyConnection, check: Check, sql: str, params: dict | None):
    used = {k: v for k, v in (params or {}).items() if f"${k}" in sql}
    try:
        return con.execute(sql, used) if used else con.execute(sql)
    except duckdb.Error as exc:
        raise SettleError(f"check {check.name}: its SQL failed: {exc}") from exc


def failure(con: duckdb.DuckDBPyConnection, check: Check, params: dict | None = None) -> str:
    """The error paragraph of a broken check, or '' when it holds."""
    if check.precheck and not _execute(con, check, check.precheck, params).fetchone()[0]:
        return ""
    cur = _execute(con, check, check.sql, params)
    columns = [d[0] for d in cur.description]
    rows = cur.fetchmany(SHOWN_ROWS)
    if not rows:
        return ""
    file_list = ", list(DISTINCT _file ORDER BY _file)" if "_file" in columns else ""
    counted = f"SELECT count(*){file_list} FROM ({check.sql})"
    total, *files = _execute(con, check, counted, params).fetchone()
    shown_file = check.show_file or str
    files = [shown_file(f) for f in (files[0] if files else []) if f is not None]
    if files:
        where = ", ".join(files[:SHOWN_FILES]) + (
            f" and {len(files) - SHOWN_FILES} more file(s)" if len(files) > SHOWN_FILES else ""
        )
    else:
        where = check.where or f"check {check.name}"
    first = dict(zip(columns, rows[0], strict=True))
    column = first.get("_column") or check.column or _rule_column(check.rule)
    column_text = f"column {column}: " if column else ""
    shown = "; ".join(
        _describe(columns, row, shown_file if len(files) > 1 else None) for row in rows
    )
    message = f"{where}: {column_text}{total} row(s) break the rule '{check.rule}'; first: {shown}."
    if check.hint:
        message += f" {check.hint.rstrip('.')}."
    if check.stage == "stored":
        message = f"invariant {check.name} broken: {message} {INVARIANT_NOTE}"
    return message


def _rule_column(rule: str) -> str:
    match = re.match(r"^([a-z_]+) (?:must|and|has|is)\b", rule)
    return match.group(1) if match else ""


def show(column: str, value: object) -> str:
    # a month is shown as its month, unless the day is the problem
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date) and ("period" in column or "month" in column) and value.day == 1:
        return fmt(value)
    return str(value)


def _describe(columns: list[str], row: tuple, with_file: Callable[[str], str] | None) -> str:
    values = dict(zip(columns, row, strict=True))
    head = f"row {values['_row']} " if values.get("_row") is not None else ""
    if with_file and values.get("_file"):
        head = f"{with_file(values['_file'])} {head}"
    if "_detail" in values:
        return f"{head}({values['_detail']})"
    body = ", ".join(f"{k}={show(k, v)}" for k, v in values.items() if not k.startswith("_"))
    return f"{head}({body})"
