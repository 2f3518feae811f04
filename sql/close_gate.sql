-- Whether one contract-month may close (SPEC 11): the invoice of its current run ($1) approved,
-- or every reconciliation exception of that run disputed. Parameters: run_id, contract_id, period.
WITH exceptions AS (
    SELECT
        r.line_key,
        EXISTS (
            SELECT 1 FROM current_disputes d
            WHERE d.contract_id = r.contract_id AND d.period = r.period
              AND d.line_key = r.line_key
        ) AS disputed
    FROM invoice_reconciliation r
    WHERE r.run_id = $1 AND r.contract_id = $2 AND r.period = $3 AND r.status <> 'match'
)
SELECT
    EXISTS (
        SELECT 1 FROM current_approvals a
        WHERE a.run_id = $1 AND a.contract_id = $2 AND a.period = $3
    ) AS approved,
    (SELECT count(*) FROM exceptions) AS exceptions,
    coalesce(
        (SELECT list(line_key ORDER BY line_key) FROM exceptions WHERE NOT disputed),
        []::VARCHAR[]
    ) AS undisputed;
