-- Grain: one row per invoice line: contract, month and line key (SPEC 7).
-- The invoice is the charge lines, then the service credit, earn-back and bonus lines, then the
-- gain-share line on the last month of its window. Adjustment lines for restated closed months are
-- added by 10_adjustments.sql. Every amount was rounded once at its own line; a total is their sum.

CREATE OR REPLACE TEMP TABLE calc_invoice_lines AS
WITH lines AS (
    SELECT
        contract_id, period, line_key, charge_type AS line_type, description,
        -- the quantity in the unit its rate prices: a package line bills packages, not the units
        -- packed, so that quantity x rate is the amount and reconciliation's split is per pack.
        -- Each branch is cast: a CASE over DECIMAL(38,0) and (38,12) would keep 0 places
        CASE WHEN package_count IS NOT NULL THEN CAST(package_count AS DECIMAL(38, 12))
             ELSE CAST(units AS DECIMAL(38, 12)) END AS quantity,
        rate, amount, sort_order
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
    c.currency, l.sort_order,
    -- the one rounding every line's amount had: the contract's mode, to amount_scale places
    c.rounding_mode, CAST(c.amount_scale AS INTEGER) AS amount_scale,
    -- a bonus line: the level it reached and the share of the month's charges it earns
    CAST(b.bonus_at_or_better AS DECIMAL(38, 10)) AS bonus_level,
    CAST(b.bonus_pct AS DECIMAL(38, 8)) AS bonus_pct,
    CAST(b.charges AS DECIMAL(38, 4)) AS bonus_charges,
    -- an earn-back line: the months whose service credits it returns
    eb.earned_back_of
FROM lines l
JOIN cfg_contracts c USING (contract_id)
LEFT JOIN calc_bonuses b
  ON l.line_type = 'bonus' AND b.contract_id = l.contract_id AND b.period = l.period
 AND l.line_key = 'bonus:' || b.kpi_id
LEFT JOIN (
    SELECT contract_id, earned_back_in AS period, 'earn_back:' || kpi_id AS line_key,
           list(period ORDER BY period) AS earned_back_of
    FROM calc_service_credits
    WHERE earned_back_in IS NOT NULL AND amount <> 0
    GROUP BY ALL
) eb ON l.line_type = 'earn_back' AND eb.contract_id = l.contract_id AND eb.period = l.period
    AND eb.line_key = l.line_key;
