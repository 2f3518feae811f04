"""`validated_inputs`: the engine's checks on contracts and inputs, as blocking asset checks.

The checks read every input file, not only the partition's months: `engine.settle` reads the whole
history (runs of KPI failures, gain-share windows, restated closed months) and refuses any bad row,
so a bad row in any month stops every settlement until it is fixed, as it does for `settle run`.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import polars as pl

from .. import engine
from ..periods import fmt
from .boundary import settle_failures
from .display import table
from .partitions import MONTHS, ONE_RUN, months_of
from .readback import latest_materialization
from .resources import SettleFiles
from .sources import SOURCES, observations

# engine validation stage -> (check name, what it checks)
CHECKS: dict[str, tuple[str, str]] = {
    "contracts": (
        "contract_configs",
        "Every contract YAML loads and passes its rules (pipelines/config.py): the file, key path "
        "and reason of the first bad one.",
    ),
    "inputs": (
        "input_schemas",
        "Every Parquet input is a readable file in a valid period= folder and passes its Pandera "
        "schema (pipelines/inputs.py): columns, types (no time zones), nullability, declared "
        "ranges and unique keys; the file, column, rule and first offending rows.",
    ),
    "references": (
        "input_references",
        "Every check that needs no settlement (pipelines/checks.py): inputs name known contracts, "
        "service lines and KPIs inside the contract term, KPI values in their kind's range "
        "(sql/input_rules.sql), interaction rows (pipelines/interactions.py), and what the steps "
        "through the KPI results need from the inputs: index values, required KPIs "
        "(sql/run_stops.sql); the first broken check with its rows.",
    ),
}


@dg.asset(
    partitions_def=MONTHS,
    backfill_policy=ONE_RUN,
    group_name="settlement",
    kinds={"pandera", "polars"},
    deps=[s.key for s in SOURCES],
    check_specs=[
        dg.AssetCheckSpec(
            name, asset="validated_inputs", description=text, blocking=True, partitions_def=MONTHS
        )
        for name, text in CHECKS.values()
    ],
)
def validated_inputs(
    context: dg.AssetExecutionContext, settle: SettleFiles
) -> Iterator[dg.MaterializeResult]:
    """The contracts and inputs a settlement reads, checked exactly as `settle validate` checks
    them. Writes nothing to the settlement database. A failed check stops the settlement of the
    month (or range): nothing downstream runs, nothing is written."""
    first, last = months_of(context)
    for observed in observations(settle.contracts, settle.data, {s.key for s in SOURCES}):
        context.log_event(observed)
    with settle_failures("validated_inputs"):
        report = engine.validation_report(settle.contracts, settle.data)
    results = []
    for stage in engine.VALIDATION_STAGES:
        name, _ = CHECKS[stage]
        if not report.ran(stage):
            results.append(
                dg.AssetCheckResult(
                    check_name=name,
                    passed=False,
                    severity=dg.AssetCheckSeverity.WARN,
                    description="Not checked: the contracts or inputs did not load.",
                )
            )
        elif stage in report.errors:
            context.log.error(report.errors[stage])
            results.append(
                dg.AssetCheckResult(
                    check_name=name,
                    passed=False,
                    description=report.errors[stage],
                )
            )
        else:
            results.append(dg.AssetCheckResult(check_name=name, passed=True))
    yield dg.MaterializeResult(metadata=_summary(report, first, last), check_results=results)
    keys = context.partition_keys
    if len(keys) > 1:
        # a range is one step with one (unpartitioned, blocking) result per check; the same
        # outcome is recorded on each month, after the materialisation it checked, so a
        # partition's page shows its checks
        for result in results:
            for key in keys:
                context.log_event(
                    dg.AssetCheckEvaluation(
                        asset_key=dg.AssetKey("validated_inputs"),
                        check_name=result.check_name,
                        passed=result.passed,
                        severity=result.severity,
                        description=result.description,
                        partition=key,
                        target_materialization_data=latest_materialization(
                            context.instance, "validated_inputs", key
                        ),
                        metadata={"months": f"{fmt(first)}..{fmt(last)}"},
                    )
                )


def _summary(report: engine.Validation, first: dt.date, last: dt.date) -> dict:
    months = f"{fmt(first)}..{fmt(last)}" if first != last else fmt(first)
    metadata: dict = {"months": months}
    if report.contracts is not None:
        metadata["contracts"] = len(report.contracts)
        metadata["contract terms"] = table(
            ["contract", "client", "provider", "currency", "start", "end", "file"],
            [
                [t.contract_id, t.client, t.provider, t.currency, t.start, t.end, c.file]
                for c in report.contracts
                for t in [c.terms]
            ],
        )
    if report.inputs is not None:
        metadata["data_dir"] = str(report.inputs.data_dir)
        rows = []
        for folder, frame in report.inputs.frames.items():
            in_months = frame.filter(pl.col("period").is_between(first, last)).height
            rows.append([f"{folder}/", in_months, frame.height])
        rows.append(["interactions/", f"{len(report.inputs.interaction_files)} file(s)", ""])
        metadata["input rows"] = table(["input", f"rows in {months}", "rows in all months"], rows)
    return metadata
