-- Grain: one row per selected contract and month, from the contract start to the last month this
-- run settles. Everything later is computed over this whole history (runs of KPI failures, earn-back
-- and gain-share windows reach back before the months being settled), and only the months of the
-- write set (`writes`) are stored.
--
-- The write set is the requested months that are still open. A run that covers closed months
-- restates them: their figures go to `adjustments`, billed on the next open month, which the run
-- therefore also settles.

CREATE OR REPLACE TEMP TABLE calc_months AS
WITH params AS (
    SELECT * FROM run_params
),
closed AS (
    SELECT contract_id, period, closed_run_id
    FROM period_status
    WHERE status = 'closed'
),
horizon AS (
    -- far enough to find the next open month after any closed one
    SELECT
        c.contract_id,
        c.start_period,
        coalesce(
            c.end_period,
            greatest(p.period_to, coalesce(cl.last_closed, p.period_to) + INTERVAL 1 MONTH)
        )::DATE AS horizon_end
    FROM cfg_contracts c
    JOIN run_contracts USING (contract_id)
    CROSS JOIN params p
    LEFT JOIN (
        SELECT contract_id, max(period) AS last_closed FROM closed GROUP BY contract_id
    ) cl USING (contract_id)
),
term_months AS (
    SELECT
        h.contract_id,
        m.period::DATE AS period,
        cl.contract_id IS NOT NULL AS is_closed,
        cl.closed_run_id,
        m.period BETWEEN p.period_from AND p.period_to AS in_range
    FROM horizon h
    CROSS JOIN params p
    CROSS JOIN LATERAL (
        SELECT unnest(generate_series(h.start_period, h.horizon_end, INTERVAL 1 MONTH)) AS period
    ) m
    LEFT JOIN closed cl ON cl.contract_id = h.contract_id AND cl.period = m.period
),
next_open AS (
    -- the open month that carries the adjustments of the closed months this run restates
    SELECT t.contract_id, min(t.period) AS period
    FROM term_months t
    JOIN (
        SELECT contract_id, max(period) AS last_closed
        FROM term_months
        WHERE in_range AND is_closed
        GROUP BY contract_id
    ) r ON r.contract_id = t.contract_id AND t.period > r.last_closed
    WHERE NOT t.is_closed
    GROUP BY t.contract_id
),
flagged AS (
    SELECT
        t.*,
        (t.in_range AND NOT t.is_closed) OR t.period = n.period AS writes
    FROM term_months t
    LEFT JOIN next_open n USING (contract_id)
)
SELECT contract_id, period, is_closed, closed_run_id, in_range, writes
FROM flagged
WHERE period <= (
    SELECT max(f2.period) FROM flagged f2
    WHERE f2.contract_id = flagged.contract_id AND (f2.writes OR f2.in_range)
)
ORDER BY contract_id, period;

-- The months this run stores, per contract.
CREATE OR REPLACE TEMP TABLE calc_writes AS
SELECT contract_id, period FROM calc_months WHERE writes;
