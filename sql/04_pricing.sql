-- Pricing (SPEC 3). Grains:
--   calc_line_months   one row per contract, service line and month: units, terms and prices in force
--   calc_usage_bands   one row per contract, service line, month and band reached
--   calc_charge_lines  one row per invoice line of charges: usage, minimum, surge, fixed fee
--
-- Prices on an indexed line move with the month's factor: rates to rate_scale, money amounts
-- (flat fees, package price, minimum and maximum charge) to amount_scale. Every line amount is
-- rounded once, here, with the contract's rounding mode.

CREATE OR REPLACE TEMP TABLE calc_pricing_in_force AS
SELECT m.contract_id, sl.service_line_id, m.period, p.* EXCLUDE (contract_id, service_line_id)
FROM calc_months m
JOIN cfg_service_lines sl USING (contract_id)
ASOF JOIN (
    SELECT * FROM cfg_pricing WHERE agreed_on <= (SELECT as_known_at FROM run_params)
) p ON p.contract_id = m.contract_id
   AND p.service_line_id = sl.service_line_id
   AND m.period >= p.effective_from;

CREATE OR REPLACE TEMP TABLE calc_line_months AS
SELECT
    p.contract_id, p.service_line_id, p.period,
    sl.description, sl.unit, sl.indexed, sl.line_order,
    p.effective_from AS pricing_from, p.model, p.itemise_bands,
    c.rounding_mode, c.amount_scale, c.rate_scale, c.currency,
    CASE WHEN sl.indexed THEN f.factor ELSE CAST(1 AS DECIMAL(38, 10)) END AS index_factor,
    coalesce(v.units, 0)::DECIMAL(38, 6) AS units,
    v.forecast_units,
    p.minimum_units,
    p.package_size,
    -- prices in force this month, indexed where the line is
    CASE WHEN sl.indexed THEN round_to(p.package_price * f.factor, c.amount_scale, c.rounding_mode)
         ELSE p.package_price END AS package_price,
    CASE WHEN sl.indexed THEN round_to(p.minimum_charge * f.factor, c.amount_scale, c.rounding_mode)
         ELSE p.minimum_charge END AS minimum_charge,
    CASE WHEN sl.indexed THEN round_to(p.maximum_charge * f.factor, c.amount_scale, c.rounding_mode)
         ELSE p.maximum_charge END AS maximum_charge,
    -- the same prices at the base period, for the line's amount before indexation
    p.package_price AS base_package_price,
    p.minimum_charge AS base_minimum_charge,
    p.maximum_charge AS base_maximum_charge,
    p.surge_over_forecast_pct,
    p.surge_rate AS surge_base_rate,
    CASE WHEN sl.indexed THEN round_to(p.surge_rate * f.factor, c.rate_scale, c.rounding_mode)
         ELSE p.surge_rate END AS surge_rate,
    -- units above forecast x (1 + over_forecast_pct) are billed at the surge rate
    CASE
        WHEN p.surge_rate IS NULL OR v.forecast_units IS NULL THEN NULL
        ELSE v.forecast_units * (1 + p.surge_over_forecast_pct)
    END AS surge_threshold
FROM calc_pricing_in_force p
JOIN cfg_service_lines sl USING (contract_id, service_line_id)
JOIN cfg_contracts c USING (contract_id)
JOIN calc_month_factors f USING (contract_id, period)
LEFT JOIN in_volumes v USING (contract_id, service_line_id, period);

CREATE OR REPLACE TEMP TABLE calc_line_units AS
SELECT
    *,
    greatest(coalesce(units - surge_threshold, 0), 0)::DECIMAL(38, 12) AS surge_units,
    (units - greatest(coalesce(units - surge_threshold, 0), 0))::DECIMAL(38, 12) AS banded_units
FROM calc_line_months;

CREATE OR REPLACE TEMP TABLE calc_bands_in_force AS
SELECT
    l.contract_id, l.service_line_id, l.period, b.band, b.lower_bound, b.up_to,
    b.rate AS base_rate, b.flat_fee AS base_flat_fee,
    CASE WHEN l.indexed THEN round_to(b.rate * l.index_factor, l.rate_scale, l.rounding_mode)
         ELSE b.rate END AS rate,
    CASE WHEN l.indexed THEN round_to(b.flat_fee * l.index_factor, l.amount_scale, l.rounding_mode)
         ELSE b.flat_fee END AS flat_fee
FROM calc_line_units l
JOIN cfg_bands b
  ON b.contract_id = l.contract_id
 AND b.service_line_id = l.service_line_id
 AND b.effective_from = l.pricing_from;

CREATE OR REPLACE TEMP TABLE calc_usage_bands AS
WITH placed AS (
    SELECT
        l.contract_id, l.service_line_id, l.period, l.model, l.banded_units,
        b.band, b.lower_bound, b.up_to, b.base_rate, b.rate, b.base_flat_fee, b.flat_fee,
        -- the band the month's total falls in: (lower, up_to], the first band from zero
        l.banded_units > 0
            AND (l.banded_units > b.lower_bound OR b.band = 1)
            AND (b.up_to IS NULL OR l.banded_units <= b.up_to) AS holds_total,
        greatest(least(l.banded_units, coalesce(b.up_to, l.banded_units)) - b.lower_bound, 0)
            AS units_inside
    FROM calc_line_units l
    JOIN calc_bands_in_force b USING (contract_id, service_line_id, period)
    WHERE l.model <> 'package'
)
SELECT
    contract_id, service_line_id, period, model, band, lower_bound, up_to,
    CASE
        WHEN model IN ('graduated', 'per_unit') THEN units_inside
        ELSE banded_units  -- volume and stairstep: the whole total falls in one band
    END AS units,
    base_rate, rate, base_flat_fee, flat_fee,
    CASE
        WHEN model IN ('graduated', 'per_unit')
            THEN units_inside * rate + CASE WHEN units_inside > 0 THEN flat_fee ELSE 0 END
        WHEN model = 'volume' THEN banded_units * rate + flat_fee
        WHEN model = 'stairstep' THEN flat_fee
    END AS amount_unrounded,
    -- the same band at base-period prices (equal to the above on a line that is not indexed)
    CASE
        WHEN model IN ('graduated', 'per_unit')
            THEN units_inside * base_rate + CASE WHEN units_inside > 0 THEN base_flat_fee ELSE 0 END
        WHEN model = 'volume' THEN banded_units * base_rate + base_flat_fee
        WHEN model = 'stairstep' THEN base_flat_fee
    END AS base_amount_unrounded
FROM placed
WHERE (model IN ('graduated', 'per_unit') AND units_inside > 0)
   OR (model IN ('volume', 'stairstep') AND holds_total);

-- One row per usage invoice line (per band when the line is itemised).
CREATE OR REPLACE TEMP TABLE calc_usage_lines AS
WITH banded AS (
    SELECT
        l.contract_id, l.service_line_id, l.period,
        CASE WHEN l.itemise_bands AND l.model = 'graduated' THEN b.band END AS item_band,
        max(b.band) AS band,
        sum(b.units) AS units,
        CASE WHEN count(*) = 1 THEN any_value(b.base_rate) END AS base_rate,
        CASE WHEN count(*) = 1 THEN any_value(b.rate) END AS rate,
        sum(b.amount_unrounded) AS amount_unrounded,
        sum(b.base_amount_unrounded) AS base_amount_unrounded,
        NULL::DECIMAL(38, 0) AS package_count
    FROM calc_line_units l
    JOIN calc_usage_bands b USING (contract_id, service_line_id, period)
    GROUP BY ALL
),
packaged AS (
    SELECT
        contract_id, service_line_id, period, NULL::INTEGER AS item_band, NULL::INTEGER AS band,
        banded_units AS units, NULL::DECIMAL(38, 10) AS base_rate, package_price AS rate,
        div_round(banded_units, package_size, 0, 'ceiling') * package_price AS amount_unrounded,
        div_round(banded_units, package_size, 0, 'ceiling') * base_package_price
            AS base_amount_unrounded,
        CAST(div_round(banded_units, package_size, 0, 'ceiling') AS DECIMAL(38, 0))
            AS package_count
    FROM calc_line_units
    WHERE model = 'package' AND banded_units > 0
),
running AS (
    -- an itemised line is capped as a whole: its bands fill up to maximum_charge in band order
    SELECT
        u.*, l.maximum_charge, l.base_maximum_charge, l.amount_scale, l.rounding_mode,
        sum(u.amount_unrounded) OVER bands_so_far AS cumulative_unrounded,
        coalesce(
            sum(round_to(u.amount_unrounded, l.amount_scale, l.rounding_mode)) OVER earlier_bands,
            0
        ) AS earlier_rounded,
        sum(u.base_amount_unrounded) OVER bands_so_far AS base_cumulative_unrounded,
        coalesce(
            sum(round_to(u.base_amount_unrounded, l.amount_scale, l.rounding_mode))
                OVER earlier_bands,
            0
        ) AS base_earlier_rounded
    FROM (SELECT * FROM banded UNION ALL SELECT * FROM packaged) u
    JOIN calc_line_units l USING (contract_id, service_line_id, period)
    WINDOW
        bands_so_far AS (PARTITION BY u.contract_id, u.service_line_id, u.period
                         ORDER BY u.item_band ROWS UNBOUNDED PRECEDING),
        earlier_bands AS (PARTITION BY u.contract_id, u.service_line_id, u.period
                          ORDER BY u.item_band
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT
    contract_id, service_line_id, period, item_band, band, units, base_rate, rate,
    amount_unrounded,
    -- maximum_charge caps the usage charge: the band that crosses it takes what is left of the
    -- rounded cap, later bands nothing, so the line's rounded amounts add up to the rounded cap
    CASE
        WHEN maximum_charge IS NULL OR cumulative_unrounded <= maximum_charge
            THEN round_to(amount_unrounded, amount_scale, rounding_mode)
        ELSE greatest(round_to(maximum_charge, amount_scale, rounding_mode) - earlier_rounded, 0)
    END AS amount,
    maximum_charge IS NOT NULL AND cumulative_unrounded > maximum_charge AS capped,
    -- the same line at base-period prices and the base maximum charge, rounded the same way
    CASE
        WHEN base_maximum_charge IS NULL OR base_cumulative_unrounded <= base_maximum_charge
            THEN round_to(base_amount_unrounded, amount_scale, rounding_mode)
        ELSE greatest(
            round_to(base_maximum_charge, amount_scale, rounding_mode) - base_earlier_rounded, 0)
    END AS base_amount,
    package_count
FROM running;

CREATE OR REPLACE TEMP TABLE calc_minimum_lines AS
WITH usage AS (
    SELECT contract_id, service_line_id, period, sum(amount) AS usage_amount,
           sum(base_amount) AS base_usage_amount
    FROM calc_usage_lines GROUP BY ALL
),
first_band AS (
    SELECT contract_id, service_line_id, period, rate, base_rate
    FROM calc_bands_in_force WHERE band = 1
),
shortfall AS (
    SELECT
        l.*,
        coalesce(u.usage_amount, 0) AS usage_amount,
        fb.rate AS first_rate, fb.base_rate AS first_base_rate,
        greatest(coalesce(l.minimum_units - l.units, 0), 0) AS shortfall_units,
        round_to(greatest(coalesce(l.minimum_units - l.units, 0), 0) * coalesce(fb.rate, 0),
                 l.amount_scale, l.rounding_mode) AS shortfall_amount,
        coalesce(u.base_usage_amount, 0) AS base_usage_amount,
        round_to(greatest(coalesce(l.minimum_units - l.units, 0), 0) * coalesce(fb.base_rate, 0),
                 l.amount_scale, l.rounding_mode) AS base_shortfall_amount
    FROM calc_line_units l
    LEFT JOIN usage u USING (contract_id, service_line_id, period)
    LEFT JOIN first_band fb USING (contract_id, service_line_id, period)
)
SELECT
    contract_id, service_line_id, period, minimum_units,
    shortfall_units, first_base_rate, first_rate, shortfall_amount, usage_amount, minimum_charge,
    -- take-or-pay units at the first band's rate, then a top-up to the money floor
    greatest(coalesce(minimum_charge - usage_amount - shortfall_amount, 0), 0) AS top_up_amount,
    shortfall_amount
        + greatest(coalesce(minimum_charge - usage_amount - shortfall_amount, 0), 0) AS amount,
    -- the same at base-period prices and the base minimum charge
    base_shortfall_amount
        + greatest(coalesce(base_minimum_charge - base_usage_amount - base_shortfall_amount, 0), 0)
        AS base_amount
FROM shortfall
WHERE shortfall_units > 0 OR (minimum_charge IS NOT NULL AND usage_amount < minimum_charge);

CREATE OR REPLACE TEMP TABLE calc_fixed_fee_lines AS
SELECT
    m.contract_id, m.period, f.fee_id, f.description, f.fee_order, f.indexed,
    f.amount AS base_fee,
    CASE WHEN f.indexed THEN mf.factor ELSE CAST(1 AS DECIMAL(38, 10)) END AS index_factor,
    round_to(f.amount * CASE WHEN f.indexed THEN mf.factor ELSE 1 END,
             c.amount_scale, c.rounding_mode) AS amount,
    round_to(f.amount, c.amount_scale, c.rounding_mode) AS base_amount
FROM calc_months m
JOIN cfg_contracts c USING (contract_id)
JOIN calc_month_factors mf USING (contract_id, period)
JOIN (SELECT DISTINCT contract_id, fee_id FROM cfg_fixed_fees) ids USING (contract_id)
ASOF JOIN (
    SELECT * FROM cfg_fixed_fees WHERE agreed_on <= (SELECT as_known_at FROM run_params)
) f ON f.contract_id = m.contract_id AND f.fee_id = ids.fee_id AND m.period >= f.effective_from;

-- The branches are unioned by name (a column only some branches have is NULL in the others), and
-- every decimal a branch gives is cast to its one type there: DuckDB would otherwise give a UNION
-- column the smallest scale among its branches and round the finer values silently.
-- base_amount is the line at base-period prices (factor 1), rounded the same way, so
-- indexation_effect = amount - base_amount is what indexation adds to the line, exactly.
CREATE OR REPLACE TEMP TABLE calc_charge_lines AS
WITH lines AS (
    SELECT
        u.contract_id, u.period,
        'usage:' || u.service_line_id || coalesce(':band' || u.item_band, '') AS line_key,
        u.service_line_id, 'usage' AS charge_type, u.band,
        CAST(u.units AS DECIMAL(38, 12)) AS units, CAST(u.base_rate AS DECIMAL(38, 10)) AS base_rate,
        CAST(u.rate AS DECIMAL(38, 10)) AS rate,
        CAST(u.amount_unrounded AS DECIMAL(38, 16)) AS amount_unrounded,
        CAST(u.amount AS DECIMAL(38, 10)) AS amount,
        CAST(u.base_amount AS DECIMAL(38, 10)) AS base_amount, u.capped,
        u.package_count,
        l.description || coalesce(' band ' || u.item_band, '') AS description,
        line_sort_order('usage', l.line_order) AS sort_order
    FROM calc_usage_lines u
    JOIN calc_line_units l USING (contract_id, service_line_id, period)
    UNION ALL BY NAME
    SELECT
        contract_id, period, 'surge:' || service_line_id AS line_key, service_line_id,
        'surge' AS charge_type, CAST(surge_units AS DECIMAL(38, 12)) AS units,
        CAST(surge_base_rate AS DECIMAL(38, 10)) AS base_rate,
        CAST(surge_rate AS DECIMAL(38, 10)) AS rate,
        CAST(surge_units * surge_rate AS DECIMAL(38, 16)) AS amount_unrounded,
        CAST(round_to(surge_units * surge_rate, amount_scale, rounding_mode) AS DECIMAL(38, 10))
            AS amount,
        CAST(round_to(surge_units * surge_base_rate, amount_scale, rounding_mode)
             AS DECIMAL(38, 10)) AS base_amount,
        false AS capped,
        description || ' surge above forecast' AS description,
        line_sort_order('surge', line_order) AS sort_order
    FROM calc_line_units
    WHERE surge_units > 0
    UNION ALL BY NAME
    SELECT
        mn.contract_id, mn.period, 'minimum:' || mn.service_line_id AS line_key,
        mn.service_line_id, 'minimum' AS charge_type, 1 AS band,
        CAST(mn.shortfall_units AS DECIMAL(38, 12)) AS units,
        CAST(mn.first_base_rate AS DECIMAL(38, 10)) AS base_rate,
        CAST(mn.first_rate AS DECIMAL(38, 10)) AS rate,
        CAST(mn.amount AS DECIMAL(38, 16)) AS amount_unrounded,
        CAST(mn.amount AS DECIMAL(38, 10)) AS amount,
        CAST(mn.base_amount AS DECIMAL(38, 10)) AS base_amount, false AS capped,
        mn.usage_amount, mn.shortfall_amount, mn.top_up_amount,
        l.description || ' minimum commitment' AS description,
        line_sort_order('minimum', l.line_order) AS sort_order
    FROM calc_minimum_lines mn
    JOIN calc_line_units l USING (contract_id, service_line_id, period)
    UNION ALL BY NAME
    SELECT
        contract_id, period, 'fixed:' || fee_id AS line_key, fee_id, 'fixed_fee' AS charge_type,
        CAST(base_fee AS DECIMAL(38, 10)) AS base_rate,
        CAST(base_fee * index_factor AS DECIMAL(38, 16)) AS amount_unrounded,
        CAST(amount AS DECIMAL(38, 10)) AS amount,
        CAST(base_amount AS DECIMAL(38, 10)) AS base_amount, false AS capped,
        description, line_sort_order('fixed_fee', fee_order) AS sort_order
    FROM calc_fixed_fee_lines
)
SELECT
    x.contract_id, x.period, x.line_key, x.service_line_id, CAST(x.fee_id AS VARCHAR) AS fee_id,
    x.charge_type, CAST(x.band AS INTEGER) AS band,
    l.model AS pricing_model, l.pricing_from,
    coalesce(l.indexed, f.indexed) AS indexed,
    CAST(x.units AS DECIMAL(38, 12)) AS units,
    -- the month's units of the service line, and those left in the bands below the surge threshold
    CAST(l.units AS DECIMAL(38, 12)) AS line_units,
    CAST(l.banded_units AS DECIMAL(38, 12)) AS banded_units,
    CAST(l.forecast_units AS DECIMAL(38, 6)) AS forecast_units,
    CAST(l.surge_over_forecast_pct AS DECIMAL(38, 8)) AS surge_over_forecast_pct,
    CAST(l.surge_threshold AS DECIMAL(38, 12)) AS surge_threshold,
    CAST(x.base_rate AS DECIMAL(38, 10)) AS base_rate,
    coalesce(l.index_factor, f.index_factor) AS index_factor,
    CAST(x.rate AS DECIMAL(38, 10)) AS rate,
    -- package lines: the packages billed (units over the package size, rounded up)
    CAST(CASE WHEN x.charge_type = 'usage' THEN l.package_size END AS DECIMAL(38, 6))
        AS package_size,
    CAST(x.package_count AS DECIMAL(38, 0)) AS package_count,
    CAST(CASE WHEN x.charge_type = 'usage' THEN l.base_package_price END AS DECIMAL(38, 6))
        AS base_package_price,
    -- minimum lines: the terms and the split of the line into shortfall and top-up (amounts are
    -- rounded to amount_scale, at most 4 places: DECIMAL(38, 4) holds them exactly)
    CAST(CASE WHEN x.charge_type = 'minimum' THEN l.minimum_units END AS DECIMAL(38, 6))
        AS minimum_units,
    CAST(CASE WHEN x.charge_type = 'minimum' THEN l.minimum_charge END AS DECIMAL(38, 6))
        AS minimum_charge,
    CAST(x.usage_amount AS DECIMAL(38, 4)) AS usage_amount,
    CAST(x.shortfall_amount AS DECIMAL(38, 4)) AS shortfall_amount,
    CAST(x.top_up_amount AS DECIMAL(38, 4)) AS top_up_amount,
    CAST(x.amount_unrounded AS DECIMAL(38, 16)) AS amount_unrounded,
    CAST(x.amount AS DECIMAL(38, 10)) AS amount,
    CAST(x.base_amount AS DECIMAL(38, 4)) AS base_amount,
    CAST(x.amount - x.base_amount AS DECIMAL(38, 4)) AS indexation_effect,
    x.capped, c.rounding_mode, c.amount_scale, c.rate_scale,
    x.description, x.sort_order
FROM lines x
JOIN cfg_contracts c USING (contract_id)
LEFT JOIN calc_line_units l
  ON l.contract_id = x.contract_id AND l.service_line_id = x.service_line_id
 AND l.period = x.period
LEFT JOIN calc_fixed_fee_lines f
  ON f.contract_id = x.contract_id AND f.fee_id = x.fee_id AND f.period = x.period;
