"""A `settle run` from the command line, recorded in a Dagster instance when one is configured
(`--dagster-home` or DAGSTER_HOME): one materialisation per asset and month the run stored, with
the settle run id, and each asset check per month (the output checks' queries over the stored
run; the input checks passed, or the run would have stopped), so the UI shows those partitions as
materialised and checked. Optional and best effort: a
missing or unusable instance is reported as a warning and the run stands."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from .. import store
from ..periods import fmt

HOME_ENV = "DAGSTER_HOME"


def record_cli_run(db: Path, run_id: int, dagster_home: str | None = None) -> str | None:
    """The line to print: what was recorded where, a warning, or None when no instance is set."""
    home = dagster_home or os.environ.get(HOME_ENV)
    if not home:
        return None
    try:
        import dagster as dg

        from . import readback, validation

        keys = ["validated_inputs", *(t.name for t in store.RESULT_TABLES)]
        metadata = {
            "settle run_id": dg.MetadataValue.text(str(run_id)),
            "recorded by": "settle run (command line)",
            "db": str(db),
        }
        with (
            duckdb.connect(str(db), read_only=True) as con,
            dg.DagsterInstance.from_config(str(Path(home).resolve())) as instance,
        ):
            months = [
                fmt(r[0])
                for r in con.execute(
                    "SELECT DISTINCT period FROM run_periods WHERE run_id = ? ORDER BY 1", [run_id]
                ).fetchall()
            ]
            for key in keys:
                for month in months:
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(
                            key,
                            partition=month,
                            metadata={**metadata, "months": month},
                            tags={"settle/run_id": str(run_id)},
                        )
                    )
            # after the materialisations: each result points at the one it checked
            evaluations = [
                e
                for asset in readback.CHECKS
                for e in readback.month_evaluations(con, asset, run_id, months, instance)
            ]
            # the run got this far only because every input check passed
            evaluations += [
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey("validated_inputs"),
                    check_name=name,
                    passed=True,
                    partition=month,
                    target_materialization_data=readback.latest_materialization(
                        instance, "validated_inputs", month
                    ),
                    metadata={"settle run_id": dg.MetadataValue.text(str(run_id))},
                )
                for name, _ in validation.CHECKS.values()
                for month in months
            ]
            record_id = f"settle-run-{run_id}-{uuid.uuid4().hex[:8]}"
            for evaluation in evaluations:
                _report_check(instance, evaluation, record_id)
    except Exception as exc:  # noqa: BLE001 - the settlement is committed; Dagster is optional
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"warning: run {run_id} not recorded in the Dagster instance at {home}: {first}"
    span = f"{months[0]}..{months[-1]}" if len(months) > 1 else (months[0] if months else "-")
    return f"Recorded in Dagster ({home}): {len(keys)} assets x {len(months)} month(s), {span}"


def _report_check(instance, evaluation, run_id: str) -> None:
    """A check result outside a Dagster run. `report_runless_asset_event` files every such result
    under the one run id "", and the instance keeps one result per (check, run id, partition), so
    a second CLI run over a month would be refused; each CLI record gets its own id instead."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.instance.utils import RUNLESS_JOB_NAME

    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
            event_specific_data=evaluation,
            job_name=RUNLESS_JOB_NAME,
        ),
        run_id=run_id,
    )
