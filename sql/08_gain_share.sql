-- Gain-share (SPEC 5). Grains:
--   calc_gain_share_months  one row per gain-share contract and month of its history: the scope's
--                           units and charges, the baseline and factor in force, the month's
--                           baseline cost, actual cost and savings (the auditor's detail)
--   calc_gain_share         one row per contract and settled window (calendar month, quarter or
--                           year aligned to January): savings, threshold, tiers, cap, gates, amount
--   calc_gain_share_lines   one invoice line `gain_share` per window whose amount is not zero,
--                           billed on the window's last month in the term
--
-- The rule: V = units of the scope lines; C = their charges before credits (usage, minimum, surge;
-- a fixed fee only if it is itself in scope); B = sum of baseline_m x V_m (x the month's factor
-- when baseline_indexed) for unit_cost, sum of baseline_m (x the factor likewise) for total_cost;
-- S = B - C. For volume, S = sum of (baseline_m - units_m) x value_per_unit, B = sum of baseline_m
-- x value_per_unit and C = units x value_per_unit. If |S| < threshold_pct x B nothing is shared
-- (at exactly the threshold it is). Otherwise the provider gets the marginal tiered share of |S|
-- (pain tiers for an overrun), + for a gain, - for an overrun only when pain_share, capped in
-- absolute value at `cap`, and a gain is zeroed when a gate KPI failed in any month of the window.
-- The amount is rounded once, at the line, with the contract's rounding.
--
-- Window dates are month starts like every `period`: Q2 2025 is window_start 2025-04-01 and
-- window_end 2025-06-01. A window is settled once its last month in the term (billed_period: the
-- window end, or the contract end when that comes first) is in calc_months; months before the
-- contract start are not part of it.
--
-- Round once: nothing is divided and nothing is cut before the line. A product's scale is the sum
-- of its operands' (baseline 6 + units 6 + factor at most 10 = 22), so each month's baseline
-- cost, actual cost and savings are exact as DECIMAL(38, 22) (16 integer digits). Times
-- threshold_pct or a tier share (6 more places) a window's figures would leave DECIMAL(38, 28)
-- only 10 integer digits, so those products are taken in integers instead: the window's figures
-- as counts of 10^-22 (to_units22) times the 6-place share, held as a floor and a remainder
-- (muldiv_floor / muldiv_rem). The threshold and the cap compare them exactly, and the provider
-- amount is rounded once from them (round_floor_rem) with the contract's mode and scale.

-- Numbers for descriptions: x as text with thousands separators (when sep), its fraction cut to
-- max_dp places (callers round first) and trailing zeros dropped down to min_dp places. Built from
-- the decimal's own text, so no float ever formats a money amount.
CREATE OR REPLACE TEMP MACRO gain_share_fraction(x, max_dp) AS
    rtrim(left(split_part(CAST(abs(x) AS VARCHAR), '.', 2), max_dp), '0');

CREATE OR REPLACE TEMP MACRO gain_share_fmt(x, min_dp, max_dp, sep) AS
    CASE WHEN x < 0 THEN '-' ELSE '' END
    || CASE
        WHEN sep THEN format('{:,}', CAST(split_part(CAST(abs(x) AS VARCHAR), '.', 1) AS HUGEINT))
        ELSE split_part(CAST(abs(x) AS VARCHAR), '.', 1)
    END
    || CASE
        WHEN greatest(length(gain_share_fraction(x, max_dp)), min_dp) = 0 THEN ''
        ELSE '.' || rpad(
            gain_share_fraction(x, max_dp),
            CAST(greatest(length(gain_share_fraction(x, max_dp)), min_dp) AS INTEGER),
            '0'
        )
    END;

CREATE OR REPLACE TEMP TABLE calc_gain_share_months AS
WITH terms AS (
    SELECT
        g.*,
        c.end_period, c.rounding_mode, c.amount_scale,
        -- the scope's unit for descriptions ('contact'); a mixed scope has no single unit
        (SELECT CASE WHEN count(DISTINCT sl.unit) = 1 THEN any_value(sl.unit) END
         FROM cfg_gain_scope s
         JOIN cfg_service_lines sl
           ON sl.contract_id = s.contract_id AND sl.service_line_id = s.item_id
         WHERE s.contract_id = g.contract_id) AS scope_unit
    FROM cfg_gain_share g
    JOIN cfg_contracts c USING (contract_id)
),
month_windows AS (
    SELECT
        m.contract_id, m.period, t.*,
        CASE t.settle_every
            WHEN 'month' THEN m.period
            WHEN 'quarter' THEN make_date(year(m.period), (month(m.period) - 1) // 3 * 3 + 1, 1)
            ELSE make_date(year(m.period), 1, 1)
        END AS window_start,
        CASE t.settle_every WHEN 'month' THEN 1 WHEN 'quarter' THEN 3 ELSE 12 END AS window_months,
        max(m.period) OVER (PARTITION BY m.contract_id) AS last_month
    FROM calc_months m
    JOIN terms t USING (contract_id)
),
window_ends AS (
    SELECT
        * EXCLUDE (window_months),
        (window_start + to_months(window_months - 1))::DATE AS window_end
    FROM month_windows
),
windows AS (
    SELECT
        * EXCLUDE (last_month),
        -- the window's last month in the term carries its line
        least(window_end, coalesce(end_period, window_end)) AS billed_period,
        -- calc_months runs without gaps from the contract start, so a window whose billed month
        -- is here has all of its months in the term here too
        least(window_end, coalesce(end_period, window_end)) <= last_month AS window_settled
    FROM window_ends
),
scope_units AS (
    -- calc_line_months has one row per service line and month with its total units, however the
    -- line is itemised on the invoice
    SELECT l.contract_id, l.period, sum(l.units) AS units
    FROM calc_line_months l
    JOIN cfg_gain_scope s ON s.contract_id = l.contract_id AND s.item_id = l.service_line_id
    GROUP BY ALL
),
scope_charges AS (
    -- charges before credits: a service line's usage, minimum, surge and true-up lines (a true-up
    -- is a minimum over a longer window), and a fixed fee's line only when the fee itself is in
    -- scope; the charge types are listed so that no other kind of line can slip into the cost
    SELECT cl.contract_id, cl.period, sum(cl.amount) AS charges
    FROM calc_charge_lines cl
    JOIN cfg_gain_scope s
      ON s.contract_id = cl.contract_id
     AND s.item_id = coalesce(cl.service_line_id, cl.fee_id)
    WHERE (cl.charge_type IN ('usage', 'minimum', 'surge', 'true_up')
           AND cl.service_line_id IS NOT NULL)
       OR (cl.charge_type = 'fixed_fee' AND cl.fee_id IS NOT NULL)
    GROUP BY ALL
),
known_baselines AS (
    -- a rebasing counts only once agreed, so `--as-known-at` rebuilds a window as it was known
    SELECT * FROM cfg_baselines WHERE agreed_on <= (SELECT as_known_at FROM run_params)
),
with_baseline AS (
    SELECT
        w.*,
        coalesce(u.units, 0)::DECIMAL(38, 6) AS units,
        coalesce(ch.charges, 0)::DECIMAL(38, 10) AS charges,
        b.effective_from AS baseline_from,
        b.agreed_on AS baseline_agreed_on,
        coalesce(b.reason, 'baseline from ' || strftime(b.effective_from, '%Y-%m'))
            AS baseline_reason,
        b.value AS baseline,
        f.factor AS index_factor,
        -- a volume baseline is a count of units, which indexation does not move
        CASE WHEN w.baseline_indexed AND w.measure <> 'volume' THEN f.factor
             ELSE CAST(1 AS DECIMAL(38, 10)) END AS baseline_factor
    FROM windows w
    JOIN calc_month_factors f USING (contract_id, period)
    LEFT JOIN scope_units u USING (contract_id, period)
    LEFT JOIN scope_charges ch USING (contract_id, period)
    ASOF LEFT JOIN known_baselines b
      ON b.contract_id = w.contract_id AND w.period >= b.effective_from
)
SELECT
    contract_id, period, window_start, window_end, billed_period, window_settled,
    measure, settle_every, baseline_indexed, value_per_unit, scope_unit,
    rounding_mode, amount_scale,
    units, charges,
    baseline, baseline_from, baseline_agreed_on, baseline_reason,
    index_factor, baseline_factor,
    -- exact at 22 places (see the header); each branch is cast on its own, since a CASE over
    -- DECIMALs of different scales silently takes the narrower one
    CASE measure
        WHEN 'unit_cost'
            THEN CAST(CAST(baseline * units AS DECIMAL(38, 12)) * baseline_factor AS DECIMAL(38, 22))
        WHEN 'total_cost' THEN CAST(baseline * baseline_factor AS DECIMAL(38, 22))
        ELSE CAST(baseline * value_per_unit AS DECIMAL(38, 22))
    END AS baseline_cost,
    CASE measure
        WHEN 'volume' THEN CAST(units * value_per_unit AS DECIMAL(38, 22))
        ELSE CAST(charges AS DECIMAL(38, 22))
    END AS actual_cost,
    CASE measure
        WHEN 'unit_cost' THEN CAST(
            CAST(baseline * units AS DECIMAL(38, 12)) * baseline_factor AS DECIMAL(38, 22))
            - CAST(charges AS DECIMAL(38, 22))
        WHEN 'total_cost'
            THEN CAST(baseline * baseline_factor AS DECIMAL(38, 22)) - CAST(charges AS DECIMAL(38, 22))
        ELSE CAST((baseline - units) * value_per_unit AS DECIMAL(38, 22))
    END AS savings
FROM with_baseline
ORDER BY contract_id, period;

CREATE OR REPLACE TEMP TABLE calc_gain_share AS
WITH window_totals AS (
    SELECT
        contract_id, window_start,
        any_value(window_end) AS window_end,
        any_value(billed_period) AS billed_period,
        any_value(measure) AS measure,
        any_value(settle_every) AS settle_every,
        any_value(value_per_unit) AS value_per_unit,
        any_value(scope_unit) AS scope_unit,
        any_value(baseline_indexed) AS baseline_indexed,
        any_value(rounding_mode) AS rounding_mode,
        any_value(amount_scale) AS amount_scale,
        min(period) AS first_period,
        count(*)::INTEGER AS months,
        -- a month with no baseline agreed yet cannot be measured, so neither can its window
        bool_and(baseline IS NOT NULL) AS has_baseline,
        sum(units) AS volume,
        CASE WHEN bool_and(baseline IS NOT NULL) THEN sum(baseline_cost) END AS baseline_cost,
        sum(actual_cost) AS actual_cost,
        CASE WHEN bool_and(baseline IS NOT NULL) THEN sum(savings) END AS savings
    FROM calc_gain_share_months
    WHERE window_settled
    GROUP BY contract_id, window_start
),
baselines_used AS (
    SELECT
        contract_id, window_start,
        string_agg(baseline_reason, '; ' ORDER BY baseline_from) AS baseline_reason,
        string_agg(
            gain_share_fmt(baseline, CASE WHEN measure = 'volume' THEN 0 ELSE 2 END, 6, true),
            ' then ' ORDER BY baseline_from
        ) AS baseline_values
    FROM (
        SELECT DISTINCT contract_id, window_start, measure, baseline_from, baseline_reason, baseline
        FROM calc_gain_share_months
        WHERE window_settled AND baseline IS NOT NULL
    )
    GROUP BY ALL
),
gate_failures AS (
    -- a failure in any month of the window, excused months being neither met nor failed
    SELECT
        m.contract_id, m.window_start,
        string_agg(k.kpi_id || ' ' || strftime(k.period, '%Y-%m'), ', ' ORDER BY k.period, k.kpi_id)
            AS gate_failures
    FROM calc_gain_share_months m
    JOIN cfg_gain_gates g USING (contract_id)
    JOIN calc_kpi_results k
      ON k.contract_id = m.contract_id AND k.kpi_id = g.kpi_id AND k.period = m.period
    WHERE m.window_settled AND k.status = 'failed'
    GROUP BY ALL
),
thresholds AS (
    SELECT
        w.*,
        g.threshold_pct, g.pain_share, g.cap,
        -- threshold_pct x B exactly, in units of 10^-22: a floor and a remainder in millionths
        muldiv_floor(to_units22(w.baseline_cost), to_units6(g.threshold_pct), pow10(6))
            AS threshold_units,
        muldiv_rem(to_units22(w.baseline_cost), to_units6(g.threshold_pct), pow10(6))
            AS threshold_rem,
        -- the cliff: strictly below the threshold nothing is shared, at the threshold all of it
        -- is; |S| < floor + rem / 10^6 exactly when |S| < floor, or |S| = floor and rem > 0
        w.has_baseline AND (
            abs(to_units22(w.savings))
                < muldiv_floor(to_units22(w.baseline_cost), to_units6(g.threshold_pct), pow10(6))
            OR (abs(to_units22(w.savings))
                    = muldiv_floor(to_units22(w.baseline_cost), to_units6(g.threshold_pct),
                                   pow10(6))
                AND muldiv_rem(to_units22(w.baseline_cost), to_units6(g.threshold_pct),
                               pow10(6)) > 0)
        ) AS below_threshold,
        CASE WHEN w.savings >= 0 THEN 'gain' WHEN w.savings < 0 THEN 'pain' END AS kind
    FROM window_totals w
    JOIN cfg_gain_share g USING (contract_id)
),
tier_parts AS (
    -- the part of |S| inside each tier (lower_bound, up_to]: tiers are marginal, like bands
    SELECT
        t.contract_id, t.window_start, tr.tier, tr.provider_share,
        -- every operand cast to one type: least / greatest take the narrower decimal scale
        greatest(
            least(abs(t.savings), coalesce(CAST(tr.up_to AS DECIMAL(38, 22)), abs(t.savings)))
                - CAST(tr.lower_bound AS DECIMAL(38, 22)),
            CAST(0 AS DECIMAL(38, 22))
        ) AS part,
        t.rounding_mode, t.amount_scale
    FROM thresholds t
    JOIN cfg_gain_tiers tr ON tr.contract_id = t.contract_id AND tr.kind = t.kind
    WHERE t.has_baseline AND NOT t.below_threshold
),
tiered AS (
    SELECT
        contract_id, window_start,
        -- sum of provider_share x part exactly: floors in units of 10^-22, remainders in
        -- millionths of that unit
        sum(muldiv_floor(to_units22(part), to_units6(provider_share), pow10(6))) AS tiered_floor,
        sum(muldiv_rem(to_units22(part), to_units6(provider_share), pow10(6))) AS tiered_rem,
        string_agg(
            gain_share_fmt(
                round_to(part, amount_scale, rounding_mode), amount_scale, amount_scale, true
            ) || ' x ' || gain_share_fmt(provider_share, 2, 6, false),
            ' + ' ORDER BY tier
        ) AS tiers_applied
    FROM tier_parts
    WHERE part > 0
    GROUP BY ALL
),
exact_tiers AS (
    -- the tiered share of |S| as floor + rem / 10^6 units of 10^-22, the remainders carried
    SELECT
        contract_id, window_start, tiers_applied,
        tiered_floor + tiered_rem // pow10(6) AS tiered_floor,
        tiered_rem % pow10(6) AS tiered_rem
    FROM tiered
),
signed AS (
    SELECT
        t.*,
        coalesce(x.tiered_floor, 0) AS tiered_floor,
        coalesce(x.tiered_rem, 0) AS tiered_rem,
        x.tiers_applied,
        f.gate_failures IS NOT NULL AS gate_failed,
        f.gate_failures,
        b.baseline_reason, b.baseline_values,
        -- the sign of the provider amount: + a gain, - an overrun (credited only when the contract
        -- shares pain), 0 when nothing is shared
        CASE
            WHEN t.kind = 'gain' THEN 1
            WHEN t.pain_share THEN -1
            ELSE 0
        END AS shared_sign,
        CASE WHEN t.kind = 'gain' THEN 1 ELSE -1 END AS tiered_sign
    FROM thresholds t
    LEFT JOIN exact_tiers x USING (contract_id, window_start)
    LEFT JOIN gate_failures f USING (contract_id, window_start)
    LEFT JOIN baselines_used b USING (contract_id, window_start)
),
capped AS (
    -- the cap is on the absolute amount: above it when the floor passes it, or equals it with a
    -- remainder left
    SELECT
        *,
        cap IS NOT NULL AND shared_sign <> 0 AND (
            tiered_floor > to_units22(cap) OR (tiered_floor = to_units22(cap) AND tiered_rem > 0)
        ) AS capped
    FROM signed
),
gated AS (
    -- a failed gate withholds a gain only: an overrun is credited to the client regardless
    SELECT
        *,
        gate_failed AND shared_sign > 0 AND (tiered_floor > 0 OR tiered_rem > 0) AS gated,
        -- the sign of what is billed after the gate
        CASE WHEN gate_failed AND shared_sign > 0 THEN 0 ELSE shared_sign END AS final_sign
    FROM capped
),
labelled AS (
    SELECT
        *,
        CASE settle_every
            WHEN 'month' THEN strftime(window_start, '%b %Y')
            WHEN 'quarter' THEN 'Q' || quarter(window_start) || ' ' || year(window_start)
            ELSE CAST(year(window_start) AS VARCHAR)
        END AS window_label,
        coalesce(CASE scope_unit WHEN 'fte' THEN 'FTE' ELSE scope_unit END, 'unit') AS unit_label
    FROM gated
)
SELECT
    contract_id, window_start, window_end, billed_period,
    first_period, months, settle_every, measure,
    CAST(volume AS DECIMAL(38, 6)) AS volume,
    value_per_unit,
    CAST(baseline_cost AS DECIMAL(38, 22)) AS baseline_cost,
    CAST(actual_cost AS DECIMAL(38, 22)) AS actual_cost,
    CAST(savings AS DECIMAL(38, 22)) AS savings,
    CAST(threshold_pct AS DECIMAL(38, 6)) AS threshold_pct,
    -- for the reader, rounded to 18 places (the cliff above compares the exact figure)
    from_units18(round_floor_rem(threshold_units, threshold_rem, pow10(6), pow10(4), 'half_up', true))
        AS threshold_amount,
    coalesce(below_threshold, false) AS below_threshold,
    kind,
    -- for the reader, rounded to 18 places: the amounts below are rounded once from the exact
    -- floor and remainder
    tiered_sign * from_units18(
        round_floor_rem(tiered_floor, tiered_rem, pow10(6), pow10(4), 'half_up', true)
    ) AS tiered_amount,
    tiers_applied,
    pain_share,
    CAST(cap AS DECIMAL(38, 6)) AS cap,
    capped,
    gate_failed,
    gate_failures,
    gated,
    CASE
        WHEN capped THEN final_sign * CAST(cap AS DECIMAL(38, 18))
        ELSE final_sign * from_units18(
            round_floor_rem(tiered_floor, tiered_rem, pow10(6), pow10(4), 'half_up', true))
    END AS provider_amount_unrounded,
    -- rounded once, at the line: the cap (6 places) or the exact tiered share
    CASE
        WHEN capped THEN final_sign * round_to(cap, amount_scale, rounding_mode)
        ELSE final_sign * from_units(
            round_floor_rem(tiered_floor, tiered_rem, pow10(6), pow10(22 - amount_scale),
                            rounding_mode, final_sign > 0),
            amount_scale)
    END AS provider_amount,
    CASE
        WHEN NOT has_baseline THEN 'no_baseline'
        WHEN below_threshold THEN 'below_threshold'
        WHEN gated THEN 'gated'
        WHEN kind = 'pain' AND NOT pain_share THEN 'pain_not_shared'
        ELSE kind
    END AS outcome,
    baseline_reason,
    -- the invoice text: the window, the savings (or overrun) and the baseline it was measured on
    CASE
        WHEN NOT has_baseline THEN 'Gain-share ' || window_label || ': no baseline agreed for '
            || 'every month of the window'
        ELSE 'Gain-share ' || window_label || ': '
            || CASE WHEN kind = 'pain' THEN 'overrun ' ELSE 'savings ' END
            || gain_share_fmt(
                round_to(abs(savings), amount_scale, rounding_mode),
                amount_scale, amount_scale, true
            )
            || ' on baseline ' || baseline_values
            || CASE measure
                WHEN 'unit_cost' THEN '/' || unit_label
                WHEN 'total_cost' THEN '/month'
                ELSE ' ' || unit_label || 's/month at '
                    || gain_share_fmt(value_per_unit, 2, 6, true) || '/' || unit_label
            END
            || CASE WHEN baseline_indexed AND measure <> 'volume' THEN ' (indexed)' ELSE '' END
            || CASE
                WHEN capped THEN ', share capped at '
                    || gain_share_fmt(cap, amount_scale, amount_scale, true)
                ELSE ''
            END
    END AS description,
    -- the exact figures as a reader prints them: rounded with the contract's own terms (the
    -- threshold and tiered share from their 18-place figures above)
    amount_scale,
    CAST(round_to(baseline_cost, amount_scale, rounding_mode) AS DECIMAL(38, 4))
        AS baseline_cost_rounded,
    CAST(round_to(actual_cost, amount_scale, rounding_mode) AS DECIMAL(38, 4))
        AS actual_cost_rounded,
    CAST(round_to(savings, amount_scale, rounding_mode) AS DECIMAL(38, 4)) AS savings_rounded,
    CAST(round_to(
        from_units18(round_floor_rem(threshold_units, threshold_rem, pow10(6), pow10(4), 'half_up', true)),
        amount_scale, rounding_mode) AS DECIMAL(38, 4)) AS threshold_rounded,
    CAST(round_to(tiered_sign * from_units18(
        round_floor_rem(tiered_floor, tiered_rem, pow10(6), pow10(4), 'half_up', true)),
        amount_scale, rounding_mode) AS DECIMAL(38, 4)) AS tiered_rounded
FROM labelled
ORDER BY contract_id, window_start;

CREATE OR REPLACE TEMP TABLE calc_gain_share_lines AS
SELECT
    contract_id,
    billed_period AS period,
    'gain_share' AS line_key,
    'gain_share' AS line_type,
    description,
    CAST(NULL AS DECIMAL(38, 6)) AS quantity,
    CAST(NULL AS DECIMAL(38, 10)) AS rate,
    provider_amount AS amount,
    line_sort_order('gain_share', 0) AS sort_order
FROM calc_gain_share
WHERE provider_amount <> 0
ORDER BY contract_id, period;
