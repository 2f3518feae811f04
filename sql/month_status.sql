-- Grain: one row per settled contract and month: where it stands at month-end (SPEC 11).
--   closed    the month is locked (closed_how: approved | disputed | forced)
--   approved  the invoice of the current run is approved (an approval of an earlier run lapses)
--   disputed  lines of it are in open dispute
--   open      none of these
WITH latest AS (
    SELECT contract_id, period, max(run_id) AS last_run_id
    FROM run_periods
    GROUP BY ALL
),
open_disputes AS (
    SELECT contract_id, period, count(*) AS open_disputes
    FROM current_disputes
    WHERE status = 'open'
    GROUP BY ALL
)
SELECT
    c.contract_id,
    c.period,
    CASE
        WHEN c.status = 'closed' THEN 'closed'
        WHEN a.run_id = c.run_id THEN 'approved'
        WHEN coalesce(d.open_disputes, 0) > 0 THEN 'disputed'
        ELSE 'open'
    END AS status,
    c.run_id,
    l.last_run_id,
    t.currency,
    t.amount_due,
    t.billed,
    t.difference,
    t.exceptions,
    coalesce(d.open_disputes, 0) AS open_disputes,
    CASE WHEN a.run_id = c.run_id THEN a.approved_by END AS approved_by,
    CASE WHEN a.run_id = c.run_id THEN a.approved_at END AS approved_at,
    ps.closed_at,
    ps.closed_how
FROM current_run_periods c
JOIN latest l USING (contract_id, period)
LEFT JOIN current_invoice_summary t USING (contract_id, period)
LEFT JOIN open_disputes d USING (contract_id, period)
LEFT JOIN current_approvals a USING (contract_id, period)
LEFT JOIN period_status ps USING (contract_id, period)
ORDER BY c.contract_id, c.period;
