"""What a settlement run stored, read back from the database by run id for the Dagster UI.

Each summary is one query over a stored table, filtered to the run: what a finance user wants to
see on the asset's page (row counts, totals per contract, amounts due, differences). Nothing here
recomputes a figure; the checks at the end compare tables the engine wrote with each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from .. import checks, engine
from ..periods import fmt
from .display import money, table

Con = duckdb.DuckDBPyConnection


def rows(con: Con, sql: str, run_id: int) -> tuple[list[str], list[tuple]]:
    cur = con.execute(sql, {"run_id": run_id})
    return [d[0] for d in cur.description], cur.fetchall()


def md(con: Con, sql: str, run_id: int, limit: int = 60) -> dg.MetadataValue:
    headers, found = rows(con, sql, run_id)
    return table(headers, found, limit)


def column_schema(con: Con, name: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
    )


# Currency of each contract, from the invoice lines of the run.
CURRENCY = """
currency AS (
    SELECT contract_id, any_value(currency) AS currency FROM invoice_lines
    WHERE run_id = $run_id GROUP BY contract_id
)"""

# Where each month of the run stands at month-end (approve and dispute are CLI decisions by
# people; Dagster shows them). sql/month_status.sql is the one definition of that state.
MONTH_END_STATE = f"""
    SELECT s.contract_id AS contract, s.period AS month, s.status,
           s.run_id = $run_id AS "is this run", s.approved_by AS "approved by",
           s.open_disputes AS "open disputes", s.closed_how AS "closed how"
    FROM ({(engine.SQL_DIR / "month_status.sql").read_text().strip().rstrip(";")}) s
    JOIN run_periods rp ON rp.contract_id = s.contract_id AND rp.period = s.period
    WHERE rp.run_id = $run_id
    ORDER BY s.contract_id, s.period
"""

SUMMARIES: dict[str, dict[str, str]] = {
    "index_factors": {
        "reviews": """
            SELECT contract_id AS contract, period AS review, index_id AS "index",
                   reference_period AS "index month", reference_value AS "index value",
                   raw_change AS "raw change", applied_change AS "applied change", factor
            FROM index_factors
            WHERE run_id = $run_id
              AND period <= (SELECT period_to FROM settlement_runs WHERE run_id = $run_id)
            ORDER BY contract_id, period, index_id
        """,
    },
    "charge_bands": {
        "bands per contract": """
            SELECT contract_id AS contract, service_line_id AS "service line", model,
                   count(DISTINCT period) AS months, count(*) AS "band rows",
                   sum(units) AS units
            FROM charge_bands WHERE run_id = $run_id
            GROUP BY ALL ORDER BY ALL
        """,
    },
    "charge_lines": {
        "charges per contract": f"""
            WITH {CURRENCY}
            SELECT contract_id AS contract, currency, count(DISTINCT period) AS months,
                   count(*) AS lines,
                   sum(amount) FILTER (WHERE charge_type = 'usage') AS usage,
                   sum(amount) FILTER (WHERE charge_type = 'fixed_fee') AS "fixed fees",
                   sum(amount) FILTER (WHERE charge_type = 'minimum') AS minimum,
                   sum(amount) FILTER (WHERE charge_type = 'surge') AS surge,
                   sum(amount) AS "charges before credits"
            FROM charge_lines LEFT JOIN currency USING (contract_id)
            WHERE run_id = $run_id GROUP BY ALL ORDER BY contract_id
        """,
    },
    "kpi_results": {
        "results per contract": """
            SELECT contract_id AS contract, count(*) AS assessed,
                   count(*) FILTER (WHERE status = 'met') AS met,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'excused') AS excused,
                   count(*) FILTER (WHERE status = 'no_data') AS "no data",
                   count(*) FILTER (WHERE critical) AS critical
            FROM kpi_results WHERE run_id = $run_id GROUP BY ALL ORDER BY ALL
        """,
        "failures": """
            SELECT contract_id AS contract, period AS month, kpi_id AS kpi, value, target,
                   consecutive_failures AS "in a row", critical
            FROM kpi_results WHERE run_id = $run_id AND status = 'failed'
            ORDER BY contract_id, period, kpi_order
        """,
    },
    "service_credits": {
        "credits per contract": f"""
            WITH {CURRENCY}
            SELECT contract_id AS contract, currency, count(*) AS "failed KPI-months",
                   sum(amount) AS credits,
                   count(DISTINCT period) FILTER (WHERE capped) AS "months capped",
                   sum(amount) FILTER (WHERE earned_back_in IS NOT NULL) AS "earned back"
            FROM service_credits LEFT JOIN currency USING (contract_id)
            WHERE run_id = $run_id GROUP BY ALL ORDER BY contract_id
        """,
    },
    "gain_share": {
        "windows": """
            SELECT contract_id AS contract, window_start AS "from", window_end AS "to",
                   outcome, baseline_cost AS "baseline cost",
                   actual_cost AS "actual cost", savings,
                   provider_amount AS "provider amount", gated, capped
            FROM gain_share WHERE run_id = $run_id ORDER BY contract_id, window_start
        """,
    },
    "adjustments": {
        "adjustments": """
            SELECT contract_id AS contract, period AS "restated month",
                   billed_in_period AS "billed in", line_key AS line,
                   closed_amount AS closed, restated_amount AS restated, delta, reason
            FROM adjustments WHERE run_id = $run_id
            ORDER BY contract_id, billed_in_period, period, line_key
        """,
    },
    "invoice_lines": {
        "month-end state": MONTH_END_STATE,
        "amount due per contract": """
            SELECT contract_id AS contract, any_value(currency) AS currency,
                   count(*) AS months, sum(amount_due) AS "amount due"
            FROM invoice_summary WHERE run_id = $run_id GROUP BY ALL ORDER BY contract_id
        """,
    },
    "invoice_reconciliation": {
        "exceptions": """
            SELECT contract_id AS contract, period AS month, line_key AS line, status,
                   expected_amount AS expected, billed_amount AS billed, difference,
                   rate_variance AS "rate variance", volume_variance AS "volume variance"
            FROM invoice_reconciliation WHERE run_id = $run_id AND status <> 'match'
            ORDER BY contract_id, period, line_key
        """,
    },
}


def _invoices(con: Con, result: engine.RunResult) -> dict[str, Any]:
    """The CLI's run table: one row per contract-month, from the engine's own summary."""
    headers = [
        "contract",
        "month",
        "currency",
        "charges",
        "credits + bonus",
        "gain-share",
        "adjustments",
        "amount due",
    ]
    found = [
        [
            i["contract_id"],
            i["period"],
            i["currency"],
            i["charges"],
            i["credits_and_bonus"],
            i["gain_share"],
            i["adjustments"],
            i["amount_due"],
        ]
        for i in result.invoices
    ]
    return {"invoices": table(headers, found, limit=120)}


# The run's totals, added up in SQL over the same stored summary as the per-invoice table.
RECONCILIATION_TOTALS = """
    SELECT coalesce(sum(exceptions), 0), sum(difference)
    FROM invoice_summary WHERE run_id = $run_id
"""


def _reconciliation(con: Con, result: engine.RunResult) -> dict[str, Any]:
    headers = ["contract", "month", "billed", "difference", "exceptions"]
    found = [
        [r["contract_id"], r["period"], r["billed"], r["difference"], r["exceptions"]]
        for r in result.reconciliation
    ]
    exceptions, difference = con.execute(
        RECONCILIATION_TOTALS, {"run_id": result.run_id}
    ).fetchone()
    return {
        "per invoice": table(headers, found, limit=120),
        "lines not matching": int(exceptions),
        "total difference": money(difference),
    }


EXTRA: dict[str, Callable[[Con, engine.RunResult], dict[str, Any]]] = {
    "invoice_lines": _invoices,
    "invoice_reconciliation": _reconciliation,
}


def summary(con: Con, name: str, result: engine.RunResult, months: str) -> dict[str, Any]:
    run_id = result.run_id
    count = con.execute(f"SELECT count(*) FROM {name} WHERE run_id = ?", [run_id]).fetchone()[0]
    metadata: dict[str, Any] = {
        "dagster/row_count": count,
        "settle run_id": dg.MetadataValue.text(str(run_id)),
        "months": months,
    }
    if name in EXTRA:
        metadata.update(EXTRA[name](con, result))
    for label, sql in SUMMARIES.get(name, {}).items():
        metadata[label] = md(con, sql, run_id)
    metadata["dagster/column_schema"] = column_schema(con, name)
    metadata["query"] = dg.MetadataValue.text(
        f"SELECT * FROM {name} WHERE run_id = {run_id}  -- current figures: current_{name}"
    )
    return metadata


# --------------------------------------------------------------------------- output checks

# The engine's invariants (sql/invariants.sql): the run already failed if any returned rows;
# shown here so the asset page says what was checked.
INVOICE_ADDS_UP = checks.named(engine.all_checks(), "invoice_adds_up").sql
CREDITS_WITHIN_CAP = checks.named(engine.all_checks(), "credits_within_cap").sql

CRITICAL = """
SELECT contract_id AS contract, period AS month, kpi_id AS kpi, value, critical_below
FROM kpi_results WHERE run_id = $run_id AND critical ORDER BY contract_id, period, kpi_order
"""

MISMATCHES = """
SELECT contract_id AS contract, period AS month, line_key AS line, status,
       expected_amount AS expected, billed_amount AS billed, difference
FROM invoice_reconciliation WHERE run_id = $run_id AND status <> 'match'
ORDER BY contract_id, period, line_key
"""

# asset -> (check name, description, query returning the failing rows, severity when failing)
CHECKS: dict[str, tuple[str, str, str, dg.AssetCheckSeverity]] = {
    "invoice_lines": (
        "invoice_adds_up",
        "Per contract-month of the run, the invoice's charge, credit, gain-share and adjustment "
        "lines equal the totals of charge_lines, service_credits, gain_share and adjustments, and "
        "the amount due equals the reconciliation's expected total.",
        INVOICE_ADDS_UP,
        dg.AssetCheckSeverity.ERROR,
    ),
    "service_credits": (
        "credits_within_cap",
        "Per contract-month, the credits add up to no more than the monthly cap (plus the half "
        "unit of the last place that rounding the cap allows), and exactly to the rounded cap "
        "when capped.",
        CREDITS_WITHIN_CAP,
        dg.AssetCheckSeverity.ERROR,
    ),
    "kpi_results": (
        "no_critical_breach",
        "No KPI is worse than its critical_below level (a termination-right trigger).",
        CRITICAL,
        dg.AssetCheckSeverity.WARN,
    ),
    "invoice_reconciliation": (
        "provider_invoice_matches",
        "Every line of the provider's invoice matches the expected line within the contract's "
        "tolerance; a mismatch is for finance to approve or dispute.",
        MISMATCHES,
        dg.AssetCheckSeverity.WARN,
    ),
}


def check_result(con: Con, asset: str, run_id: int, months: str = "") -> dg.AssetCheckResult:
    name, _, sql, severity = CHECKS[asset]
    headers, failing = rows(con, sql, run_id)
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=not failing,
        severity=severity,
        metadata={
            "settle run_id": dg.MetadataValue.text(str(run_id)),
            "months": months,
            "failing rows": len(failing),
            "rows": table(headers, failing, limit=40),
        },
    )


def latest_materialization(
    instance: dg.DagsterInstance | None, asset: str, month: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The month's latest materialisation, which a check result must point at for the UI to
    count it as the partition's current result rather than an older one."""
    if instance is None:
        return None
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[month]), limit=1
    ).records
    if not found:
        return None
    record = found[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )


def month_evaluations(
    con: Con,
    asset: str,
    run_id: int,
    months: list[str],
    instance: dg.DagsterInstance | None = None,
) -> list[dg.AssetCheckEvaluation]:
    """The check once per month of a range run, each on its partition: a range is one step,
    which Dagster gives one unpartitioned result per check, so the months are recorded here,
    each against the month's materialisation in `instance`."""
    name, _, sql, severity = CHECKS[asset]
    headers, failing = rows(con, sql, run_id)
    at = headers.index("month")
    out = []
    for month in months:
        found = [r for r in failing if r[at] is not None and fmt(r[at]) == month]
        out.append(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(asset),
                check_name=name,
                passed=not found,
                severity=severity,
                partition=month,
                target_materialization_data=latest_materialization(instance, asset, month),
                metadata={
                    "settle run_id": dg.MetadataValue.text(str(run_id)),
                    "months": month,
                    "failing rows": len(found),
                    "rows": table(headers, found, limit=40),
                },
            )
        )
    return out
