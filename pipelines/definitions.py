"""The Dagster code location `pipelines.definitions:defs`: the settlement over the CLI's engine.

    validated_inputs ──(blocking checks)──┐
    interaction_counts (DuckDB or Spark) ─┴──> settle: index_factors, charge_bands, charge_lines,
                                            kpi_results, service_credits, gain_share,
                                            adjustments, invoice_lines, invoice_reconciliation

Monthly partitions from SETTLE_PARTITIONS_START (default 2024-01); a range backfill is one run
and one engine call. The schedule settles the previous month on the 2nd at 06:00. Files come from
SETTLE_CONTRACTS, SETTLE_DATA and SETTLE_DB with the CLI's defaults. Steps run in one process, so
they never contend for the DuckDB file; another process holding it fails the run with the
engine's message after SETTLE_LOCK_WAIT_S.
"""

from __future__ import annotations

import dagster as dg

from .orchestration.interaction_counts import (
    InteractionsEngine,
    contract_groups,
    interaction_counts,
)
from .orchestration.resources import SettleFiles
from .orchestration.settlement import settle
from .orchestration.validation import validated_inputs

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

month_end = dg.build_schedule_from_partitioned_job(
    settle_month,
    name="month_end_settlement",
    description="Settles the previous month on the 2nd at 06:00.",
    hour_of_day=6,
    day_of_month=2,
)

defs = dg.Definitions(
    assets=[validated_inputs, interaction_counts, settle],
    jobs=[settle_month, *group_jobs],
    schedules=[month_end],
    resources={"settle": SettleFiles.from_env(), "interactions": InteractionsEngine()},
    executor=dg.in_process_executor,
)
