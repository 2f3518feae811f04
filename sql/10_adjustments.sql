-- Grain of calc_adjustments: one row per contract, restated closed month and line key whose
-- restated amount differs from what has been billed for it so far (SPEC 5).
--
-- A closed month is never rewritten. What was billed for one of its lines is its closing amount
-- plus every adjustment already billed on invoices that are closed in their turn; the difference
-- to the restated amount is billed on the contract's next open month, when this run settles it,
-- as `adjustment:<line_key>:<YYYY-MM>`. Adjustments billed on a month that is still open are
-- recomputed by every run of that month, so rerunning never bills a difference twice.

CREATE OR REPLACE TEMP TABLE calc_adjustments AS
WITH closed_months AS (
    -- known_at: what the closing run knew (its --as-known-at, else the day it ran)
    SELECT m.contract_id, m.period, m.closed_run_id,
           coalesce(r.as_known_at, CAST(r.started_at AS DATE)) AS known_at
    FROM calc_months m
    JOIN settlement_runs r ON r.run_id = m.closed_run_id
    WHERE m.is_closed
),
closing_lines AS (
    SELECT il.contract_id, il.period, il.line_key, il.amount, il.description
    FROM invoice_lines il
    JOIN closed_months cm
      ON il.run_id = cm.closed_run_id
     AND il.contract_id = cm.contract_id
     AND il.period = cm.period
    WHERE il.line_type <> 'adjustment'
),
restated_lines AS (
    SELECT r.contract_id, r.period, r.line_key, r.amount, r.description
    FROM calc_invoice_lines r
    JOIN closed_months USING (contract_id, period)
),
adjusted_on_closed_invoices AS (
    SELECT a.contract_id, a.period, a.line_key, sum(a.delta) AS delta
    FROM adjustments a
    JOIN period_status s
      ON s.contract_id = a.contract_id
     AND s.period = a.billed_in_period
     AND s.status = 'closed'
     AND s.closed_run_id = a.run_id
    JOIN closed_months cm ON cm.contract_id = a.contract_id AND cm.period = a.period
    GROUP BY ALL
),
line_keys AS (
    SELECT contract_id, period, line_key FROM closing_lines
    UNION SELECT contract_id, period, line_key FROM restated_lines
    UNION SELECT contract_id, period, line_key FROM adjusted_on_closed_invoices
),
compared AS (
    SELECT
        k.contract_id, k.period, k.line_key,
        coalesce(r.description, c.description, k.line_key) AS description,
        coalesce(c.amount, 0) AS closed_amount,
        coalesce(a.delta, 0) AS previously_adjusted,
        coalesce(r.amount, 0) AS restated_amount
    FROM line_keys k
    LEFT JOIN closing_lines c USING (contract_id, period, line_key)
    LEFT JOIN restated_lines r USING (contract_id, period, line_key)
    LEFT JOIN adjusted_on_closed_invoices a USING (contract_id, period, line_key)
),
next_open AS (
    SELECT cm.contract_id, cm.period, min(m.period) AS billed_in_period
    FROM closed_months cm
    JOIN calc_months m ON m.contract_id = cm.contract_id AND m.period > cm.period
    WHERE NOT m.is_closed
    GROUP BY ALL
),
changed_terms AS (
    -- entries in force for the month that its closing run did not have: the cause of the change
    SELECT cm.contract_id, cm.period,
           string_agg(DISTINCT coalesce(e.reason, e.kind || ' ' || e.item_id || ' from '
                                        || strftime(e.effective_from, '%Y-%m')), '; ') AS reason
    FROM closed_months cm
    JOIN cfg_dated_entries e
      ON e.contract_id = cm.contract_id
     AND e.effective_from <= cm.period
     AND e.agreed_on <= (SELECT as_known_at FROM run_params)
    WHERE NOT EXISTS (
        SELECT 1 FROM run_terms t
        WHERE t.run_id = cm.closed_run_id AND t.contract_id = e.contract_id AND t.kind = e.kind
          AND t.item_id = e.item_id AND t.effective_from = e.effective_from
          AND t.fingerprint = e.fingerprint AND t.agreed_on <= cm.known_at
    )
    GROUP BY cm.contract_id, cm.period
),
changed_interactions AS (
    -- a closed month whose interaction files differ from those its closing run read
    -- (pipelines/closed_months.py)
    SELECT contract_id, period,
           'interactions of ' || strftime(period, '%Y-%m') || ' changed' AS reason
    FROM calc_interaction_changes
)
SELECT
    c.contract_id, c.period, n.billed_in_period, c.line_key, c.description,
    CAST(c.closed_amount AS DECIMAL(38, 4)) AS closed_amount,
    CAST(c.previously_adjusted AS DECIMAL(38, 4)) AS previously_adjusted,
    CAST(c.restated_amount AS DECIMAL(38, 4)) AS restated_amount,
    CAST(c.restated_amount - c.closed_amount - c.previously_adjusted AS DECIMAL(38, 4)) AS delta,
    coalesce(
        t.reason || '; ' || ci.reason, t.reason, ci.reason,
        'inputs or terms changed since the month was closed'
    ) AS reason
FROM compared c
JOIN next_open n USING (contract_id, period)
JOIN calc_writes w ON w.contract_id = n.contract_id AND w.period = n.billed_in_period
LEFT JOIN changed_terms t USING (contract_id, period)
LEFT JOIN changed_interactions ci USING (contract_id, period)
WHERE c.restated_amount - c.closed_amount - c.previously_adjusted <> 0;

-- Grain of calc_dispute_lines: one row per dispute settled with an amount and not yet on a closed
-- invoice (SPEC 11). It is billed on the contract's first open month after the disputed month,
-- when this run stores that month, as `dispute:<dispute_id>`; until that invoice is closed every
-- run of it bills the line again, so it is billed once.
CREATE OR REPLACE TEMP TABLE calc_dispute_lines AS
WITH settled AS (
    SELECT d.dispute_id, d.contract_id, d.period, d.line_key, d.resolution_amount, d.note
    FROM current_disputes d
    JOIN run_contracts USING (contract_id)
    WHERE d.status = 'resolved' AND d.outcome = 'settled' AND d.resolution_amount IS NOT NULL
),
on_closed_invoices AS (
    SELECT il.contract_id, il.line_key
    FROM invoice_lines il
    JOIN period_status s
      ON s.contract_id = il.contract_id AND s.period = il.period
     AND s.status = 'closed' AND s.closed_run_id = il.run_id
    WHERE il.line_key LIKE 'dispute:%'
),
placed AS (
    SELECT d.*, min(m.period) AS billed_in_period
    FROM settled d
    JOIN calc_months m ON m.contract_id = d.contract_id AND m.period > d.period
    WHERE NOT m.is_closed
      AND NOT EXISTS (
          SELECT 1 FROM on_closed_invoices o
          WHERE o.contract_id = d.contract_id AND o.line_key = 'dispute:' || d.dispute_id
      )
    GROUP BY ALL
)
SELECT p.*
FROM placed p
JOIN calc_writes w ON w.contract_id = p.contract_id AND w.period = p.billed_in_period;

-- The invoice as stored: the month's own lines and the adjustments billed on it.
CREATE OR REPLACE TEMP TABLE calc_invoice AS
SELECT * FROM calc_invoice_lines
UNION ALL BY NAME
SELECT
    a.contract_id, a.billed_in_period AS period,
    'adjustment:' || a.line_key || ':' || strftime(a.period, '%Y-%m') AS line_key,
    'adjustment' AS line_type,
    'Adjustment to ' || strftime(a.period, '%Y-%m') || ' ' || a.description || ' (' || a.reason || ')'
        AS description,
    NULL AS quantity, NULL AS rate, CAST(a.delta AS DECIMAL(38, 4)) AS amount, c.currency,
    line_sort_order('adjustment', 0) AS sort_order
FROM calc_adjustments a
JOIN cfg_contracts c USING (contract_id)
UNION ALL BY NAME
SELECT
    d.contract_id, d.billed_in_period AS period,
    'dispute:' || d.dispute_id AS line_key,
    'adjustment' AS line_type,
    'Dispute ' || d.dispute_id || ' on ' || strftime(d.period, '%Y-%m') || ' ' || d.line_key
        || ' settled' || coalesce(' (' || d.note || ')', '') AS description,
    NULL AS quantity, NULL AS rate, CAST(d.resolution_amount AS DECIMAL(38, 4)) AS amount,
    c.currency,
    line_sort_order('dispute', 0) AS sort_order
FROM calc_dispute_lines d
JOIN cfg_contracts c USING (contract_id);
