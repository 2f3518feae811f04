-- Grain: one row per contract, measured KPI and month: numerator, denominator and value computed
-- from raw interactions (SPEC 6). Filled by the interaction step; empty when no KPI has a measure.
CREATE OR REPLACE TEMP TABLE calc_measured_kpis AS
SELECT
    NULL::VARCHAR AS contract_id, NULL::VARCHAR AS kpi_id, NULL::DATE AS period,
    NULL::DECIMAL(38, 6) AS numerator, NULL::DECIMAL(38, 6) AS denominator,
    NULL::DECIMAL(38, 10) AS value
WHERE false;
