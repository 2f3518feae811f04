"""The month-end commands (SPEC 11): approve, dispute, resolve, status, runs, export and sql.

With `--json` a command prints one JSON document on stdout (money as exact decimal strings,
months as `YYYY-MM`) and its human text on stderr, so scripts read stdout and people read both.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from . import engine, sql_shell, workflow
from . import export as exporter
from .explain.text import num
from .periods import fmt, period_arg

MONTH_KEYS = {"period", "billed_in_period", "period_from", "period_to", "window_start"}


def jsonable(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v, key) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return fmt(value) if key in MONTH_KEYS else value.isoformat()
    return value


def emit(as_json: bool, document: Any, human: str) -> None:
    """One JSON document on stdout and the human text on stderr, or the human text on stdout."""
    if as_json:
        if human:
            click.echo(human, err=True)
        click.echo(json.dumps(jsonable(document), indent=2))
    elif human:
        click.echo(human)


def json_option(func):
    return click.option(
        "--json", "as_json", is_flag=True, help="One JSON document on stdout; text on stderr."
    )(func)


def db_option(func):
    return click.option(
        "--db",
        "db",
        envvar="SETTLE_DB",
        default="settlement.duckdb",
        show_default=True,
        callback=lambda ctx, param, value: engine.check_db_path(value),
        help="DuckDB file (env SETTLE_DB).",
    )(func)


def contracts_list(values: tuple[str, ...]) -> set[str] | None:
    """Repeated --contract, each possibly comma-separated."""
    ids = {part.strip() for v in values for part in v.split(",") if part.strip()}
    return ids or None


def _money(value: Decimal | None) -> str:
    # as stored, at least 2 places: `:,.2f` rounded a 3- or 4-place amount_scale's amounts
    return "" if value is None else num(value, 2)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


_by = click.option("--by", "by", default=None, help="Who decides (default: the login name).")


@click.command()
@db_option
@click.option("--period", "period", required=True, help="First month to approve (YYYY-MM).")
@click.option("--to", "to", default=None, help="Last month of a range (YYYY-MM).")
@click.option("--contract", "contract_ids", multiple=True, help="Only these contracts (A,B).")
@_by
@click.option("--note", "note", default=None, help="A note kept with the approval.")
@json_option
def approve(db, period, to, contract_ids, by, note, as_json) -> None:
    """Approve the current invoice of each contract-month (records run, who, when, note)."""
    done = workflow.approve(
        db,
        period_arg(period),
        period_arg(to) if to else None,
        contracts_list(contract_ids),
        by,
        note,
    )
    human = "\n".join(
        f"{a.note} {a.contract_id} {fmt(a.period)} (run {a.run_id})"
        + (f" as approval {a.approval_id}" if a.approval_id else "")
        for a in done
    )
    emit(as_json, {"approvals": [vars(a) for a in done]}, human)


@click.command()
@db_option
@click.option("--period", "period", required=True, help="The disputed month (YYYY-MM).")
@click.option("--contract", "contract_id", required=True, help="Contract id.")
@click.option("--line", "line_key", required=True, help="Line key, e.g. usage:voice.")
@click.option("--reason", "reason", required=True, help="Why the line is disputed.")
@click.option(
    "--amount", "amount", default=None, help="Disputed amount (default: the line's difference)."
)
@_by
@json_option
def dispute(db, period, contract_id, line_key, reason, amount, by, as_json) -> None:
    """Raise a dispute on one line of a month's reconciliation."""
    d = workflow.dispute(
        db,
        period_arg(period),
        contract_id,
        line_key,
        reason,
        workflow.parse_amount(amount),
        by,
    )
    human = (
        f"dispute {d.dispute_id} raised on {d.contract_id} {fmt(d.period)} {d.line_key}: "
        f"{_money(d.amount)} (run {d.run_id})"
    )
    emit(as_json, {"dispute": vars(d)}, human)


@click.command()
@db_option
@click.option("--dispute", "dispute_id", required=True, type=int, help="Dispute id.")
@click.option("--outcome", "outcome", required=True, type=click.Choice(list(workflow.OUTCOMES)))
@click.option(
    "--amount",
    "amount",
    default=None,
    help="settled: billed on the next open month as dispute:<id> (negative credits the client).",
)
@click.option("--note", "note", required=True, help="How the dispute ended.")
@_by
@json_option
def resolve(db, dispute_id, outcome, amount, note, by, as_json) -> None:
    """End a dispute: accepted, rejected, or settled (with an amount billed next month)."""
    r = workflow.resolve(db, dispute_id, outcome, note, workflow.parse_amount(amount), by)
    billed = (
        f"; {_money(r['resolution_amount'])} is billed as dispute:{dispute_id} on the next open "
        "month after " + fmt(r["period"]) + " when it is settled"
        if r["resolution_amount"] is not None
        else ""
    )
    emit(as_json, {"dispute": r}, f"dispute {dispute_id} resolved: {outcome}{billed}")


STATUS_COLUMNS = [
    ("contract", "contract_id"),
    ("period", "period"),
    ("status", "status"),
    ("run", "run_id"),
    ("amount due", "amount_due"),
    ("billed", "billed"),
    ("difference", "difference"),
    ("exceptions", "exceptions"),
    ("disputes", "open_disputes"),
    ("approved by", "approved_by"),
    ("closed how", "closed_how"),
]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "period":
        return fmt(value)
    if isinstance(value, Decimal):
        return _money(value)
    return str(value)


@click.command()
@db_option
@click.option("--period", "period", default=None, help="Only this month (YYYY-MM).")
@click.option("--to", "to", default=None, help="Last month of a range (YYYY-MM).")
@click.option("--contract", "contract_ids", multiple=True, help="Only these contracts (A,B).")
@json_option
def status(db, period, to, contract_ids, as_json) -> None:
    """Per contract and month: open, disputed, approved or closed; run, amount due, exceptions."""
    rows = workflow.status(
        db,
        period_arg(period) if period else None,
        period_arg(to) if to else None,
        contracts_list(contract_ids),
    )
    human = (
        table(
            [h for h, _ in STATUS_COLUMNS],
            [[_cell(k, r[k]) for _, k in STATUS_COLUMNS] for r in rows],
        )
        if rows
        else "no settled months"
    )
    emit(as_json, {"months": rows}, human)


@click.command()
@db_option
@json_option
def runs(db, as_json) -> None:
    """The settlement runs: scope, mode, code version and how many files they read."""
    rows = workflow.runs(db)
    human = table(
        ["run", "started", "mode", "periods", "as known at", "contracts", "months", "files"],
        [
            [
                str(r["run_id"]),
                f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
                r["mode"],
                r["periods"],
                str(r["as_known_at"] or ""),
                str(len(r["contracts"] or [])),
                str(r["months_stored"]),
                str(r["input_files"]),
            ]
            for r in rows
        ],
    )
    emit(as_json, {"runs": rows}, human if rows else "no runs")


@click.command()
@db_option
@click.option("--period", "period", required=True, help="First month (YYYY-MM).")
@click.option("--to", "to", default=None, help="Last month of a range (YYYY-MM).")
@click.option(
    "--what", "what", required=True, type=click.Choice(list(exporter.WHAT)), help="What to export."
)
@click.option(
    "--format",
    "file_format",
    required=True,
    type=click.Choice(list(exporter.FORMATS)),
    help="csv and json carry money as exact decimal strings; parquet as DECIMAL(38, 4).",
)
@click.option(
    "--out",
    "out",
    default="exports",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder to write into.",
)
@click.option("--contract", "contract_ids", multiple=True, help="Only these contracts (A,B).")
def export(db, period, to, what, file_format, out, contract_ids) -> None:
    """Export current invoice lines, reconciliation, disputes or the ledger journal."""
    first = period_arg(period)
    path, count = exporter.export(
        db,
        first,
        period_arg(to) if to else first,
        what,
        file_format,
        out,
        contracts_list(contract_ids),
    )
    click.echo(f"{what}: {count} rows -> {path}")


@click.command()
@db_option
@click.argument("query", required=False)
@click.option("--csv", "as_csv", is_flag=True, help="Print the result as CSV.")
def sql(db, query, as_csv) -> None:
    """Read-only SQL on the database; with no QUERY, a prompt (statements end with ';')."""
    if query is not None:
        click.echo(sql_shell.run_query(db, query, as_csv), nl=False)
    else:
        sql_shell.prompt(db)


COMMANDS = [approve, dispute, resolve, status, runs, export, sql]
