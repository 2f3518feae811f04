"""The settlement: one `engine.settle` call per run, each stored table reported as its own asset.

A month and a range are the same thing to the engine: a range backfill is one Dagster run
(BackfillPolicy.single_run) and one transaction, exactly `settle run --period A --to B`. The
work is one step, so nothing else in the run contends for the DuckDB file.

Each table depends on the tables its SQL reads (store.ResultTable.upstream, via lineage.py).
The multi-asset is subsettable for that reason: in Dagster 1.13.27 a *non*-subsettable
multi-asset whose assets depend on one another cannot be backfilled from the UI ("Targeted
subset must match between every key in a non-subsettable multi-asset": the check compares
partition subsets with `!=`, and one side carries a lazily computed partition count). A
subsettable one is not checked that way, and the backfill daemon still puts every selected
table in one run, since they share the partitions and the single-run policy (pinned by
tests/test_dagster.py). Whatever subset a run selects, the engine settles every table in one
transaction; the tables that were not selected are still recorded as materialised.
"""

import datetime as dt

import dagster as dg
import duckdb

from .. import engine, store
from ..config import load_contracts
from ..errors import SettleError
from ..periods import date_arg, fmt
from . import lineage, readback
from .boundary import settle_failures
from .interaction_counts import contract_group
from .partitions import MONTHS, ONE_RUN, months_of
from .resources import SettleFiles


class SettleRunConfig(dg.Config):
    """Optional narrowing of a run, as on the command line; the defaults settle every contract."""

    contracts: list[str] = []
    as_known_at: str | None = None
    # contract groups: settle only the contracts with contract_group(id, groups) == group
    groups: int = 1
    group: int = 0


@dg.multi_asset(
    name="settle",
    specs=[
        dg.AssetSpec(
            t.name, description=t.description, deps=lineage.table_deps(t), kinds={"duckdb"}
        )
        for t in store.DAGSTER_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(check, asset=asset, description=text, partitions_def=MONTHS)
        for asset, (check, text, _, _) in readback.CHECKS.items()
    ],
    partitions_def=MONTHS,
    backfill_policy=ONE_RUN,
    # Subsettable so the tables can depend on each other (see the module docstring); a run always
    # settles every table, whatever subset it was launched for.
    can_subset=True,
    group_name="settlement",
    # With an instance limit of 1 on this pool, runs queue for the database file instead of
    # waiting SETTLE_LOCK_WAIT_S for it inside engine.connect_for_write.
    pool="settlement_db",
)
def settle(
    context: dg.AssetExecutionContext,
    config: SettleRunConfig,
    settle: SettleFiles,
):
    """Settle the partition's months (a range: all of them in one transaction) with the engine
    the CLI uses, then report each stored table from the database."""
    with settle_failures("settle"):
        yield from _settle(context, config, settle)


def _settle(context: dg.AssetExecutionContext, config: SettleRunConfig, settle: SettleFiles):
    first, last = months_of(context)
    months = f"{fmt(first)}..{fmt(last)}" if first != last else fmt(first)
    request = engine.RunRequest(
        first,
        last,
        _contracts(config, settle),
        _date(config),
        # months the interaction_counts asset counted ahead are read from its Parquet; any
        # other is counted here, on SETTLE_INTERACTIONS_ENGINE
        counts_dir=settle.counts,
    )
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
    selected = context.selected_asset_keys
    checked = context.selected_asset_check_keys
    with con:
        for t in lineage.in_lineage_order():
            found = readback.summary(con, t.name, result, months)
            if dg.AssetKey(t.name) in selected:
                yield dg.MaterializeResult(asset_key=t.name, metadata=found)
            else:
                # not selected, but the engine rewrote it in the same transaction: still recorded
                for key in context.partition_keys:
                    context.log_event(
                        dg.AssetMaterialization(t.name, partition=key, metadata=found)
                    )
        keys = context.partition_keys
        for asset, (name, *_) in readback.CHECKS.items():
            if dg.AssetCheckKey(dg.AssetKey(asset), name) not in checked:
                continue
            if len(keys) == 1:
                yield readback.check_result(con, asset, result.run_id, months)
            else:
                for evaluation in readback.month_evaluations(
                    con, asset, result.run_id, keys, context.instance
                ):
                    context.log_event(evaluation)


def _contracts(config: SettleRunConfig, files: SettleFiles) -> set[str] | None:
    """The contracts of the run: config.contracts, narrowed to the run's contract group."""
    chosen = set(config.contracts) or None
    if config.groups <= 1:
        return chosen
    if not 0 <= config.group < config.groups:
        raise SettleError(f"contract group {config.group} is not in 0..{config.groups - 1}")
    ids = {c.contract_id for c in load_contracts(files.contracts)}
    grouped = {c for c in ids if contract_group(c, config.groups) == config.group}
    grouped &= chosen or grouped
    if not grouped:
        raise SettleError(f"contract group {config.group} of {config.groups} has no contracts")
    return grouped


def _date(config: SettleRunConfig) -> dt.date | None:
    if config.as_known_at is None:
        return None
    return date_arg(config.as_known_at, "as_known_at")
