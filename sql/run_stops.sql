-- Data a settlement step needs that the inputs do not hold. Each check runs right after the step
-- named by its stage (pipelines/checks.py) and returns the missing items; any row stops the run.
-- `settle validate` runs them too, over every month the volumes cover.

-- name: index_values_present
-- stage: indexation
-- rule: every indexation review reads the index value of its reference months
-- column: value
-- where: index_values/
-- hint: Add the missing rows to index_values/
SELECT DISTINCT r.contract_id, w.index_id, needed.period, r.review_period
FROM calc_reviews r
JOIN cfg_index_weights w USING (contract_id)
CROSS JOIN LATERAL (SELECT unnest([r.reference_period, r.previous_reference_period]) AS period) needed
LEFT JOIN in_index_values v ON v.index_id = w.index_id AND v.period = needed.period
WHERE v.index_id IS NULL
ORDER BY r.contract_id, w.index_id, needed.period, r.review_period;

-- name: pricing_in_force
-- stage: pricing
-- rule: each service line has a price in force every month of the term
-- column: pricing
-- hint: Every pricing entry that could apply was agreed after --as-known-at
SELECT c.config_file AS _file, m.contract_id, sl.service_line_id, min(m.period) AS period
FROM calc_months m
JOIN cfg_contracts c USING (contract_id)
JOIN cfg_service_lines sl USING (contract_id)
LEFT JOIN calc_pricing_in_force p
  ON p.contract_id = m.contract_id AND p.service_line_id = sl.service_line_id
 AND p.period = m.period
WHERE p.contract_id IS NULL
GROUP BY c.config_file, m.contract_id, sl.service_line_id
ORDER BY m.contract_id, sl.service_line_id;

-- name: required_kpis_present
-- stage: kpi_results
-- rule: a KPI with required: true has a value every settled month
-- column: value
-- where: kpis/
-- hint: Add the rows to kpis/ (or, for a KPI with a measure, the month's interactions/)
SELECT r.contract_id, r.kpi_id, r.period
FROM calc_kpi_results r
JOIN cfg_kpis k USING (contract_id, kpi_id)
JOIN calc_writes w USING (contract_id, period)
WHERE k.required AND r.value IS NULL AND NOT r.excused
ORDER BY r.contract_id, r.kpi_id, r.period;

-- name: fx_rates_present
-- stage: terms_beyond_month
-- rule: fx_sharing reads the rate of month - lag_months for every month of the term
-- column: rate
-- where: fx_rates/
-- hint: Add the missing rows to fx_rates/
SELECT contract_id, delivery_currency AS currency, rate_period, period
FROM calc_missing_fx_rates
ORDER BY contract_id, rate_period;
