"""The Dagster code location `pipelines.definitions:defs`: the settlement over the CLI's engine.

    inputs/<folder>, contracts/<file> (external) ──> validated_inputs ──(blocking checks)──┐
    interaction_counts (DuckDB or Spark) ───────────────────────────────────────────────┴──>
    settle: index_factors -> charge_bands -> charge_lines -> service_credits, gain_share_months
            -> gain_share -> adjustments -> invoice_lines -> invoice_reconciliation
            (edges from store.ResultTable.upstream)

Monthly partitions from SETTLE_PARTITIONS_START (default 2024-01) to the last month with volumes;
a range backfill is one run and one engine call. The schedule settles the previous month on the
2nd at 06:00, or skips when the month has no data. Files come from SETTLE_CONTRACTS, SETTLE_DATA
and SETTLE_DB with the CLI's defaults. Steps run in one process, so they never contend for the
DuckDB file; another process holding it fails the run with the engine's message after
SETTLE_LOCK_WAIT_S."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from .orchestration.interaction_counts import (
    InteractionsEngine,
    contract_groups,
    interaction_counts,
)
from .orchestration.partitions import MONTHS, volume_months
from .orchestration.resources import SettleFiles
from .orchestration.settlement import settle
from .orchestration.sources import SOURCES
from .orchestration.validation import validated_inputs
from .periods import add_months, fmt

settle_month = dg.define_asset_job(
    "settle_month",
    selection=dg.AssetSelection.assets(validated_inputs, interaction_counts, settle),
    description="Validate the inputs, count the interactions, then settle the month (or range) "
    "in one transaction.",
)

# one job per static contract group (SETTLE_CONTRACT_GROUPS, default 2): separate runs that a
# distributed executor may schedule apart; they queue on the settlement_db pool for the database
GROUPS = contract_groups()
group_jobs = [
    dg.define_asset_job(
        f"settle_month_group_{k}_of_{GROUPS}",
        selection=dg.AssetSelection.assets(validated_inputs, settle),
        config={"ops": {"settle": {"config": {"groups": GROUPS, "group": k}}}},
        description=f"Settle the contracts of group {k} of {GROUPS} (by a hash of the id).",
    )
    for k in range(GROUPS)
    if GROUPS > 1
]


@dg.schedule(
    cron_schedule="0 6 2 * *",
    job=settle_month,
    name="month_end_settlement",
    description="Settles the previous month on the 2nd at 06:00, if volumes/ has it.",
)
def month_end(context: dg.ScheduleEvaluationContext, settle: SettleFiles):
    """The previous month's run, or a SkipReason when it has no data (yet) or the loaded
    partitions do not reach it (new data: reload the code location)."""
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    month = add_months(dt.date(tick.year, tick.month, 1), -1)
    key = fmt(month)
    if month not in volume_months(settle.data):
        return dg.SkipReason(f"{key}: no volumes in {settle.data / 'volumes'}; nothing to settle")
    if not MONTHS.has_partition_key(key):
        return dg.SkipReason(
            f"{key}: volumes arrived after the definitions loaded (partitions end at "
            f"{MONTHS.get_last_partition_key()}); reload the code location"
        )
    return dg.RunRequest(partition_key=key, run_key=f"month_end:{key}")


defs = dg.Definitions(
    assets=[*SOURCES, validated_inputs, interaction_counts, settle],
    jobs=[settle_month, *group_jobs],
    schedules=[month_end],
    resources={"settle": SettleFiles.from_env(), "interactions": InteractionsEngine()},
    executor=dg.in_process_executor,
)
