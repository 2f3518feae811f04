"""`settle`: validate, run, close, explain and report, over the one engine.

Errors the user can fix (bad config, bad input, a locked database) are printed as one paragraph
and exit 1; nothing is written. Anything else is a bug: one paragraph says so and where the full
traceback was written (`--debug` prints it), and the exit code is 70. A raw traceback never
reaches the console. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback
from decimal import Decimal
from pathlib import Path

import click
import duckdb

from . import engine
from .cli_workflow import COMMANDS, db_option, emit, json_option
from .errors import BUG_EXIT, SettleError, bug_message, write_traceback
from .explain.text import num
from .periods import date_arg, fmt, period_arg

# set by the group's --debug (or SETTLE_DEBUG=1) before any command runs; read by entry()
_DEBUG = {"on": False}


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _common(func):
    func = click.option(
        "--db",
        "db",
        envvar="SETTLE_DB",
        default="settlement.duckdb",
        show_default=True,
        # text, not click.Path: that turns "" into "." before the check sees it
        type=str,
        callback=_db_path,
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


def _db_path(ctx, param, value: str) -> Path:
    return engine.check_db_path(value)


def _contract_ids(ctx, param, values: tuple[str, ...]) -> set[str] | None:
    """`--contract A,B` and `--contract A --contract B` alike; empty pieces are a typo, refused."""
    ids = [piece.strip() for value in values for piece in value.split(",")]
    if any(not i for i in ids):
        raise SettleError(f"--contract {','.join(values)!r}: an empty contract id")
    return set(ids) or None


def _contract_option(func):
    return click.option(
        "--contract",
        "contract_ids",
        multiple=True,
        callback=_contract_ids,
        help="Only these contracts (repeat, or A,B).",
    )(func)


def _money(value: Decimal | None) -> str:
    # as stored, at least 2 places: `:,.2f` rounded a 3- or 4-place amount_scale's amounts
    return "" if value is None else num(value, 2)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="settle")
@click.option(
    "--debug",
    is_flag=True,
    envvar="SETTLE_DEBUG",
    help="On an internal error, print the full traceback too (env SETTLE_DEBUG=1).",
)
def main(debug: bool) -> None:
    """Settle outsourced contact-centre contracts: invoices, credits, gain-share, reconciliation."""
    _DEBUG["on"] = debug


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
@_contract_option
@click.option(
    "--as-known-at",
    "as_known_at",
    default=None,
    help="Rebuild with only the terms agreed on or before this date (YYYY-MM-DD).",
)
@click.option("--dry-run", is_flag=True, help="Compute and print, write nothing.")
@click.option(
    "--interactions-engine",
    "interactions_engine",
    type=click.Choice(["duckdb", "spark"]),
    envvar="SETTLE_INTERACTIONS_ENGINE",
    default="duckdb",
    show_default=True,
    help="Engine that counts interactions/ (spark: SPARK_REMOTE or SPARK_MASTER, else local[*]).",
)
@click.option(
    "--counts-dir",
    "counts_dir",
    envvar="SETTLE_COUNTS_DIR",
    default=None,
    type=click.Path(path_type=Path),
    help="Interaction counts counted ahead (pipelines/spark_submit.py, Dagster): read instead "
    "of the month's files while those are unchanged.",
)
@click.option(
    "--dagster-home",
    default=None,
    help="Record the run as materialisations in this Dagster instance (default: DAGSTER_HOME, "
    "if set).",
)
@json_option
def run(
    contracts,
    data,
    db,
    period,
    to,
    contract_ids,
    as_known_at,
    dry_run,
    interactions_engine,
    counts_dir,
    dagster_home,
    as_json,
) -> None:
    """Settle one month or a range as one run."""
    first = period_arg(period)
    last = period_arg(to, "--to") if to is not None else first
    known_at = date_arg(as_known_at, "--as-known-at") if as_known_at is not None else None
    request = engine.RunRequest(
        first, last, contract_ids, known_at, dry_run, interactions_engine, counts_dir
    )
    result = engine.settle(contracts, data, db, request, _progress)
    human = _result_text(result, db, dry_run, first, last)
    document = {
        "run_id": result.run_id,
        "mode": result.mode,
        "dry_run": dry_run,
        "written_months": result.written_months,
        "invoice_count": result.invoice_count,
        # past engine.SUMMARY_INVOICES invoices the run lists its totals per month instead
        "invoices_listed": result.listed,
        "invoices": result.invoices,
        "reconciliation": result.reconciliation,
        "totals": result.totals,
        "adjustments": result.adjustments,
    }
    emit(as_json, document, human)
    if not dry_run and result.run_id is not None:
        from .orchestration.record import record_cli_run

        line = record_cli_run(db, result.run_id, dagster_home)
        if line:
            click.echo(line, err=line.startswith("warning") or as_json)


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
    out.append(_invoice_table(result, db, dry_run) if result.listed else _totals_table(result, db))
    return "\n".join(out)


def _totals_table(result: engine.RunResult, db: Path) -> str:
    """A run of more invoices than anyone reads on a console: its totals per month and currency
    (added up in SQL), and where the invoices are."""
    headers = ["period", "cur", "invoices", "charges", "credits+bonus", "gain-share",
               "adjustments", "other terms", "amount due", "billed", "difference",
               "exceptions"]  # fmt: skip
    rows = [
        [
            fmt(t["period"]),
            t["currency"],
            str(t["invoices"]),
            _money(t["charges"]),
            _money(t["credits_and_bonus"]),
            _money(t["gain_share"]),
            _money(t["adjustments"]),
            _money(t["other"]),
            _money(t["amount_due"]),
            _money(t["billed"]),
            _money(t["difference"]),
            str(t["exceptions"] or 0),
        ]  # fmt: skip
        for t in result.totals
    ]
    out = [_table(headers, rows)]
    if result.adjustments:
        out.append(f"\n{len(result.adjustments)} adjustments for restated closed months.")
    what = f"run {result.run_id} ({result.mode}) -> {db}" if result.run_id else "dry run"
    out.append(
        f"\n{result.invoice_count} invoices over {result.written_months} contract-months, "
        f"totalled per month above; list them with `settle status`, `settle export "
        f"invoice_lines` or `settle report`; {what}"
    )
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
                _money(inv.get("other")),
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
        "other terms",  # pass-through, one-off, FX share, annual cap refund (SPEC 10)
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
@_contract_option
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
        contract_ids,
        _progress,
        period_arg(to, "--to") if to is not None else None,
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
    """The console script: every command's one error boundary."""
    sys.exit(run_main(sys.argv[1:]))


def run_main(args: list[str]) -> int:
    """Run the CLI on `args` and return the exit code: 0 done, 1 a SettleError (or output that
    cannot be written), 2 a usage error (click's), 130 interrupted, 141 stdout closed, BUG_EXIT
    anything else."""
    _DEBUG["on"] = os.environ.get("SETTLE_DEBUG", "") not in ("", "0")
    try:
        code = main.main(args, prog_name="settle", standalone_mode=False)
        sys.stdout.flush()  # a full disk behind `> file` shows here, inside the boundary
        return code if isinstance(code, int) else 0
    except BrokenPipeError:
        # the reader of stdout went away (`settle run | head`): nothing left to say to it
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush quiet
        return 141
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            return _bug(exc, args)
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush quiet
        where = exc.filename or "standard output"
        click.echo(
            f"error: cannot write to {where}: {exc.strerror}. A run or close commits before it "
            "prints, so check `settle explain` or the database for what was stored.",
            err=True,
        )
        return 1
    except SettleError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted: nothing was written", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else 2
    except Exception as exc:
        if isinstance(exc, RuntimeError) and str(exc).startswith("Query interrupted"):
            # DuckDB's word for a signal (Ctrl-C) that arrived inside a query
            click.echo("interrupted: nothing was written", err=True)
            return 130
        if _out_of_memory(exc):
            click.echo(
                f"error: out of memory: {(str(exc).splitlines() or [''])[0][:300]}. Nothing was "
                "written: a run or close that had not committed was rolled back. Give the process "
                f"more memory, or lower SETTLE_MEMORY_LIMIT (DuckDB's limit, default "
                f"{engine.DEFAULT_MEMORY_LIMIT}) so that "
                "DuckDB spills to SETTLE_TEMP_DIR sooner.",
                err=True,
            )
            return 1
        return _bug(exc, args)
    except BaseException as exc:
        # a Rust library's panic reaches Python as pyo3's PanicException, a BaseException
        if type(exc).__name__ != "PanicException":
            raise
        return _bug(exc, args)


def _out_of_memory(exc: BaseException) -> bool:
    """The machine ran out of memory: Python's MemoryError, DuckDB's OutOfMemoryException, or an
    Arrow stream DuckDB could not read because Python could not allocate (it names MemoryError)."""
    if isinstance(exc, (MemoryError, duckdb.OutOfMemoryException)):
        return True
    return isinstance(exc, duckdb.Error) and "MemoryError" in str(exc)


def _bug(exc: Exception, args: list[str]) -> int:
    command = " ".join(args)
    log = write_traceback(exc, command)
    if _DEBUG["on"]:
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    click.echo(f"error: {bug_message(exc, command, log)}", err=True)
    return BUG_EXIT


if __name__ == "__main__":
    entry()
