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
def validate(contracts: Path, data: Path, db: Path) -> None:
    """Check every contract and input file; exit 1 with the first error."""
    counts = engine.validate(contracts, data, _progress)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    click.echo(f"OK: {summary}")


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
@click.option(
    "--dagster-home",
    default=None,
    help="Record the run as materialisations in this Dagster instance (default: DAGSTER_HOME, "
    "if set).",
)
def run(contracts, data, db, period, to, contract_ids, as_known_at, dry_run, dagster_home) -> None:
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
    request = engine.RunRequest(first, last, set(contract_ids) or None, known_at, dry_run)
    result = engine.settle(contracts, data, db, request, _progress)
    _print_result(result, db, dry_run)
    if not dry_run and result.run_id is not None:
        from .orchestration.record import record_cli_run

        line = record_cli_run(db, result.run_id, dagster_home)
        if line:
            click.echo(line, err=line.startswith("warning"))


def _print_result(result: engine.RunResult, db: Path, dry_run: bool) -> None:
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
    click.echo(_table(headers, rows))
    if result.adjustments:
        click.echo("")
        click.echo("Adjustments for restated closed months:")
        for a in result.adjustments:
            click.echo(
                f"  {a['contract_id']} {fmt(a['period'])} {a['line_key']}: {_money(a['delta'])} "
                f"billed in {fmt(a['billed_in_period'])} ({a['reason']})"
            )
    what = "dry run: nothing written" if dry_run else f"run {result.run_id} ({result.mode}) -> {db}"
    click.echo(
        f"\n{len(result.invoices)} invoices over {result.written_months} contract-months; {what}"
    )


@main.command()
@_common
@click.option("--period", "period", required=True, help="Month to close (YYYY-MM).")
@click.option("--to", "to", default=None, help="Last month of a range to close (YYYY-MM).")
@click.option("--contract", "contract_ids", multiple=True, help="Only these contracts.")
def close(contracts, data, db, period, to, contract_ids) -> None:
    """Close (lock) months: their current figures become final."""
    closed = engine.close(
        db, period_arg(period), set(contract_ids) or None, _progress, period_arg(to) if to else None
    )
    for contract_id, month, run_id in closed:
        click.echo(f"closed {contract_id} {fmt(month)} at run {run_id}")
    if not closed:
        click.echo("nothing to close")


@main.command()
@_common
@click.option("--contract", "contract_id", required=True, help="Contract id.")
@click.option("--period", "period", required=True, help="Month (YYYY-MM).")
@click.option("--line", "line_key", default=None, help="Only this line key (e.g. usage:voice).")
def explain(contracts, data, db, contract_id, period, line_key) -> None:
    """How each invoice line was derived, from the database alone (opened read-only)."""
    from .explain import explain as explain_lines

    click.echo(explain_lines(db, contract_id, period_arg(period), line_key), nl=False)


@main.command()
@_common
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
def report(contracts, data, db, period, pack_format, out) -> None:
    """The settlement pack for sign-off, from the database alone (opened read-only)."""
    from .report import write_pack

    path = write_pack(db, period_arg(period), pack_format, out, _progress)
    click.echo(f"settlement pack {period} ({pack_format}) -> {path}")


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
