-- Grain: one row per invoice line: contract, month and line key (SPEC 7).
-- The invoice is the charge lines, then the service credit, earn-back and bonus lines, then the
-- gain-share line on the last month of its window. Adjustment lines for restated closed months are
-- added by 10_adjustments.sql. Every amount was rounded once at its own line; a total is their sum.

CREATE OR REPLACE TEMP TABLE calc_invoice_lines AS
WITH lines AS (
    SELECT
        contract_id, period, line_key, charge_type AS line_type, description,
        units AS quantity, rate, amount, sort_order
    FROM calc_charge_lines
    UNION ALL
    SELECT
        contract_id, period, line_key, line_type, description, quantity, rate, amount, sort_order
    FROM calc_credit_lines
    UNION ALL
    SELECT
        contract_id, period, line_key, line_type, description, quantity, rate, amount, sort_order
    FROM calc_gain_share_lines
    UNION ALL
    SELECT
        contract_id, period, line_key, line_type, description, quantity, rate, amount, sort_order
    FROM calc_extra_lines
)
SELECT
    l.contract_id, l.period, l.line_key, l.line_type, l.description,
    CAST(l.quantity AS DECIMAL(38, 6)) AS quantity,
    CAST(l.rate AS DECIMAL(38, 8)) AS rate,
    CAST(l.amount AS DECIMAL(38, 4)) AS amount,
    c.currency, l.sort_order
FROM lines l
JOIN cfg_contracts c USING (contract_id);
