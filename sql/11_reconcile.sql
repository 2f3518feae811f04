-- Grain: one row per contract, month and line key found on either invoice: the one the contract
-- says is due (expected) and the provider's (billed), for every month this run stores (SPEC 7).
--
-- A line matches when the difference is within tolerance_abs OR within tolerance_pct of the
-- expected amount. Where both sides give quantity and rate, the difference splits into
-- rate variance = (billed rate - expected rate) x billed quantity and
-- volume variance = (billed quantity - expected quantity) x expected rate;
-- what is left (rounding, flat fees, anything not explained by quantity x rate) is
-- other_variance, so the three always add up to the difference. Where either side lacks quantity
-- or rate there is no split: the whole difference is other_variance, variance_basis 'amount only'.

CREATE OR REPLACE TEMP TABLE calc_reconciliation AS
WITH expected AS (
    SELECT i.contract_id, i.period, i.line_key, i.description, i.quantity, i.rate, i.amount
    FROM calc_invoice i
    JOIN calc_writes USING (contract_id, period)
),
billed AS (
    SELECT v.contract_id, v.period, v.invoice_id, v.line_key, v.description, v.quantity, v.rate,
           v.amount
    FROM in_vendor_invoices v
    JOIN calc_writes USING (contract_id, period)
),
matched AS (
    SELECT
        coalesce(e.contract_id, b.contract_id) AS contract_id,
        coalesce(e.period, b.period) AS period,
        coalesce(e.line_key, b.line_key) AS line_key,
        coalesce(e.description, b.description) AS description,
        b.invoice_id,
        e.quantity AS expected_quantity, e.rate AS expected_rate, e.amount AS expected_amount,
        b.quantity AS billed_quantity, b.rate AS billed_rate, b.amount AS billed_amount,
        e.line_key IS NOT NULL AS is_expected, b.line_key IS NOT NULL AS is_billed
    FROM expected e
    FULL JOIN billed b USING (contract_id, period, line_key)
),
scored AS (
    SELECT
        m.*,
        coalesce(m.billed_amount, 0) - coalesce(m.expected_amount, 0) AS difference,
        c.tolerance_abs, c.tolerance_pct,
        CASE WHEN m.billed_quantity IS NOT NULL AND m.billed_rate IS NOT NULL
                  AND m.expected_quantity IS NOT NULL AND m.expected_rate IS NOT NULL
             THEN round_to((m.billed_rate - m.expected_rate) * m.billed_quantity,
                           c.amount_scale, c.rounding_mode) END AS rate_variance,
        CASE WHEN m.billed_quantity IS NOT NULL AND m.billed_rate IS NOT NULL
                  AND m.expected_quantity IS NOT NULL AND m.expected_rate IS NOT NULL
             THEN round_to((m.billed_quantity - m.expected_quantity) * m.expected_rate,
                           c.amount_scale, c.rounding_mode) END AS volume_variance
    FROM matched m
    JOIN cfg_contracts c USING (contract_id)
)
SELECT
    contract_id, period, line_key, description, invoice_id,
    expected_quantity, expected_rate, CAST(expected_amount AS DECIMAL(38, 4)) AS expected_amount,
    billed_quantity, billed_rate, CAST(billed_amount AS DECIMAL(38, 4)) AS billed_amount,
    CAST(difference AS DECIMAL(38, 4)) AS difference,
    CASE
        WHEN NOT is_billed THEN 'not_billed'
        WHEN NOT is_expected THEN 'unexpected'
        WHEN abs(difference) <= tolerance_abs
          OR abs(difference) <= tolerance_pct * abs(expected_amount) THEN 'match'
        WHEN difference > 0 THEN 'over_billed'
        ELSE 'under_billed'
    END AS status,
    CAST(rate_variance AS DECIMAL(38, 4)) AS rate_variance,
    CAST(volume_variance AS DECIMAL(38, 4)) AS volume_variance,
    CAST(difference - coalesce(rate_variance, 0) - coalesce(volume_variance, 0)
         AS DECIMAL(38, 4)) AS other_variance,
    CASE WHEN rate_variance IS NULL THEN 'amount only' ELSE 'quantity x rate' END
        AS variance_basis
FROM scored;
