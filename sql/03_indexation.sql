-- Grain of calc_index_factors: one row per contract, review month and index of its basket.
-- Grain of calc_month_factors: one row per contract and month: the factor in force.
--
-- SPEC 4. At review n (first_review + n x review_every_months) the reference month is
-- review - lag_months. chained: each index's change against the previous reference month is
-- clamped to [floor, cap] and the factor compounds: factor_n = round(factor_(n-1) x
-- (1 + sum(weight x change)), factor_scale). base_relative (FIDIC 13.8): factor_n =
-- round((1 - sum(weight)) + sum(weight x I(ref) / I(base_period)), factor_scale), held within
-- [factor_(n-1) x (1 + floor), factor_(n-1) x (1 + cap)] and rounded again. Ratios are exact
-- quotients rounded to 10 places (div_round).

CREATE OR REPLACE TEMP TABLE calc_reviews AS
WITH last_month AS (
    SELECT contract_id, max(period) AS last_period FROM calc_months GROUP BY contract_id
)
SELECT
    i.contract_id,
    r.n,
    (i.first_review + to_months(CAST(r.n * i.review_every_months AS INTEGER)))::DATE AS review_period,
    (i.first_review + to_months(CAST(r.n * i.review_every_months - i.lag_months AS INTEGER)))::DATE
        AS reference_period,
    CASE
        WHEN i.method = 'base_relative' OR r.n = 0 THEN i.base_period
        ELSE (i.first_review
              + to_months(CAST((r.n - 1) * i.review_every_months - i.lag_months AS INTEGER)))::DATE
    END AS previous_reference_period,
    i.method, i.cap, i.floor, i.factor_scale, c.rounding_mode
FROM cfg_indexation i
JOIN last_month l USING (contract_id)
JOIN cfg_contracts c USING (contract_id)
CROSS JOIN LATERAL (
    SELECT unnest(range(0, months_between(i.first_review, l.last_period) // i.review_every_months + 1)) AS n
) r
WHERE i.first_review <= l.last_period;

CREATE OR REPLACE TEMP TABLE calc_index_changes AS
SELECT
    r.contract_id, r.n, r.review_period, w.index_id, w.weight,
    r.reference_period, ref.value AS reference_value,
    r.previous_reference_period, prev.value AS previous_reference_value,
    div_round(ref.value, prev.value, 10, 'half_up') - 1 AS raw_change,
    CASE
        WHEN r.method = 'base_relative' THEN div_round(ref.value, prev.value, 10, 'half_up') - 1
        ELSE least(
            greatest(div_round(ref.value, prev.value, 10, 'half_up') - 1, change_floor(r.floor)),
            change_cap(r.cap)
        )
    END AS applied_change,
    -- which bound held a chained change (NULL: the raw change applied as it was)
    CASE
        WHEN r.method = 'base_relative' THEN NULL
        WHEN div_round(ref.value, prev.value, 10, 'half_up') - 1 > change_cap(r.cap) THEN 'cap'
        WHEN div_round(ref.value, prev.value, 10, 'half_up') - 1 < change_floor(r.floor) THEN 'floor'
    END AS change_clamped_to
FROM calc_reviews r
JOIN cfg_index_weights w USING (contract_id)
JOIN in_index_values ref ON ref.index_id = w.index_id AND ref.period = r.reference_period
JOIN in_index_values prev ON prev.index_id = w.index_id AND prev.period = r.previous_reference_period;

CREATE OR REPLACE TEMP TABLE calc_review_steps AS
WITH weighted AS (
    SELECT
        contract_id, n,
        sum(weight) AS total_weight,
        sum(weight * applied_change) AS weighted_change,
        sum(weight * (1 + applied_change)) AS weighted_ratio
    FROM calc_index_changes
    GROUP BY contract_id, n
)
SELECT
    r.contract_id, r.n, r.review_period, r.method, r.cap, r.floor, r.factor_scale,
    r.rounding_mode,
    -- chained: 1 + sum(weight x clamped change); base_relative: the unheld FIDIC factor.
    -- weight (6 places) x change (10) has 16 places: uncast, the CASE takes round_to's 10 and
    -- the chained step is rounded before its one rounding to factor_scale.
    CASE
        WHEN r.method = 'base_relative' THEN CAST(round_to(
            (1 - w.total_weight) + w.weighted_ratio, r.factor_scale, r.rounding_mode)
            AS DECIMAL(38, 16))
        ELSE CAST(1 + w.weighted_change AS DECIMAL(38, 16))
    END AS step
FROM calc_reviews r
JOIN weighted w USING (contract_id, n);

CREATE OR REPLACE TEMP TABLE calc_review_factors AS
WITH RECURSIVE chain(contract_id, n, previous_factor, factor, factor_held_at) AS (
    SELECT contract_id, n, CAST(1 AS DECIMAL(38, 10)),
        CAST(CASE
            WHEN method = 'base_relative' THEN round_to(
                least(greatest(step, 1 + change_floor(floor)), 1 + change_cap(cap)),
                factor_scale, rounding_mode)
            ELSE round_to(step, factor_scale, rounding_mode)
        END AS DECIMAL(38, 10)),
        -- base_relative: the bound from the previous factor that held the step (NULL: none)
        CASE
            WHEN method <> 'base_relative' THEN NULL
            WHEN step > 1 + change_cap(cap) THEN 'cap'
            WHEN step < 1 + change_floor(floor) THEN 'floor'
        END
    FROM calc_review_steps WHERE n = 0
    UNION ALL
    SELECT s.contract_id, s.n, c.factor,
        CAST(CASE
            WHEN s.method = 'base_relative' THEN round_to(
                least(
                    greatest(s.step, c.factor * (1 + change_floor(s.floor))),
                    c.factor * (1 + change_cap(s.cap))),
                s.factor_scale, s.rounding_mode)
            ELSE round_to(c.factor * s.step, s.factor_scale, s.rounding_mode)
        END AS DECIMAL(38, 10)),
        CASE
            WHEN s.method <> 'base_relative' THEN NULL
            WHEN s.step > c.factor * (1 + change_cap(s.cap)) THEN 'cap'
            WHEN s.step < c.factor * (1 + change_floor(s.floor)) THEN 'floor'
        END
    FROM chain c
    JOIN calc_review_steps s ON s.contract_id = c.contract_id AND s.n = c.n + 1
)
SELECT ch.*, s.review_period, s.step
FROM chain ch JOIN calc_review_steps s USING (contract_id, n);

CREATE OR REPLACE TEMP TABLE calc_index_factors AS
SELECT
    ch.contract_id, ch.review_period AS period, ch.index_id, ch.weight,
    ch.reference_period, ch.reference_value,
    ch.previous_reference_period, ch.previous_reference_value,
    ch.raw_change, ch.applied_change, ch.change_clamped_to,
    f.previous_factor,
    -- before rounding (chained) or before the hold within floor and cap (base_relative)
    -- previous factor (10 places) x step (16): exact at 26 places, each branch cast to them
    CASE
        WHEN s.method = 'base_relative' THEN CAST(f.step AS DECIMAL(38, 26))
        ELSE CAST(f.previous_factor * f.step AS DECIMAL(38, 26))
    END AS unrounded_factor,
    f.factor, f.factor_held_at,
    s.method, s.cap, s.floor, s.factor_scale, s.rounding_mode
FROM calc_index_changes ch
JOIN calc_review_factors f USING (contract_id, n)
JOIN calc_review_steps s USING (contract_id, n);

CREATE OR REPLACE TEMP TABLE calc_month_factors AS
SELECT
    m.contract_id, m.period,
    coalesce(f.factor, CAST(1 AS DECIMAL(38, 10))) AS factor,
    f.review_period
FROM calc_months m
ASOF LEFT JOIN calc_review_factors f
    ON f.contract_id = m.contract_id AND m.period >= f.review_period;
