-- What lets each requested contract-month close (SPEC 11), for all of them at once: the invoice
-- of its current run approved, or every reconciliation exception of that run disputed.
-- Parameters: $1 the months (DATE[]), $2 the contract ids (VARCHAR[], NULL: every contract
-- settled in those months). Grain of close_plan: one row per requested contract-month that has
-- been settled; `how` is NULL where nothing allows the close, and `why` says what blocks it.
CREATE OR REPLACE TEMP TABLE close_plan AS
WITH months AS (
    SELECT DISTINCT unnest($1::DATE[]) AS period
),
candidates AS (
    SELECT s.contract_id, s.period, s.status, c.run_id
    FROM period_status s
    JOIN months m ON m.period = s.period
    LEFT JOIN current_run_periods c ON c.contract_id = s.contract_id AND c.period = s.period
    WHERE $2::VARCHAR[] IS NULL OR list_contains($2::VARCHAR[], s.contract_id)
),
exceptions AS (
    SELECT
        r.contract_id, r.period, r.line_key,
        EXISTS (
            SELECT 1 FROM current_disputes d
            WHERE d.contract_id = r.contract_id AND d.period = r.period
              AND d.line_key = r.line_key
        ) AS disputed
    FROM invoice_reconciliation r
    JOIN candidates k
      ON r.run_id = k.run_id AND r.contract_id = k.contract_id AND r.period = k.period
    WHERE r.status <> 'match' AND k.status <> 'closed'
),
gate AS (
    SELECT
        contract_id, period, count(*) AS exceptions,
        coalesce(list(line_key ORDER BY line_key) FILTER (WHERE NOT disputed), []::VARCHAR[])
            AS undisputed
    FROM exceptions
    GROUP BY contract_id, period
)
SELECT
    k.contract_id, k.period, k.run_id, k.status,
    CASE
        WHEN k.status = 'closed' THEN 'already closed'
        WHEN a.contract_id IS NOT NULL THEN 'approved'
        WHEN coalesce(g.exceptions, 0) > 0 AND len(g.undisputed) = 0 THEN 'disputed'
    END AS how,
    CASE
        WHEN len(coalesce(g.undisputed, []::VARCHAR[])) > 0
            THEN 'not approved, exceptions not disputed: ' || array_to_string(g.undisputed, ', ')
        ELSE 'not approved'
    END AS why
FROM candidates k
LEFT JOIN current_approvals a
  ON a.run_id = k.run_id AND a.contract_id = k.contract_id AND a.period = k.period
LEFT JOIN gate g ON g.contract_id = k.contract_id AND g.period = k.period
ORDER BY k.period, k.contract_id;
