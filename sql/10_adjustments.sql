-- Grain of calc_adjustments: one row per contract, restated closed month and line key whose
-- restated amount differs from what has been billed for it so far (SPEC 5).
--
-- A closed month is never rewritten. What was billed for one of its lines is its closing amount
-- plus every adjustment already billed on invoices that are closed in their turn; the difference
-- to the restated amount is billed on the contract's next open month, when this run settles it,
-- as `adjustment:<line_key>:<YYYY-MM>`. Adjustments billed on a month that is still open are
-- recomputed by every run of that month, so rerunning never bills a difference twice.

-- Grain of calc_input_digests: one row per contract, month of the run's history and input folder
-- that holds a contract's rows per month: a digest of those rows as text ('none' when there are
-- none), and for interactions/ of the month's period= folder (file names and sha256, not the
-- measurement: a changed threshold is a term change). The run stores the rows that differ from
-- what an earlier run saw (input_digests); a closed month's adjustment names the months whose
-- digest differs from what the run it was last billed with saw.
CREATE OR REPLACE TEMP TABLE calc_input_digests AS
WITH rows_as_text AS (
    -- every column but the contract and month, NULL as '~' (concat_ws would drop it), one unit
    -- separator between: about twice as fast as casting each row to a struct's text
    SELECT 'volumes' AS folder, contract_id, period,
           concat_ws(chr(31),
               coalesce(CAST(service_line_id AS VARCHAR), '~'),
               coalesce(CAST(units AS VARCHAR), '~'),
               coalesce(CAST(forecast_units AS VARCHAR), '~')) AS row_text
    FROM in_volumes
    UNION ALL
    SELECT 'kpis', contract_id, period,
           concat_ws(chr(31),
               coalesce(CAST(kpi_id AS VARCHAR), '~'),
               coalesce(CAST(value AS VARCHAR), '~'),
               coalesce(CAST(numerator AS VARCHAR), '~'),
               coalesce(CAST(denominator AS VARCHAR), '~'))
    FROM in_kpis
    UNION ALL
    SELECT 'exclusions', contract_id, period,
           concat_ws(chr(31),
               coalesce(CAST(kpi_id AS VARCHAR), '~'),
               coalesce(CAST(reason AS VARCHAR), '~'),
               coalesce(CAST(starts_at AS VARCHAR), '~'),
               coalesce(CAST(ends_at AS VARCHAR), '~'))
    FROM in_exclusions
    UNION ALL
    SELECT 'pass_through', contract_id, period,
           concat_ws(chr(31),
               coalesce(CAST(item_id AS VARCHAR), '~'),
               coalesce(CAST(description AS VARCHAR), '~'),
               coalesce(CAST(cost AS VARCHAR), '~'),
               coalesce(CAST(reference AS VARCHAR), '~'))
    FROM in_pass_through
),
per_month AS (
    SELECT folder, contract_id, period,
           md5(string_agg(row_text, chr(10) ORDER BY row_text)) AS digest
    FROM rows_as_text
    GROUP BY ALL
),
interaction_months AS (
    -- a file not hashed yet gives the month no digest rather than a wrong one
    SELECT period,
           CASE WHEN count(*) = count(sha256)
                THEN md5(string_agg(file || '=' || sha256, ',' ORDER BY file)) END AS digest
    FROM calc_interaction_inputs
    WHERE period IS NOT NULL AND path IS NOT NULL
    GROUP BY period
),
folders AS (
    SELECT unnest(['volumes', 'kpis', 'exclusions', 'pass_through']) AS folder
)
SELECT m.contract_id, m.period, f.folder, coalesce(d.digest, 'none') AS digest
FROM calc_months m
CROSS JOIN folders f
LEFT JOIN per_month d
  ON d.contract_id = m.contract_id AND d.period = m.period AND d.folder = f.folder
UNION ALL
SELECT m.contract_id, m.period, 'interactions', coalesce(i.digest, 'none')
FROM calc_months m
LEFT JOIN interaction_months i ON i.period = m.period
WHERE i.period IS NULL OR i.digest IS NOT NULL;

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
billed_with AS (
    -- the run whose figures for the month are billed so far: the latest closed invoice that
    -- carried an adjustment for it (each adjusts every line that differed), else its closing run
    SELECT cm.contract_id, cm.period,
           greatest(cm.closed_run_id, coalesce(max(s.closed_run_id), 0)) AS run_id
    FROM closed_months cm
    LEFT JOIN adjustments a ON a.contract_id = cm.contract_id AND a.period = cm.period
    LEFT JOIN period_status s
      ON s.contract_id = a.contract_id AND s.period = a.billed_in_period
     AND s.status = 'closed' AND s.closed_run_id = a.run_id
    GROUP BY cm.contract_id, cm.period, cm.closed_run_id
),
adjusted_months AS (
    SELECT DISTINCT contract_id, period FROM compared
    WHERE restated_amount - closed_amount - previously_adjusted <> 0
),
seen AS (
    -- what that run saw of each month up to the adjusted one (a month's lines reach back:
    -- gain-share and commitment windows, runs of failures, earn-back, annual caps)
    SELECT b.contract_id, b.period, d.period AS input_period, d.folder,
           arg_max(d.digest, d.run_id) AS digest
    FROM billed_with b
    JOIN adjusted_months USING (contract_id, period)
    JOIN input_digests d
      ON d.contract_id = b.contract_id AND d.period <= b.period AND d.run_id <= b.run_id
    GROUP BY ALL
),
changed_inputs AS (
    -- months whose inputs differ from what the billed figures were computed from
    SELECT s.contract_id, s.period,
           string_agg(s.folder || ' of ' || strftime(s.input_period, '%Y-%m') || ' changed',
                      '; ' ORDER BY s.input_period, s.folder) AS reason
    FROM seen s
    JOIN calc_input_digests n
      ON n.contract_id = s.contract_id AND n.period = s.input_period AND n.folder = s.folder
    WHERE n.digest <> s.digest
    GROUP BY s.contract_id, s.period
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
LEFT JOIN changed_inputs ci USING (contract_id, period)
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
