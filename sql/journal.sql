-- Grain: one journal row per current invoice line of the exported months (SPEC 11): the line's
-- amount posted to the ledger account its run mapped its line type to (the contract's
-- `accounting` section as stored with the run), else that section's `default`; account is NULL
-- where neither maps it (the export refuses those). Parameters: first and last month.
WITH accounts AS (
    SELECT run_id, contract_id, line_type, account FROM accounting_map
),
parties AS (
    SELECT run_id, contract_id, any_value(supplier_id) AS supplier_id,
           any_value(cost_centre) AS cost_centre
    FROM accounting_map
    GROUP BY ALL
)
SELECT
    l.contract_id,
    l.period,
    l.contract_id || '/' || strftime(l.period, '%Y-%m') AS invoice_ref,
    p.supplier_id,
    p.cost_centre,
    coalesce(m.account, d.account) AS account,
    l.line_type,
    l.line_key,
    l.description,
    l.amount,
    l.currency,
    l.run_id
FROM current_invoice_lines l
LEFT JOIN accounts m
  ON m.run_id = l.run_id AND m.contract_id = l.contract_id AND m.line_type = l.line_type
LEFT JOIN accounts d
  ON d.run_id = l.run_id AND d.contract_id = l.contract_id AND d.line_type = 'default'
LEFT JOIN parties p ON p.run_id = l.run_id AND p.contract_id = l.contract_id
WHERE l.period BETWEEN $1 AND $2
ORDER BY l.contract_id, l.period, l.sort_order, l.line_key;
