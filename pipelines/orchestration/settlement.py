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

from .. import engine, store
from ..errors import SettleError
from ..periods import fmt
from . import readback
from .partitions import MONTHS, ONE_RUN, months_of
from .resources import SettleFiles


class SettleRunConfig(dg.Config):
    """Optional narrowing of a run, as on the command line; the defaults settle every contract."""

    contracts: list[str] = []
    as_known_at: str | None = None


@dg.multi_asset(
    name="settle",
    specs=[
        dg.AssetSpec(t.name, description=t.description, deps=["validated_inputs"], kinds={"duckdb"})
        for t in store.RESULT_TABLES
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
    first, last = months_of(context)
    months = f"{fmt(first)}..{fmt(last)}" if first != last else fmt(first)
    request = engine.RunRequest(first, last, set(config.contracts) or None, _date(config))
    try:
        result = engine.settle(settle.contracts, settle.data, settle.db, request, context.log.info)
    except SettleError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
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
        for t in store.RESULT_TABLES:
            yield dg.MaterializeResult(
                asset_key=t.name, metadata=readback.summary(con, t.name, result, months)
            )
        for asset in readback.CHECKS:
            yield readback.check_result(con, asset, result.run_id)


def _date(config: SettleRunConfig) -> dt.date | None:
    if not config.as_known_at:
        return None
    try:
        return dt.date.fromisoformat(config.as_known_at)
    except ValueError:
        raise dg.Failure(
            description=f"as_known_at {config.as_known_at!r} is not a date (YYYY-MM-DD)",
            allow_retries=False,
        ) from None
