"""The interaction_counts stage as its own asset, and contract groups as separate runs (SPEC 12).

`interaction_counts` (monthly, a range in one run) counts the month's `period=YYYY-MM/`
interaction files, with their validation, on DuckDB or on Spark (the `interactions` resource),
and stores the counts as Parquet beside the database (SETTLE_COUNTS_DIR, default
`<db>.interaction_counts/period=YYYY-MM/`) with a manifest of the files and measurement they come
from. The settlement downstream reads a month's counts from there instead of scanning its files
again, as long as the files on disk are still those (pipelines/closed_months.py); otherwise it
counts them itself. Nothing is written to the database, so this step can run anywhere, in
parallel with other months or with the settlement of other contract groups.

Contract groups: `contract_group(id, n)` puts each contract in one of n static groups by a hash
of its id. The jobs `settle_month_group_<k>_of_<n>` settle only group k; the groups' runs wait
for one another on the `settlement_db` pool (one run at a time on the DuckDB file) and together
store what one run over every contract stores: each contract's figures depend on its own terms
and inputs only.
"""

import hashlib
import os

import dagster as dg
from pydantic import Field

from .. import closed_months
from ..errors import SettleError
from ..interactions import engine_name
from .partitions import MONTHS, ONE_RUN, months_of
from .resources import SettleFiles

GROUPS_ENV = "SETTLE_CONTRACT_GROUPS"


def contract_group(contract_id: str, groups: int) -> int:
    """The static group (0..groups-1) of a contract: stable across runs, machines and Python
    versions (sha256 of the id, not Python's salted hash())."""
    return int(hashlib.sha256(contract_id.encode()).hexdigest()[:8], 16) % groups


def contract_groups() -> int:
    try:
        groups = int(os.environ.get(GROUPS_ENV, "2"))
    except ValueError:
        raise SettleError(f"{GROUPS_ENV} must be a whole number of groups") from None
    return max(groups, 1)


class InteractionsEngine(dg.ConfigurableResource):
    """The engine that counts interactions: duckdb in process, or Spark (Spark Connect with
    spark_remote, a cluster master with spark_master, else local[*])."""

    engine: str = Field(
        default_factory=lambda: os.environ.get("SETTLE_INTERACTIONS_ENGINE", "duckdb"),
        description="duckdb | spark (env SETTLE_INTERACTIONS_ENGINE).",
    )
    spark_master: str = Field(
        default_factory=lambda: os.environ.get("SPARK_MASTER", ""),
        description="Spark master URL (env SPARK_MASTER); empty: local[*].",
    )
    spark_remote: str = Field(
        default_factory=lambda: os.environ.get("SPARK_REMOTE", ""),
        description="Spark Connect URL, sc://host:15002 (env SPARK_REMOTE).",
    )

    def name(self) -> str:
        chosen = engine_name(self.engine)
        if chosen == "spark":
            # pipelines.spark reads these when it starts the session
            for key, value in (
                ("SPARK_MASTER", self.spark_master),
                ("SPARK_REMOTE", self.spark_remote),
            ):
                if value:
                    os.environ[key] = value
        return chosen


def count_ahead(files: SettleFiles, first, last, engine_choice: str) -> dict:
    return closed_months.count_ahead(
        files.contracts, files.data, files.counts, first, last, engine_choice
    )


@dg.asset(
    name="interaction_counts",
    partitions_def=MONTHS,
    backfill_policy=ONE_RUN,
    group_name="settlement",
    kinds={"duckdb", "spark"},
    description=(
        "Per contract, service line, month, exclusion segment and threshold class: the counts "
        "every measured KPI needs, and the extremes the interaction rules test. "
        "sql/interactions.sql on DuckDB or Spark, from interactions/ and exclusions/; stored as "
        "Parquet beside the database for the settlement to read."
    ),
)
def interaction_counts(
    context: dg.AssetExecutionContext, settle: SettleFiles, interactions: InteractionsEngine
) -> dg.MaterializeResult:
    first, last = months_of(context)
    chosen = interactions.name()
    try:
        summary = count_ahead(settle, first, last, chosen)
    except SettleError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(
        f"interaction_counts on {chosen}: {summary['files']} file(s), months "
        f"{', '.join(summary['months']) or 'none'}, {summary['rows']} row(s)"
    )
    return dg.MaterializeResult(
        metadata={
            "engine": chosen,
            "files": summary["files"],
            "months": ", ".join(summary["months"]),
            "rows": summary["rows"],
            "counts_dir": dg.MetadataValue.path(str(settle.counts)),
        }
    )
