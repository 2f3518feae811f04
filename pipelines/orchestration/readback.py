"""What a settlement run stored, read back from the database by run id for the Dagster UI.

Each summary is one query over a stored table, filtered to the run: what a finance user wants to
see on the asset's page (row counts, totals per contract, amounts due, differences). Nothing here
recomputes a figure; the checks at the end compare tables the engine wrote with each other.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import dagster as dg
import duckdb

from .. import engine
from .display import money, table

Con = duckdb.DuckDBPyConnection
ZERO = Decimal(0)


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
                   outcome, round(baseline_cost, 2) AS "baseline cost",
                   round(actual_cost, 2) AS "actual cost", round(savings, 2) AS savings,
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


def _invoices(result: engine.RunResult) -> dict[str, Any]:
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


def _reconciliation(result: engine.RunResult) -> dict[str, Any]:
    headers = ["contract", "month", "billed", "difference", "exceptions"]
    found = [
        [r["contract_id"], r["period"], r["billed"], r["difference"], r["exceptions"]]
        for r in result.reconciliation
    ]
    exceptions = sum(r["exceptions"] for r in result.reconciliation)
    return {
        "per invoice": table(headers, found, limit=120),
        "lines not matching": exceptions,
        "total difference": money(
            sum((r["difference"] or ZERO for r in result.reconciliation), ZERO)
        ),
    }


EXTRA: dict[str, Callable[[engine.RunResult], dict[str, Any]]] = {
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
        metadata.update(EXTRA[name](result))
    for label, sql in SUMMARIES.get(name, {}).items():
        metadata[label] = md(con, sql, run_id)
    metadata["dagster/column_schema"] = column_schema(con, name)
    metadata["query"] = dg.MetadataValue.text(
        f"SELECT * FROM {name} WHERE run_id = {run_id}  -- current figures: current_{name}"
    )
    return metadata


# --------------------------------------------------------------------------- output checks

# Per contract-month of the run: each group of invoice lines against the table it came from, and
# the invoice total against the reconciliation's expected total. Every row returned is a mismatch.
INVOICE_ADDS_UP = """
WITH months AS (
    SELECT contract_id, period FROM run_periods WHERE run_id = $run_id
),
invoice AS (
    SELECT contract_id, period, amount_due, charges, credits, gain_share, adjustments
    FROM invoice_summary WHERE run_id = $run_id
),
sources AS (
    SELECT m.contract_id, m.period,
        (SELECT coalesce(sum(amount), 0) FROM charge_lines c
         WHERE c.run_id = $run_id AND c.contract_id = m.contract_id AND c.period = m.period)
            AS charges,
        -(SELECT coalesce(sum(amount), 0) FROM service_credits s
          WHERE s.run_id = $run_id AND s.contract_id = m.contract_id AND s.period = m.period)
            AS credits,
        (SELECT coalesce(sum(provider_amount), 0) FROM gain_share g
         WHERE g.run_id = $run_id AND g.contract_id = m.contract_id
           AND g.billed_period = m.period) AS gain_share,
        (SELECT coalesce(sum(delta), 0) FROM adjustments a
         WHERE a.run_id = $run_id AND a.contract_id = m.contract_id
           AND a.billed_in_period = m.period) AS adjustments,
        (SELECT coalesce(sum(expected_amount), 0) FROM invoice_reconciliation r
         WHERE r.run_id = $run_id AND r.contract_id = m.contract_id AND r.period = m.period)
            AS amount_due
    FROM months m
),
compared AS (
    SELECT s.contract_id, s.period, part, invoiced, source
    FROM sources s LEFT JOIN invoice i USING (contract_id, period),
    LATERAL (VALUES
        ('charges (charge_lines)', coalesce(i.charges, 0), s.charges),
        ('credits (service_credits)', coalesce(i.credits, 0), s.credits),
        ('gain-share (gain_share)', coalesce(i.gain_share, 0), s.gain_share),
        ('adjustments (adjustments)', coalesce(i.adjustments, 0), s.adjustments),
        ('amount due (invoice_reconciliation expected)', coalesce(i.amount_due, 0), s.amount_due)
    ) AS p(part, invoiced, source)
)
SELECT contract_id AS contract, period AS month, part, invoiced AS "on the invoice",
       source AS "in its table", invoiced - source AS difference
FROM compared WHERE invoiced <> source
ORDER BY contract_id, period, part
"""

# Per contract-month with a cap: the credits may exceed the exact cap by at most the half unit of
# the last place that rounding the cap adds, and a capped month adds up to the rounded cap exactly.
CREDITS_WITHIN_CAP = """
WITH months AS (
    SELECT contract_id, period, sum(amount) AS credits, any_value(cap_amount) AS cap,
           any_value(amount_scale) AS scale, bool_or(capped) AS capped,
           any_value(split_total) FILTER (WHERE capped) AS rounded_cap
    FROM service_credits WHERE run_id = $run_id GROUP BY contract_id, period
)
SELECT contract_id AS contract, period AS month, credits, cap, rounded_cap AS "rounded cap",
       CASE WHEN credits > cap + half_unit THEN 'credits above the cap'
            ELSE 'capped credits do not add up to the rounded cap' END AS problem
FROM months,
     -- half a unit of the amount scale, as an exact decimal (amount_scale is 0..4)
     LATERAL (SELECT CASE scale WHEN 0 THEN 0.5 WHEN 1 THEN 0.05 WHEN 2 THEN 0.005
                                WHEN 3 THEN 0.0005 ELSE 0.00005 END AS half_unit)
WHERE cap IS NOT NULL AND (credits > cap + half_unit OR (capped AND credits <> rounded_cap))
ORDER BY contract_id, period
"""

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


def check_result(con: Con, asset: str, run_id: int) -> dg.AssetCheckResult:
    name, _, sql, severity = CHECKS[asset]
    headers, failing = rows(con, sql, run_id)
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=not failing,
        severity=severity,
        metadata={
            "settle run_id": dg.MetadataValue.text(str(run_id)),
            "failing rows": len(failing),
            "rows": table(headers, failing, limit=40),
        },
    )
