-- Referential rules between the inputs and the contracts, checked before anything is computed.
-- Each block returns the offending rows (with _file and _row: the file and its row number);
-- the first block that returns rows stops the run with them.

-- name: volumes_contract_known
-- rule: contract_id must be a contract in the contracts folder.
SELECT _file, _row, contract_id, service_line_id, period FROM in_volumes v
WHERE NOT EXISTS (SELECT 1 FROM cfg_contracts c WHERE c.contract_id = v.contract_id)
ORDER BY _file, _row;

-- name: volumes_service_line_known
-- rule: service_line_id must be a service line of its contract.
SELECT _file, _row, contract_id, service_line_id, period FROM in_volumes v
WHERE EXISTS (SELECT 1 FROM cfg_contracts c WHERE c.contract_id = v.contract_id)
  AND NOT EXISTS (SELECT 1 FROM cfg_service_lines s
                  WHERE s.contract_id = v.contract_id AND s.service_line_id = v.service_line_id)
ORDER BY _file, _row;

-- name: volumes_in_term
-- rule: period must lie inside the contract term (start..end).
SELECT _file, _row, v.contract_id, v.service_line_id, v.period, c.start_period, c.end_period
FROM in_volumes v JOIN cfg_contracts c USING (contract_id)
WHERE v.period < c.start_period OR v.period > term_end(c.end_period)
ORDER BY _file, _row;

-- name: kpis_known
-- rule: contract_id and kpi_id must name a KPI of a contract's service_credits.
SELECT _file, _row, contract_id, kpi_id, period FROM in_kpis k
WHERE NOT EXISTS (SELECT 1 FROM cfg_kpis c WHERE c.contract_id = k.contract_id AND c.kpi_id = k.kpi_id)
ORDER BY _file, _row;

-- name: kpis_not_measured
-- rule: kpi_id has a measure in its contract and is computed from interactions; remove the input row.
SELECT _file, _row, k.contract_id, k.kpi_id, k.period FROM in_kpis k
JOIN cfg_kpis c USING (contract_id, kpi_id) WHERE c.measured
ORDER BY _file, _row;

-- name: kpi_targets_in_kind_range
-- rule: a KPI's targets lie in the range of its kind (a share KPI's from 0 to 1)
-- column: target
SELECT c.config_file AS _file, t.contract_id, t.kpi_id, t.effective_from AS target_from, t.target,
       r.kind
FROM cfg_kpi_targets t
JOIN cfg_kpi_kinds r USING (contract_id, kpi_id)
JOIN cfg_contracts c USING (contract_id)
WHERE t.target < r.low OR t.target > r.high
ORDER BY c.config_file, t.contract_id, t.kpi_id, t.effective_from;

-- name: kpis_value_in_kind_range
-- rule: value must lie in the range of its KPI's kind (share: 0 to 1; seconds: 0 to 10,000,000; count: a whole number from 0; score: within 10,000,000,000 either side of 0)
SELECT k._file, k._row, k.contract_id, k.kpi_id, k.period, k.value, r.kind
FROM in_kpis k JOIN cfg_kpi_kinds r USING (contract_id, kpi_id)
WHERE k.value < r.low OR k.value > r.high OR (r.whole AND k.value <> floor(k.value))
ORDER BY _file, _row;

-- name: kpis_in_term
-- rule: period must lie inside the contract term (start..end).
SELECT _file, _row, k.contract_id, k.kpi_id, k.period FROM in_kpis k JOIN cfg_contracts c USING (contract_id)
WHERE k.period < c.start_period OR k.period > term_end(c.end_period)
ORDER BY _file, _row;

-- name: kpis_ratio
-- rule: value must equal numerator / denominator (within 0.00005) when both are given.
SELECT _file, _row, contract_id, kpi_id, period, value, numerator, denominator FROM in_kpis
WHERE numerator IS NOT NULL AND denominator IS NOT NULL AND denominator <> 0
  AND abs(value - div_round(numerator, denominator, 10, 'half_up')) > 0.00005
ORDER BY _file, _row;

-- name: exclusions_known
-- rule: contract_id (and kpi_id when given) must name a contract (and one of its KPIs).
SELECT _file, _row, contract_id, kpi_id, period FROM in_exclusions e
WHERE NOT EXISTS (SELECT 1 FROM cfg_contracts c WHERE c.contract_id = e.contract_id)
   OR (e.kpi_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM cfg_kpis k WHERE k.contract_id = e.contract_id AND k.kpi_id = e.kpi_id))
ORDER BY _file, _row;

-- name: exclusions_window_in_month
-- rule: starts_at and ends_at must both be given or both empty, inside the row's month.
SELECT _file, _row, contract_id, kpi_id, period, starts_at, ends_at FROM in_exclusions
WHERE (starts_at IS NULL) <> (ends_at IS NULL)
   OR (starts_at IS NOT NULL AND (date_trunc('month', starts_at)::DATE <> period
                                  OR ends_at > (period + INTERVAL 1 MONTH)))
ORDER BY _file, _row;

-- name: exclusions_in_term
-- rule: period must lie inside the contract term (start..end).
SELECT e._file, e._row, e.contract_id, e.kpi_id, e.period, c.start_period, c.end_period
FROM in_exclusions e JOIN cfg_contracts c USING (contract_id)
WHERE e.period < c.start_period OR e.period > term_end(c.end_period)
ORDER BY _file, _row;

-- name: vendor_invoices_known
-- rule: contract_id must be a contract in the contracts folder, period inside its term.
SELECT _file, _row, v.contract_id, v.period, v.line_key FROM in_vendor_invoices v
LEFT JOIN cfg_contracts c USING (contract_id)
WHERE c.contract_id IS NULL
   OR v.period < c.start_period OR v.period > term_end(c.end_period)
ORDER BY _file, _row;

-- name: vendor_invoices_one_invoice
-- rule: invoice_id must be the same on every line of a contract's month.
SELECT min(_file) AS _file, min(_row) AS _row, contract_id, period, count(DISTINCT invoice_id) AS invoice_ids
FROM in_vendor_invoices GROUP BY contract_id, period HAVING count(DISTINCT invoice_id) > 1
ORDER BY contract_id, period;

-- name: pass_through_known
-- rule: item_id must be a pass_through item of its contract, period inside the contract term.
SELECT _file, _row, p.contract_id, p.period, p.item_id FROM in_pass_through p
LEFT JOIN cfg_contracts c USING (contract_id)
WHERE c.contract_id IS NULL
   OR NOT EXISTS (SELECT 1 FROM cfg_pass_through t
                  WHERE t.contract_id = p.contract_id AND t.item_id = p.item_id)
   OR p.period < c.start_period OR p.period > term_end(c.end_period)
ORDER BY _file, _row;
