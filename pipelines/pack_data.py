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
from pathlib import Path
from typing import Any

import duckdb

from .errors import SettleError
from .explain.readers import INVOICE_SUMMARY_SQL, rows
from .periods import add_months, fmt

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    kind: str = "text"  # text | money | rate | qty | kpi | pct | share | int | month | flag
    #                     | datetime
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
    # per contract: where the month stands (sql/month_status.sql), the amount scale and the
    # restatement marks (MONTH_STATE_SQL)
    month_states: dict[str, Row] = field(default_factory=dict)
    # per contract, the waterfall's bars from charges to the amount due (WATERFALL_SQL)
    waterfall: list[Row] = field(default_factory=list)
    # (table name, contract) -> the SQL sums of the table's totalled columns (TOTALLED)
    totals: dict[tuple[str, str], Row] = field(default_factory=dict)
    # per currency: the SQL sums of the summary's money columns (CURRENCY_TOTALS_SQL)
    currency_totals: list[Row] = field(default_factory=list)
    # for the printable page (report_html): stored figures the tables above do not carry
    print_figures: PrintFigures | None = None

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


@dataclass
class PrintFigures:
    """What the printed page reads beside the tables, each keyed for lookup."""

    # (contract_id, line_key) -> the charge line's pricing model, package and stairstep step
    line_units: dict[tuple[str, str], Row] = field(default_factory=dict)
    # (contract_id, kpi_id) -> share | seconds | count | score
    kpi_kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    # (contract_id, window_start) -> the gain-share figures rounded with the contract's terms
    gain_share_rounded: dict[tuple[str, dt.date], Row] = field(default_factory=dict)
    # (contract_id, kpi_id) -> the credit's working figures rounded with the contract's terms
    credits_rounded: dict[tuple[str, str], Row] = field(default_factory=dict)
    # contract_id -> the month's state (sql/month_status.sql): status, approval, open disputes
    month_state: dict[str, Row] = field(default_factory=dict)
    # contract_id -> the contract's amount_scale (from its invoice lines)
    amount_scale: dict[str, int] = field(default_factory=dict)
    # disputes still open on the month or an earlier one
    open_disputes: list[Row] = field(default_factory=list)
    # closed months of the twelve to the period restated since, and where the difference went
    restated: list[Row] = field(default_factory=list)


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
        END AS value,
        -- the same instants as timestamps, for a pack that writes typed cells
        CASE f.name WHEN 'started_at' THEN r.started_at WHEN 'finished_at' THEN r.finished_at
        END AS value_at
    FROM runs r
    CROSS JOIN (VALUES
        (1, 'mode'), (2, 'periods'), (3, 'as_known_at'), (4, 'started_at'), (5, 'finished_at'),
        (6, 'code_version'), (7, 'data_dir')
    ) f(ord, name)
    UNION ALL
    SELECT run_id, 2, 0, 'config_sha256', unnest(map_keys(config_sha256)),
           unnest(map_values(config_sha256)), NULL::TIMESTAMP
    FROM runs
    UNION ALL
    SELECT run_id, 3, 0, 'input_sha256', unnest(map_keys(input_sha256)),
           unnest(map_values(input_sha256)), NULL::TIMESTAMP
    FROM runs
)
SELECT run_id, kind, name, value, value_at FROM facts ORDER BY run_id, part, ord, name
"""

LINE_UNITS_SQL = """
SELECT i.contract_id, i.line_key, c.pricing_model, c.units, c.package_size, c.package_count,
       b.band AS step, b.lower_bound AS step_from, b.up_to AS step_to, b.flat_fee AS step_fee
FROM current_invoice_lines i
JOIN current_charge_lines c USING (contract_id, period, line_key)
LEFT JOIN current_charge_bands b
  ON c.pricing_model = 'stairstep' AND b.contract_id = c.contract_id AND b.period = c.period
 AND b.service_line_id = c.service_line_id
WHERE i.period = $period
ORDER BY i.contract_id, i.line_key, b.band
"""

KPI_KINDS_SQL = """
SELECT contract_id, kpi_id, any_value(value_kind) AS value_kind
FROM current_kpi_results WHERE period > $first AND period <= $period
GROUP BY ALL
"""

GAIN_SHARE_ROUNDED_SQL = """
SELECT contract_id, window_start, amount_scale, baseline_cost_rounded, actual_cost_rounded,
       savings_rounded, threshold_rounded, tiered_rounded
FROM current_gain_share
WHERE billed_period > $first AND billed_period <= $period
"""

CREDITS_ROUNDED_SQL = """
SELECT contract_id, kpi_id, at_risk_rounded, uncapped_rounded, cap_rounded
FROM current_service_credits WHERE period = $period
"""

AMOUNT_SCALE_SQL = """
SELECT contract_id, any_value(amount_scale) AS amount_scale
FROM current_invoice_lines WHERE period = $period GROUP BY ALL
"""

OPEN_DISPUTES_SQL = """
SELECT contract_id, period, dispute_id, line_key, amount, reason, raised_by, raised_at
FROM current_disputes WHERE status = 'open' AND period <= $period
ORDER BY contract_id, period, dispute_id
"""

# the adjustment line of the month that carries the difference (sql/10_adjustments.sql names it
# adjustment:<line_key>:<YYYY-MM>), read from that month's stored invoice
RESTATED_SQL = """
SELECT a.contract_id, a.period AS restated_month, a.line_key, a.description, a.closed_amount,
       a.previously_adjusted, a.restated_amount, a.delta, a.billed_in_period, a.reason,
       i.line_key AS adjustment_line
FROM current_adjustments a
LEFT JOIN current_invoice_lines i
  ON i.contract_id = a.contract_id AND i.period = a.billed_in_period
 AND i.line_type = 'adjustment'
 AND i.line_key = 'adjustment:' || a.line_key || ':' || strftime(a.period, '%Y-%m')
WHERE a.period > $first AND a.period <= $period
ORDER BY a.contract_id, a.period, a.line_key, a.billed_in_period
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
        month_states=load_month_states(con, period),
        waterfall=_query(con, WATERFALL_SQL, period),
        totals=load_totals(con, period),
        currency_totals=_query(con, CURRENCY_TOTALS_SQL, period),
        print_figures=load_print_figures(con, period),
    )


def _optional(con: duckdb.DuckDBPyConnection, sql: str, period: dt.date) -> list[Row]:
    """A query of columns a database from an earlier version lacks: none, and the page prints
    without them."""
    try:
        return _query(con, sql, period)
    except duckdb.BinderException:
        return []


def load_print_figures(con: duckdb.DuckDBPyConnection, period: dt.date) -> PrintFigures:
    month_state_sql = (SQL_DIR / "month_status.sql").read_text().strip().rstrip(";")
    units: dict[tuple[str, str], Row] = {}
    for r in _query(con, LINE_UNITS_SQL, period):
        # a stairstep line stores the one step its units reached
        units.setdefault((r["contract_id"], r["line_key"]), r)
    return PrintFigures(
        line_units=units,
        kpi_kinds={
            (r["contract_id"], r["kpi_id"]): r["value_kind"]
            for r in _optional(con, KPI_KINDS_SQL, period)
        },
        gain_share_rounded={
            (r["contract_id"], r["window_start"]): r
            for r in _optional(con, GAIN_SHARE_ROUNDED_SQL, period)
        },
        credits_rounded={
            (r["contract_id"], r["kpi_id"]): r for r in _optional(con, CREDITS_ROUNDED_SQL, period)
        },
        month_state={
            r["contract_id"]: r
            for r in rows(
                con, f"SELECT * FROM ({month_state_sql}) WHERE period = $period", {"period": period}
            )
        },
        amount_scale={
            r["contract_id"]: r["amount_scale"] for r in _query(con, AMOUNT_SCALE_SQL, period)
        },
        open_disputes=_query(con, OPEN_DISPUTES_SQL, period),
        restated=_query(con, RESTATED_SQL, period),
    )


# --------------------------------------------------------------------------- state, totals, charts

MONTH_STATUS_SQL = (Path(__file__).resolve().parent.parent / "sql" / "month_status.sql").read_text()

# Per contract of the month: its amount scale (every line carries the contract's rounding), where
# the month stands at month-end (sql/month_status.sql, the one definition of that state), and the
# restatement marks: the later invoices that carry this month's restated lines, and the restated
# closed months this month's invoice carries.
MONTH_STATE_SQL = f"""
WITH scale AS (
    SELECT contract_id, max(amount_scale) AS amount_scale
    FROM current_invoice_lines WHERE period = $period GROUP BY contract_id
),
restated AS (
    SELECT contract_id,
           string_agg(DISTINCT strftime(billed_in_period, '%Y-%m'), ', '
                      ORDER BY strftime(billed_in_period, '%Y-%m')) AS restated_in,
           sum(delta) AS restated_delta
    FROM current_adjustments WHERE period = $period GROUP BY contract_id
),
restates AS (
    SELECT contract_id,
           string_agg(DISTINCT strftime(period, '%Y-%m'), ', '
                      ORDER BY strftime(period, '%Y-%m')) AS restates
    FROM current_adjustments WHERE billed_in_period = $period GROUP BY contract_id
),
state AS (
    SELECT * FROM ({MONTH_STATUS_SQL.strip().rstrip(";")}) WHERE period = $period
)
SELECT s.contract_id, coalesce(sc.amount_scale, 2) AS amount_scale,
       st.status AS month_end_status, st.approved_by, st.approved_at,
       coalesce(st.open_disputes, 0) AS open_disputes, st.closed_at, st.closed_how,
       r.restated_in, r.restated_delta, rs.restates
FROM current_run_periods s
LEFT JOIN scale sc USING (contract_id)
LEFT JOIN state st USING (contract_id)
LEFT JOIN restated r USING (contract_id)
LEFT JOIN restates rs USING (contract_id)
WHERE s.period = $period
ORDER BY s.contract_id
"""

# Without month_status (a database from before approvals and disputes): scale and marks only.
MONTH_STATE_FALLBACK_SQL = """
SELECT contract_id, coalesce(max(amount_scale), 2) AS amount_scale
FROM current_invoice_lines WHERE period = $period GROUP BY contract_id ORDER BY contract_id
"""

MONTH_STATE_COLUMNS = [
    Column("Month-end state", "month_end_status"),
    Column("Approved by", "approved_by"),
    Column("Approved at (UTC)", "approved_at", "datetime"),
    Column("Open disputes", "open_disputes", "int"),
    Column("Closed at (UTC)", "closed_at", "datetime"),
    Column("Restated on invoice of", "restated_in"),
    Column("Restatement delta", "restated_delta", "money"),
    Column("Restates", "restates"),
]

# The waterfall from charges to the amount due, per contract, as the bars a stacked column chart
# draws: each bar spans [level_from, level_to] (a total from zero; a step from the running level),
# split at zero into an invisible base and a visible part on either side, because a stacked chart
# stacks positive values up from zero and negative ones down from it.
WATERFALL_SQL = """
WITH s AS (SELECT * FROM current_invoice_summary WHERE period = $period),
steps AS (
    SELECT contract_id, currency, 1 AS step_order, 'Charges' AS step, 'total' AS kind,
           charges AS amount FROM s
    UNION ALL SELECT contract_id, currency, 2, 'Credits', 'step', credits FROM s
    UNION ALL SELECT contract_id, currency, 3, 'Earn-back', 'step', earn_back FROM s
    UNION ALL SELECT contract_id, currency, 4, 'Bonus', 'step', bonus FROM s
    UNION ALL SELECT contract_id, currency, 5, 'Gain-share', 'step', gain_share FROM s
    UNION ALL SELECT contract_id, currency, 6, 'Adjustments', 'step', adjustments FROM s
    UNION ALL SELECT contract_id, currency, 7, 'Other', 'step', other FROM s WHERE other <> 0
    UNION ALL SELECT contract_id, currency, 8, 'Amount due', 'total', amount_due FROM s
),
levels AS (
    SELECT *,
        CASE WHEN kind = 'total' THEN 0 ELSE coalesce(sum(amount) OVER (
            PARTITION BY contract_id ORDER BY step_order
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) END AS level_from
    FROM steps
),
bars AS (
    SELECT *, CASE WHEN kind = 'total' THEN amount ELSE level_from + amount END AS level_to
    FROM levels
)
SELECT contract_id, currency, step_order, step, kind, amount, level_from, level_to,
    CASE WHEN greatest(level_from, level_to) > 0
         THEN greatest(least(level_from, level_to), 0) ELSE 0 END AS base_above,
    least(greatest(level_from, level_to), 0) AS base_below,
    greatest(greatest(level_from, level_to), 0) - greatest(least(level_from, level_to), 0)
        AS bar_above,
    least(least(level_from, level_to), 0) - least(greatest(level_from, level_to), 0)
        AS bar_below
FROM bars
ORDER BY contract_id, step_order
"""

# The columns a per-contract table totals (the Excel pack's totals rows), by table name.
TOTALLED = {
    "InvoiceLines": (INVOICE_SQL, ["amount"]),
    "Reconciliation": (
        RECONCILIATION_SQL,
        [
            "expected_amount",
            "billed_amount",
            "difference",
            "rate_variance",
            "volume_variance",
            "other_variance",
        ],
    ),
    "KpisCredits": (KPI_SQL, ["credit", "earn_back", "bonus"]),
    "Adjustments": (ADJUSTMENTS_SQL, ["delta"]),
}

# The summary's money columns summed per currency (a sum across currencies means nothing).
CURRENCY_TOTAL_KEYS = [
    "charges",
    "indexation_effect",
    "credits",
    "earn_back",
    "bonus",
    "gain_share",
    "adjustments",
    "amount_due",
    "billed",
    "difference",
]
CURRENCY_TOTALS_SQL = f"""
WITH s AS ({SUMMARY_SQL}),
scale AS (
    SELECT contract_id, max(amount_scale) AS amount_scale
    FROM current_invoice_lines WHERE period = $period GROUP BY contract_id
)
SELECT currency, count(*) AS contracts, coalesce(max(sc.amount_scale), 2) AS amount_scale,
    {", ".join(f"coalesce(sum({k}), 0) AS {k}" for k in CURRENCY_TOTAL_KEYS)}
FROM s LEFT JOIN scale sc USING (contract_id)
GROUP BY currency ORDER BY currency
"""


def load_month_states(con: duckdb.DuckDBPyConnection, period: dt.date) -> dict[str, Row]:
    # an absent approvals/disputes table reads as no rows: fall back to the scale alone
    found = _query(con, MONTH_STATE_SQL, period) or _query(con, MONTH_STATE_FALLBACK_SQL, period)
    return {r["contract_id"]: r for r in found}


def load_totals(con: duckdb.DuckDBPyConnection, period: dt.date) -> dict[tuple[str, str], Row]:
    """The totals rows' figures, summed in SQL over exactly the rows each table shows (a blank
    sums as nothing, as Excel's SUBTOTAL does)."""
    totals: dict[tuple[str, str], Row] = {}
    for name, (sql, keys) in TOTALLED.items():
        sums = ", ".join(f"coalesce(sum({k}), 0) AS {k}" for k in keys)
        for r in _query(
            con, f"SELECT contract_id, {sums} FROM ({sql}) GROUP BY contract_id", period
        ):
            totals[(name, r["contract_id"])] = r
    return totals
