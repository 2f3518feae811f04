-- current_<table>: the rows of the run that stands for each contract and month
-- (current_run_periods). Created after the engine first stores each table.
CREATE OR REPLACE VIEW current_charge_lines AS
SELECT t.* FROM charge_lines t JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_charge_bands AS
SELECT t.* FROM charge_bands t JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_kpi_results AS
SELECT t.* FROM kpi_results t JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_service_credits AS
SELECT t.* FROM service_credits t JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_invoice_lines AS
SELECT t.* FROM invoice_lines t JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_invoice_reconciliation AS
SELECT t.* FROM invoice_reconciliation t
JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_gain_share AS
SELECT t.* FROM gain_share t
JOIN current_run_periods c
  ON c.run_id = t.run_id AND c.contract_id = t.contract_id AND c.period = t.billed_period;
CREATE OR REPLACE VIEW current_gain_share_months AS
SELECT t.* FROM gain_share_months t JOIN current_run_periods c USING (run_id, contract_id, period);
CREATE OR REPLACE VIEW current_adjustments AS
SELECT t.* FROM adjustments t
JOIN current_run_periods c
  ON c.run_id = t.run_id AND c.contract_id = t.contract_id AND c.period = t.billed_in_period;
-- Factors: those of the latest run that stands for any month of the contract.
CREATE OR REPLACE VIEW current_index_factors AS
SELECT t.* FROM index_factors t
WHERE t.run_id = (SELECT max(c.run_id) FROM current_run_periods c WHERE c.contract_id = t.contract_id);
-- One line per contract and month: the invoice total as the sum of its rounded lines.
CREATE OR REPLACE VIEW current_invoice_totals AS
SELECT contract_id, period, any_value(currency) AS currency, count(*) AS lines,
       sum(amount) AS amount_due
FROM current_invoice_lines GROUP BY contract_id, period;
