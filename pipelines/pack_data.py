"""The settlement pack's data: its tables, read from the stored figures alone.

The pack is read from the `current_*` views of a DuckDB file opened read-only, so whoever holds the
database gets the same pack. Every figure is a stored column of the run that stands for the month,
or a sum of them done here in SQL over the engine's rounded lines, exactly (DECIMAL). The
indexation effect is the stored `charge_lines.indexation_effect` (each line's amount against the
same line at base-period prices, both rounded with the contract's own rounding); the
reconciliation's other variance and its basis are stored by the settlement as well.

`report` writes these tables as an Excel workbook and `report_html` as one page; neither imports
the other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .errors import SettleError
from .explain.readers import INVOICE_SUMMARY_SQL, rows
from .periods import add_months, fmt

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    kind: str = "text"  # text | money | rate | qty | kpi | pct | share | int | month | flag
    width: int | None = None


@dataclass
class Table:
    title: str
    name: str  # Excel table name
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    def for_contract(self, contract_id: str) -> Table:
        return Table(
            self.title,
            self.name,
            [c for c in self.columns if c.key != "contract_id"],
            [r for r in self.rows if r.get("contract_id") == contract_id],
            self.notes,
        )


@dataclass
class Pack:
    period: dt.date
    source: str
    as_of: dt.datetime | None
    summary: Table
    invoice_lines: Table
    reconciliation: Table
    kpis: Table
    gain_share: Table
    adjustments: Table
    parameters: Table
    kpi_history: list[Row]

    def sheets(self) -> list[Table]:
        return [
            self.summary,
            self.invoice_lines,
            self.reconciliation,
            self.kpis,
            self.gain_share,
            self.adjustments,
            self.parameters,
        ]


SUMMARY_SQL = f"""
WITH indexation AS (
    SELECT contract_id, sum(indexation_effect) AS effect
    FROM current_charge_lines WHERE period = $period
    GROUP BY contract_id
),
critical AS (
    SELECT contract_id, count(*) FILTER (WHERE critical) AS critical_kpis
    FROM current_kpi_results WHERE period = $period
    GROUP BY contract_id
)
SELECT
    s.contract_id, s.currency, s.run_id, s.month_status,
    s.charges,
    coalesce(ix.effect, 0) AS indexation_effect,
    s.credits, s.earn_back, s.bonus, s.gain_share, s.adjustments, s.other, s.amount_due,
    s.billed, s.difference, s.exceptions,
    coalesce(k.critical_kpis, 0) AS critical_kpis,
    s.lines
FROM ({INVOICE_SUMMARY_SQL}) s
LEFT JOIN indexation ix USING (contract_id)
LEFT JOIN critical k USING (contract_id)
WHERE s.period = $period
ORDER BY s.contract_id
"""

INVOICE_SQL = """
SELECT contract_id, currency, line_key, line_type, description, quantity, rate, amount
FROM current_invoice_lines WHERE period = $period
ORDER BY contract_id, sort_order, line_key
"""

RECONCILIATION_SQL = """
SELECT
    contract_id, line_key, description, invoice_id,
    expected_quantity, expected_rate, expected_amount,
    billed_quantity, billed_rate, billed_amount,
    difference, status, rate_variance, volume_variance, other_variance, variance_basis
FROM current_invoice_reconciliation WHERE period = $period
ORDER BY contract_id, status = 'match', line_key
"""

KPI_SQL = """
SELECT
    k.contract_id, k.kpi_id, k.source, k.direction, k.value, k.target, k.status,
    k.consecutive_failures, k.critical, k.exclusion_reason,
    sc.at_risk_amount, sc.allocation_pct, sc.severity, sc.points, sc.multiplier,
    sc.uncapped_amount, sc.cap_amount, sc.capped,
    cr.amount AS credit, eb.amount AS earn_back, bo.amount AS bonus,
    sc.earn_back_status
FROM current_kpi_results k
LEFT JOIN current_service_credits sc USING (contract_id, period, kpi_id)
LEFT JOIN current_invoice_lines cr
  ON cr.contract_id = k.contract_id AND cr.period = k.period AND cr.line_key = 'credit:' || k.kpi_id
LEFT JOIN current_invoice_lines eb
  ON eb.contract_id = k.contract_id AND eb.period = k.period
 AND eb.line_key = 'earn_back:' || k.kpi_id
LEFT JOIN current_invoice_lines bo
  ON bo.contract_id = k.contract_id AND bo.period = k.period AND bo.line_key = 'bonus:' || k.kpi_id
WHERE k.period = $period
ORDER BY k.contract_id, k.kpi_order, k.kpi_id
"""

KPI_HISTORY_SQL = """
SELECT contract_id, kpi_id, kpi_order, period, value, target, status, direction
FROM current_kpi_results
WHERE period > $first AND period <= $period
ORDER BY contract_id, kpi_order, kpi_id, period
"""

GAIN_SHARE_SQL = """
SELECT
    contract_id, window_start, window_end, billed_period, billed_period = $period AS this_invoice,
    measure, volume, baseline_cost, actual_cost, savings, threshold_amount, tiers_applied,
    tiered_amount, capped, gated, gate_failures, outcome, provider_amount, baseline_reason
FROM current_gain_share
WHERE billed_period > $first AND billed_period <= $period
ORDER BY contract_id, window_start
"""

ADJUSTMENTS_SQL = """
SELECT contract_id, period AS restated_month, line_key, description, closed_amount,
       previously_adjusted, restated_amount, delta, reason
FROM current_adjustments WHERE billed_in_period = $period
ORDER BY contract_id, period, line_key
"""

PARAMETERS_SQL = """
WITH runs AS (
    SELECT * FROM settlement_runs
    WHERE run_id IN (SELECT run_id FROM current_run_periods WHERE period = $period)
),
facts AS (
    SELECT r.run_id, 1 AS part, f.ord, 'run' AS kind, f.name,
        CASE f.name
            WHEN 'mode' THEN r.mode
            WHEN 'periods' THEN r.periods
            WHEN 'as_known_at' THEN coalesce(CAST(r.as_known_at AS VARCHAR), '(latest terms)')
            WHEN 'started_at' THEN CAST(r.started_at AS VARCHAR)
            WHEN 'finished_at' THEN CAST(r.finished_at AS VARCHAR)
            WHEN 'code_version' THEN r.code_version
            WHEN 'data_dir' THEN r.data_dir
        END AS value
    FROM runs r
    CROSS JOIN (VALUES
        (1, 'mode'), (2, 'periods'), (3, 'as_known_at'), (4, 'started_at'), (5, 'finished_at'),
        (6, 'code_version'), (7, 'data_dir')
    ) f(ord, name)
    UNION ALL
    SELECT run_id, 2, 0, 'config_sha256', unnest(map_keys(config_sha256)),
           unnest(map_values(config_sha256))
    FROM runs
    UNION ALL
    SELECT run_id, 3, 0, 'input_sha256', unnest(map_keys(input_sha256)),
           unnest(map_values(input_sha256))
    FROM runs
)
SELECT run_id, kind, name, value FROM facts ORDER BY run_id, part, ord, name
"""

SUMMARY_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("Currency", "currency"),
    Column("Run", "run_id", "int"),
    Column("Month", "month_status"),
    Column("Charges", "charges", "money"),
    Column("Indexation effect", "indexation_effect", "money"),
    Column("Credits", "credits", "money"),
    Column("Earn-back", "earn_back", "money"),
    Column("Bonus", "bonus", "money"),
    Column("Gain-share", "gain_share", "money"),
    Column("Adjustments", "adjustments", "money"),
    # pass-through, one-off, FX share and annual cap refund lines (SPEC 10); true-ups are charges
    Column("Other terms", "other", "money"),
    Column("Amount due", "amount_due", "money"),
    Column("Billed", "billed", "money"),
    Column("Difference", "difference", "money"),
    Column("Exceptions", "exceptions", "int"),
    Column("Critical KPIs", "critical_kpis", "int"),
]

SUMMARY_NOTES = [
    "Amount due is the sum of the invoice's rounded lines: charges + credits + earn-back + bonus "
    "+ gain-share + adjustments + other terms.",
    "Charges include the commitment true-ups. Other terms: pass-through costs, one-off charges "
    "and their instalments, the FX risk-sharing line and the annual credit cap's refund.",
    "Indexation effect (included in charges, not added to them): the sum over the charge lines of "
    "each line's amount less the same line at base-period prices, both rounded once with the "
    "contract's own rounding.",
    "Difference = billed - amount due over every line of either invoice; exceptions are the lines "
    "that do not match within tolerance (see Reconciliation).",
]

INVOICE_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("Currency", "currency"),
    Column("Line", "line_key"),
    Column("Type", "line_type"),
    Column("Description", "description", width=70),
    Column("Quantity", "quantity", "qty"),
    Column("Rate", "rate", "rate"),
    Column("Amount", "amount", "money"),
]

RECONCILIATION_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("Line", "line_key"),
    Column("Description", "description", width=50),
    Column("Provider invoice", "invoice_id"),
    Column("Expected qty", "expected_quantity", "qty"),
    Column("Expected rate", "expected_rate", "rate"),
    Column("Expected", "expected_amount", "money"),
    Column("Billed qty", "billed_quantity", "qty"),
    Column("Billed rate", "billed_rate", "rate"),
    Column("Billed", "billed_amount", "money"),
    Column("Difference", "difference", "money"),
    Column("Status", "status"),
    Column("Rate variance", "rate_variance", "money"),
    Column("Volume variance", "volume_variance", "money"),
    Column("Other variance", "other_variance", "money"),
    Column("Variance basis", "variance_basis"),
]

RECONCILIATION_NOTES = [
    "Difference = billed - expected. Where both invoices give quantity and rate: rate variance = "
    "(billed rate - expected rate) x billed quantity, volume variance = (billed quantity - "
    "expected quantity) x expected rate, other variance = difference - rate - volume (rounding, "
    "flat fees). Otherwise (basis 'amount only') the whole difference is other variance.",
]

KPI_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("KPI", "kpi_id"),
    Column("Source", "source"),
    Column("Direction", "direction"),
    Column("Actual", "value", "kpi"),
    Column("Target", "target", "kpi"),
    Column("Status", "status"),
    Column("Consecutive failures", "consecutive_failures", "int"),
    Column("Critical", "critical", "flag"),
    Column("Excused because", "exclusion_reason"),
    Column("At risk", "at_risk_amount", "money"),
    Column("Allocation", "allocation_pct", "pct"),
    Column("Severity", "severity", "share"),
    Column("Points", "points", "share"),
    Column("Multiplier", "multiplier", "share"),
    Column("Uncapped credit", "uncapped_amount", "money"),
    Column("Monthly cap", "cap_amount", "money"),
    Column("Capped", "capped", "flag"),
    Column("Credit", "credit", "money"),
    Column("Earn-back", "earn_back", "money"),
    Column("Bonus", "bonus", "money"),
    Column("Earn-back status", "earn_back_status"),
]

GAIN_SHARE_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("Window from", "window_start", "month"),
    Column("Window to", "window_end", "month"),
    Column("Billed in", "billed_period", "month"),
    Column("On this invoice", "this_invoice", "flag"),
    Column("Measure", "measure"),
    Column("Volume", "volume", "qty"),
    Column("Baseline cost", "baseline_cost", "money"),
    Column("Actual cost", "actual_cost", "money"),
    Column("Savings", "savings", "money"),
    Column("Threshold", "threshold_amount", "money"),
    Column("Tiers applied", "tiers_applied"),
    Column("Tiered share", "tiered_amount", "money"),
    Column("Capped", "capped", "flag"),
    Column("Gated", "gated", "flag"),
    Column("Gate failures", "gate_failures"),
    Column("Outcome", "outcome"),
    Column("Provider amount", "provider_amount", "money"),
    Column("Baseline", "baseline_reason", width=40),
]

ADJUSTMENT_COLUMNS = [
    Column("Contract", "contract_id"),
    Column("Restated month", "restated_month", "month"),
    Column("Line", "line_key"),
    Column("Description", "description", width=60),
    Column("Closed", "closed_amount", "money"),
    Column("Previously adjusted", "previously_adjusted", "money"),
    Column("Restated", "restated_amount", "money"),
    Column("Delta", "delta", "money"),
    Column("Reason", "reason", width=40),
]

PARAMETER_COLUMNS = [
    Column("Run", "run_id", "int"),
    Column("Kind", "kind"),
    Column("Name", "name", width=40),
    Column("Value", "value", width=68),
]


def _query(con: duckdb.DuckDBPyConnection, sql: str, period: dt.date) -> list[Row]:
    params = {"period": period, "first": add_months(period, -12)}
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return rows(con, sql, used)


def load_pack(con: duckdb.DuckDBPyConnection, period: dt.date, source: str) -> Pack:
    """Every table of the pack for one month, read from the current figures."""
    summary = _query(con, SUMMARY_SQL, period)
    if not summary:
        settled = rows(
            con, "SELECT min(period) AS first, max(period) AS last FROM current_run_periods"
        )
        span = (
            f"{fmt(settled[0]['first'])}..{fmt(settled[0]['last'])}"
            if settled and settled[0]["first"]
            else "none"
        )
        raise SettleError(
            f"no settled figures for {fmt(period)} in {source}; settled months: {span}"
        )
    as_of = con.execute(
        "SELECT max(finished_at) FROM settlement_runs WHERE run_id IN "
        "(SELECT run_id FROM current_run_periods WHERE period = ?)",
        [period],
    ).fetchone()[0]
    return Pack(
        period=period,
        source=source,
        as_of=as_of,
        summary=Table("Summary", "Summary", SUMMARY_COLUMNS, summary, SUMMARY_NOTES),
        invoice_lines=Table(
            "Invoice lines", "InvoiceLines", INVOICE_COLUMNS, _query(con, INVOICE_SQL, period)
        ),
        reconciliation=Table(
            "Reconciliation",
            "Reconciliation",
            RECONCILIATION_COLUMNS,
            _query(con, RECONCILIATION_SQL, period),
            RECONCILIATION_NOTES,
        ),
        kpis=Table("KPIs & credits", "KpisCredits", KPI_COLUMNS, _query(con, KPI_SQL, period)),
        gain_share=Table(
            "Gain-share",
            "GainShare",
            GAIN_SHARE_COLUMNS,
            _query(con, GAIN_SHARE_SQL, period),
            ["The gain-share windows billed in the twelve months to the period."],
        ),
        adjustments=Table(
            "Adjustments", "Adjustments", ADJUSTMENT_COLUMNS, _query(con, ADJUSTMENTS_SQL, period)
        ),
        parameters=Table(
            "Parameters", "Parameters", PARAMETER_COLUMNS, _query(con, PARAMETERS_SQL, period)
        ),
        kpi_history=_query(con, KPI_HISTORY_SQL, period),
    )
