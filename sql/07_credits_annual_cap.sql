-- Annual credit cap (SPEC 10). Grain of calc_annual_credit_caps: one row per contract with an
-- annual cap and contract year (12 months from contract_year_start, clipped to the term) whose
-- last month in the term lies in this run's history.
--
-- In that month, when the year's credits net of earn-back exceed the cap in absolute value, the
-- line `credit_cap_refund` returns the excess. The cap is the lower of annual_cap_amount and
-- annual_cap_pct x the year's charges before credits, kept exact; the refund is rounded once.
-- The monthly cap has already applied to every month.
CREATE OR REPLACE TEMP TABLE calc_annual_credit_caps AS
WITH years AS (
    SELECT
        m.contract_id, m.period, c.start_period, c.end_period, c.amount_scale, c.rounding_mode,
        g.annual_cap_pct, g.annual_cap_amount,
        CAST(c.contract_year_start + to_months(
            12 * CAST(floor(months_between(c.contract_year_start, m.period) / 12) AS INTEGER))
            AS DATE) AS year_start
    FROM calc_months m
    JOIN cfg_contracts c USING (contract_id)
    JOIN cfg_credit_regimes g USING (contract_id)
    WHERE g.annual_cap_pct IS NOT NULL OR g.annual_cap_amount IS NOT NULL
),
closing AS (
    SELECT
        *,
        CAST(year_start + to_months(11) AS DATE) AS year_end,
        greatest(year_start, start_period) AS term_start,
        least(CAST(year_start + to_months(11) AS DATE), term_end(end_period))
            AS term_end
    FROM years
),
summed AS (
    SELECT
        y.*,
        CAST((SELECT coalesce(sum(ch.charges), 0) FROM calc_month_charges ch
              WHERE ch.contract_id = y.contract_id
                AND ch.period BETWEEN y.term_start AND y.term_end) AS DECIMAL(38, 4))
            AS year_charges,
        CAST((SELECT coalesce(sum(l.amount), 0) FROM calc_credit_lines l
              WHERE l.contract_id = y.contract_id AND l.line_type IN ('credit', 'earn_back')
                AND l.period BETWEEN y.term_start AND y.term_end) AS DECIMAL(38, 4))
            AS year_credits
    FROM closing y
    WHERE y.period = y.term_end
),
capped AS (
    SELECT
        *,
        -- both sides at one scale: least() would otherwise keep the smaller one (engineering.md)
        CAST(CASE
            WHEN annual_cap_amount IS NULL THEN annual_cap_pct * year_charges
            WHEN annual_cap_pct IS NULL THEN annual_cap_amount
            ELSE least(CAST(annual_cap_amount AS DECIMAL(38, 10)),
                       CAST(annual_cap_pct * year_charges AS DECIMAL(38, 10)))
        END AS DECIMAL(38, 10)) AS cap_amount
    FROM summed
)
SELECT
    contract_id, year_start, year_end, term_start, term_end, period AS billed_period,
    year_charges, year_credits, annual_cap_pct, annual_cap_amount, cap_amount,
    abs(year_credits) > cap_amount AS capped,
    CAST(CASE WHEN abs(year_credits) > cap_amount
              THEN -sign(year_credits) * round_to(abs(year_credits) - cap_amount, amount_scale,
                                                  rounding_mode)
              ELSE 0 END AS DECIMAL(38, 4)) AS amount
FROM capped;

INSERT INTO calc_extra_lines BY NAME
SELECT
    contract_id, billed_period AS period, 'credit_cap_refund' AS line_key,
    'credit_cap_refund' AS line_type,
    'Annual credit cap: credits net of earn-back ' || strftime(term_start, '%Y-%m') || '..'
        || strftime(term_end, '%Y-%m') || ' above the cap, excess returned' AS description,
    amount, line_sort_order('credit_cap_refund', 0) AS sort_order
FROM calc_annual_credit_caps
WHERE capped;
