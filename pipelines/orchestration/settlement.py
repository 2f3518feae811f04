"""The settlement: one `engine.settle` call per run, each stored table reported as its own asset.

A month and a range are the same thing to the engine: a range backfill is one Dagster run
(BackfillPolicy.single_run) and one transaction, exactly `settle run --period A --to B`. The
work is one step, so nothing else in the run contends for the DuckDB file.

Every table depends on `validated_inputs` only, not on each other: in Dagster 1.13.27 a
non-subsettable multi-asset whose assets depend on one another cannot be backfilled from the UI
("Targeted subset must match between every key in a non-subsettable multi-asset": the check
compares partition subsets with `!=`, which counts a lazily computed partition count). The
descriptions say what each is computed from.
"""

import datetime as dt

import dagster as dg
import duckdb

from .. import engine
from ..periods import date_arg, fmt
from . import readback
from .boundary import settle_failures
from .partitions import MONTHS, ONE_RUN, months_of
from .resources import SettleFiles

# stored table -> what it holds and what it is computed from, in the order the SQL computes them
TABLES: dict[str, str] = {
    "index_factors": (
        "Indexation review factors per contract: the index values, raw and clamped change, and "
        "the factor that prices and baselines are multiplied by. sql/03_indexation.sql, from "
        "the contract terms and index_values/."
    ),
    "charge_bands": (
        "Units per pricing band and month, with the indexed rate and flat fee of each band. "
        "sql/04_pricing.sql, from volumes/ and index_factors."
    ),
    "charge_lines": (
        "Charges before credits: usage, fixed fee, minimum and surge lines per contract and "
        "month. sql/04_pricing.sql, from charge_bands and index_factors."
    ),
    "kpi_results": (
        "Each KPI per month: value (input or measured from interactions), target, met / failed / "
        "excused / no_data, consecutive failures, critical. sql/05_measures.sql and "
        "sql/06_kpi_results.sql, from kpis/, interactions/ and exclusions/."
    ),
    "service_credits": (
        "Credits for failed KPIs: at-risk amount, severity, repeat multiplier, monthly cap, "
        "earn-back. sql/07_credits.sql, from charge_lines and kpi_results."
    ),
    "gain_share": (
        "Gain-share windows: baseline and actual cost, savings, tiers, cap, gates and the provider "
        "amount billed on the window's last month. sql/08_gain_share.sql, from charge_lines, "
        "kpi_results and index_factors."
    ),
    "adjustments": (
        "Restated closed months: closed, restated and delta per line, billed on the next open "
        "month's invoice. sql/10_adjustments.sql, from the restated invoice and the closing runs."
    ),
    "invoice_lines": (
        "The invoice the contract says is due, line by line, each amount rounded once. "
        "sql/09_invoice.sql and sql/10_adjustments.sql, from charge_lines, service_credits, "
        "gain_share and adjustments."
    ),
    "invoice_reconciliation": (
        "The provider's invoice against the expected one: difference, status, rate and volume "
        "variance per line. sql/11_reconcile.sql, from invoice_lines and vendor_invoices/."
    ),
}


class SettleRunConfig(dg.Config):
    """Optional narrowing of a run, as on the command line; the defaults settle every contract."""

    contracts: list[str] = []
    as_known_at: str | None = None


@dg.multi_asset(
    name="settle",
    specs=[
        dg.AssetSpec(name, description=text, deps=["validated_inputs"], kinds={"duckdb"})
        for name, text in TABLES.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(check, asset=asset, description=text)
        for asset, (check, text, _, _) in readback.CHECKS.items()
    ],
    partitions_def=MONTHS,
    backfill_policy=ONE_RUN,
    group_name="settlement",
    # With an instance limit of 1 on this pool, runs queue for the database file instead of
    # waiting SETTLE_LOCK_WAIT_S for it inside engine.connect_for_write.
    pool="settlement_db",
)
def settle(context: dg.AssetExecutionContext, config: SettleRunConfig, settle: SettleFiles):
    """Settle the partition's months (a range: all of them in one transaction) with the engine
    the CLI uses, then report each stored table from the database."""
    with settle_failures("settle"):
        yield from _settle(context, config, settle)


def _settle(context: dg.AssetExecutionContext, config: SettleRunConfig, settle: SettleFiles):
    first, last = months_of(context)
    months = f"{fmt(first)}..{fmt(last)}" if first != last else fmt(first)
    request = engine.RunRequest(first, last, set(config.contracts) or None, _date(config))
    result = engine.settle(settle.contracts, settle.data, settle.db, request, context.log.info)
    context.log.info(
        f"settle run {result.run_id}: {months}, {result.written_months} contract-months"
    )
    try:
        con = duckdb.connect(str(settle.db), read_only=True)
    except duckdb.IOException as exc:
        raise dg.Failure(
            description=f"settle run {result.run_id} was committed to {settle.db}, but another "
            f"process took the file before its figures could be read back: {exc}",
            allow_retries=False,
        ) from None
    with con:
        for name in TABLES:
            yield dg.MaterializeResult(
                asset_key=name, metadata=readback.summary(con, name, result, months)
            )
        for asset in readback.CHECKS:
            yield readback.check_result(con, asset, result.run_id)


def _date(config: SettleRunConfig) -> dt.date | None:
    if config.as_known_at is None:
        return None
    return date_arg(config.as_known_at, "as_known_at")
