"""`settle`: validate, run, close, explain and report, over the one engine.

Errors the user can fix (bad config, bad input, a locked database) are printed as one paragraph
and exit 1; nothing is written. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import click

from . import engine
from .cli_workflow import COMMANDS, contracts_list, db_option, emit, json_option
from .errors import SettleError
from .periods import fmt, period_arg


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _common(func):
    func = click.option(
        "--db",
        "db",
        envvar="SETTLE_DB",
        default="settlement.duckdb",
        show_default=True,
        type=click.Path(path_type=Path),
        help="DuckDB file (env SETTLE_DB).",
    )(func)
    func = click.option(
        "--data",
        "data",
        envvar="SETTLE_DATA",
        default="data_samples",
        show_default=True,
        type=click.Path(path_type=Path),
        help="Input Parquet folder (env SETTLE_DATA).",
    )(func)
    func = click.option(
        "--contracts",
        "contracts",
        envvar="SETTLE_CONTRACTS",
        default="contracts_config",
        show_default=True,
        type=click.Path(path_type=Path),
        help="Contract YAML folder (env SETTLE_CONTRACTS).",
    )(func)
    return func


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(
            h.ljust(w) if i < 2 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


@click.group()
@click.version_option(package_name="settle")
def main() -> None:
    """Settle outsourced contact-centre contracts: invoices, credits, gain-share, reconciliation."""


@main.command()
@_common
@json_option
def validate(contracts: Path, data: Path, db: Path, as_json: bool) -> None:
    """Check every contract and input file; exit 1 with the first error."""
    counts = engine.validate(contracts, data, _progress)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    emit(as_json, {"ok": True, "counts": counts}, f"OK: {summary}")


@main.command()
@_common
@click.option("--period", "period", required=True, help="First month to settle (YYYY-MM).")
@click.option("--to", "to", default=None, help="Last month of a range (YYYY-MM).")
@click.option("--contract", "contract_ids", multiple=True, help="Only these contracts.")
@click.option(
    "--as-known-at",
    "as_known_at",
    default=None,
    help="Rebuild with only the terms agreed on or before this date (YYYY-MM-DD).",
)
@click.option("--dry-run", is_flag=True, help="Compute and print, write nothing.")
@json_option
def run(contracts, data, db, period, to, contract_ids, as_known_at, dry_run, as_json) -> None:
    """Settle one month or a range as one run."""
    import datetime as dt

    first = period_arg(period)
    last = period_arg(to) if to else first
    known_at = None
    if as_known_at:
        try:
            known_at = dt.date.fromisoformat(as_known_at)
        except ValueError:
            raise SettleError(f"--as-known-at {as_known_at!r} is not a date (YYYY-MM-DD)") from None
    request = engine.RunRequest(first, last, contracts_list(contract_ids), known_at, dry_run)
    result = engine.settle(contracts, data, db, request, _progress)
    human = _result_text(result, db, dry_run, first, last)
    document = {
        "run_id": result.run_id,
        "mode": result.mode,
        "dry_run": dry_run,
        "written_months": result.written_months,
        "invoices": result.invoices,
        "reconciliation": result.reconciliation,
        "adjustments": result.adjustments,
    }
    emit(as_json, document, human)


def _result_text(result, db: Path, dry_run: bool, first, last) -> str:
    out: list[str] = []
    beyond = sorted(
        {
            (i["contract_id"], i["period"])
            for i in result.invoices
            if not first <= i["period"] <= last
        }
    )
    if beyond:
        out.append(
            "Requested months are closed: their restated figures are billed on the next open "
            "month, which this run therefore settled too: "
            + ", ".join(f"{c} {fmt(p)}" for c, p in beyond)
        )
        out.append("")
    out.append(_invoice_table(result, db, dry_run))
    return "\n".join(out)


def _invoice_table(result: engine.RunResult, db: Path, dry_run: bool) -> str:
    out: list[str] = []
    recon = {(r["contract_id"], r["period"]): r for r in result.reconciliation}
    rows = []
    for inv in result.invoices:
        rec = recon.get((inv["contract_id"], inv["period"]), {})
        rows.append(
            [
                inv["contract_id"],
                fmt(inv["period"]),
                inv["currency"],
                _money(inv["charges"]),
                _money(inv["credits_and_bonus"]),
                _money(inv["gain_share"]),
                _money(inv["adjustments"]),
                _money(inv["amount_due"]),
                _money(rec.get("billed")),
                _money(rec.get("difference")),
                str(rec.get("exceptions", "")),
            ]
        )
    headers = [
        "contract",
        "period",
        "cur",
        "charges",
        "credits+bonus",
        "gain-share",
        "adjustments",
        "amount due",
        "billed",
        "difference",
        "exceptions",
    ]
    out.append(_table(headers, rows))
    if result.adjustments:
        out.append("")
        out.append("Adjustments for restated closed months:")
        for a in result.adjustments:
            out.append(
                f"  {a['contract_id']} {fmt(a['period'])} {a['line_key']}: {_money(a['delta'])} "
                f"billed in {fmt(a['billed_in_period'])} ({a['reason']})"
            )
    what = "dry run: nothing written" if dry_run else f"run {result.run_id} ({result.mode}) -> {db}"
    out.append(
        f"\n{len(result.invoices)} invoices over {result.written_months} contract-months; {what}"
    )
    return "\n".join(out)


@main.command()
@_common
@click.option("--period", "period", required=True, help="Month to close (YYYY-MM).")
@click.option("--to", "to", default=None, help="Last month of a range to close (YYYY-MM).")
@click.option("--contract", "contract_ids", multiple=True, help="Only these contracts.")
@click.option(
    "--force", is_flag=True, help="Close months that are neither approved nor fully disputed."
)
@click.option("--by", "by", default=None, help="Who closes (default: the login name).")
@json_option
def close(contracts, data, db, period, to, contract_ids, force, by, as_json) -> None:
    """Close (lock) approved or fully disputed months: their current figures become final."""
    from .workflow import default_user

    closed = engine.close(
        db,
        period_arg(period),
        contracts_list(contract_ids),
        _progress,
        period_arg(to) if to else None,
        force=force,
        by=by or default_user(),
    )
    human = "\n".join(
        f"closed {c.contract_id} {fmt(c.period)} at run {c.run_id} ({c.how})"
        if c.how != "already closed"
        else f"{c.contract_id} {fmt(c.period)} was already closed"
        for c in closed
    )
    emit(as_json, {"closed": [vars(c) for c in closed]}, human or "nothing to close")


@main.command()
@db_option
@click.option("--contract", "contract_id", required=True, help="Contract id.")
@click.option("--period", "period", required=True, help="Month (YYYY-MM).")
@click.option("--line", "line_key", default=None, help="Only this line key (e.g. usage:voice).")
def explain(db, contract_id, period, line_key) -> None:
    """How each invoice line was derived, from the database alone (opened read-only)."""
    from .explain import explain as explain_lines

    click.echo(explain_lines(db, contract_id, period_arg(period), line_key), nl=False)


@main.command()
@db_option
@click.option("--period", "period", required=True, help="Month (YYYY-MM).")
@click.option(
    "--format",
    "pack_format",
    type=click.Choice(["xlsx", "html"]),
    default="xlsx",
    show_default=True,
    help="Excel workbook or one self-contained HTML page.",
)
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(path_type=Path),
    help="Output file (default reports/settlement_pack_YYYY-MM.<format>).",
)
def report(db, period, pack_format, out) -> None:
    """The settlement pack for sign-off, from the database alone (opened read-only)."""
    from .report import write_pack

    path = write_pack(db, period_arg(period), pack_format, out, _progress)
    click.echo(f"settlement pack {period} ({pack_format}) -> {path}")


for _command in COMMANDS:
    main.add_command(_command)


def entry() -> None:
    try:
        main(standalone_mode=False)
    except SettleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else 2)


if __name__ == "__main__":
    entry()
