-- Invariants of a run's stored figures, checked inside its transaction after the rows are stored
-- (pipelines/checks.py, stage `stored`), by the CLI and Dagster alike. `$run_id` is the run being
-- written. Every row returned is a contradiction between figures of the run: the run fails and
-- nothing is written. The Dagster asset checks show the same queries' rows.

-- name: invoice_adds_up
-- stage: stored
-- where: invoice_lines of the run
-- rule: per contract-month, the invoice's charge, credit, gain-share and adjustment lines equal the totals of charge_lines, service_credits, gain_share and adjustments, and the amount due equals the reconciliation's expected total
-- column: amount
WITH months AS (
    SELECT contract_id, period FROM run_periods WHERE run_id = $run_id
),
-- each table's figures summed per contract-month once (joins, not a subquery per month)
invoice_parts AS (
    SELECT l.contract_id, l.period,
        sum(l.amount) FILTER (WHERE c.line_key IS NOT NULL) AS charges,
        sum(l.amount) FILTER (WHERE l.line_key LIKE 'dispute:%') AS disputes
    FROM invoice_lines l
    LEFT JOIN (SELECT DISTINCT contract_id, period, line_key FROM charge_lines
               WHERE run_id = $run_id) c USING (contract_id, period, line_key)
    WHERE l.run_id = $run_id
    GROUP BY l.contract_id, l.period
),
invoice AS (
    -- the one invoice summary (sql/views.sql); charges here are every invoice line that is a
    -- charge line (pass-through and one-off lines with in_charges count too), and adjustments
    -- leave out settled disputes (dispute:<id>), which come from `disputes`, not `adjustments`
    SELECT s.contract_id, s.period, s.amount_due, s.credits, s.gain_share,
        coalesce(p.charges, 0) AS charges,
        s.adjustments - coalesce(p.disputes, 0) AS adjustments
    FROM invoice_summary s LEFT JOIN invoice_parts p USING (contract_id, period)
    WHERE s.run_id = $run_id
),
sources AS (
    SELECT m.contract_id, m.period,
        coalesce(c.amount, 0) AS charges,
        -coalesce(sc.amount, 0) AS credits,
        coalesce(g.amount, 0) AS gain_share,
        coalesce(a.amount, 0) AS adjustments,
        coalesce(r.amount, 0) AS amount_due
    FROM months m
    LEFT JOIN (SELECT contract_id, period, sum(amount) AS amount FROM charge_lines
               WHERE run_id = $run_id GROUP BY contract_id, period) c
      USING (contract_id, period)
    LEFT JOIN (SELECT contract_id, period, sum(amount) AS amount FROM service_credits
               WHERE run_id = $run_id GROUP BY contract_id, period) sc
      USING (contract_id, period)
    LEFT JOIN (SELECT contract_id, billed_period AS period, sum(provider_amount) AS amount
               FROM gain_share WHERE run_id = $run_id GROUP BY contract_id, billed_period) g
      USING (contract_id, period)
    LEFT JOIN (SELECT contract_id, billed_in_period AS period, sum(delta) AS amount
               FROM adjustments WHERE run_id = $run_id GROUP BY contract_id, billed_in_period) a
      USING (contract_id, period)
    LEFT JOIN (SELECT contract_id, period, sum(expected_amount) AS amount
               FROM invoice_reconciliation WHERE run_id = $run_id
               GROUP BY contract_id, period) r
      USING (contract_id, period)
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
ORDER BY contract_id, period, part;

-- name: credits_within_cap
-- stage: stored
-- where: service_credits of the run
-- rule: per contract-month with a cap, the credits add up to no more than the monthly cap (plus the half unit of the last place that rounding the cap allows), and exactly to the rounded cap when capped
-- column: amount
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
ORDER BY contract_id, period;

-- name: rounded_splits_add_up
-- stage: stored
-- where: service_credits of the run
-- rule: a month's credits split from one rounded total (a capped month, a points regime) add up to that total exactly
-- column: amount
SELECT contract_id AS contract, period AS month, any_value(split_total) AS "rounded total",
       sum(amount) AS "sum of the credits"
FROM service_credits WHERE run_id = $run_id AND split_total IS NOT NULL
GROUP BY contract_id, period
HAVING count(DISTINCT split_total) > 1 OR sum(amount) <> any_value(split_total)
ORDER BY contract_id, period;

-- name: gain_share_within_cap
-- stage: stored
-- where: gain_share of the run
-- rule: a gain-share window's provider amount lies within its cap (the rounded amount within the cap plus half a unit of its last place)
-- column: provider_amount
SELECT g.contract_id AS contract, g.window_start, g.window_end, g.provider_amount_unrounded,
       g.provider_amount, g.cap
FROM gain_share g JOIN cfg_contracts c USING (contract_id),
     LATERAL (SELECT CASE c.amount_scale WHEN 0 THEN 0.5 WHEN 1 THEN 0.05 WHEN 2 THEN 0.005
                                         WHEN 3 THEN 0.0005 ELSE 0.00005 END AS half_unit)
WHERE g.run_id = $run_id AND g.cap IS NOT NULL
  AND (abs(g.provider_amount_unrounded) > g.cap OR abs(g.provider_amount) > g.cap + half_unit)
ORDER BY g.contract_id, g.window_start;
