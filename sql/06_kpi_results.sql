-- Grain of calc_kpi_results: one row per contract, KPI and month of calc_months (the whole history
-- from the contract start, so runs of failures and earn-back windows can reach back before the
-- months being settled).
--
-- SPEC 4: a KPI fails in a month when it is worse than the target in force (strictly below for
-- higher_is_better, strictly above for lower_is_better). A month excused by `exclusions` neither
-- fails nor counts as met and neither breaks nor extends a run of consecutive failures; a month
-- without a value is `no_data`, treated the same way, unless the KPI says `no_data: fail` (SPEC 6),
-- when it is a failure. `critical_below`: an actual worse than it marks the month critical.
--
-- Every comparison is exact: the actual is held as a fraction (actual_numerator /
-- actual_denominator) and compared as numerator against threshold x denominator (worse_than in
-- sql/01_macros.sql), so a measured 0.7999996 stored as 0.800000 still fails a 0.80 target.
--
-- Interpretations of the spec: an excused month is never critical (the month does not count against
-- the provider); a month excused for a KPI needs no value even when the KPI is required; a month
-- with no target known yet (as-known-at before the first target was agreed) is no_data.

CREATE OR REPLACE TEMP TABLE calc_kpi_results AS
WITH kpi_months AS (
    SELECT m.contract_id, m.period, k.* EXCLUDE (contract_id), kk.kind AS value_kind
    FROM calc_months m
    JOIN cfg_kpis k USING (contract_id)
    LEFT JOIN cfg_kpi_kinds kk ON kk.contract_id = k.contract_id AND kk.kpi_id = k.kpi_id
),
targets_known AS (
    -- a target agreed after the as-known-at date did not exist yet
    SELECT * FROM cfg_kpi_targets WHERE agreed_on <= (SELECT as_known_at FROM run_params)
),
with_target AS (
    SELECT km.*, t.target, t.effective_from AS target_from, t.reason AS target_reason
    FROM kpi_months km
    ASOF LEFT JOIN targets_known t
        ON t.contract_id = km.contract_id
       AND t.kpi_id = km.kpi_id
       AND km.period >= t.effective_from
),
observed AS (
    -- a measured KPI is computed from interactions; an input row for it is rejected upstream.
    -- Each branch is cast first: a CASE over DECIMALs of different scales takes the narrower one.
    SELECT
        w.*,
        CASE
            WHEN w.measured THEN CAST(mk.value AS DECIMAL(38, 10))
            ELSE CAST(ik.value AS DECIMAL(38, 10))
        END AS value,
        CASE WHEN w.measured THEN mk.numerator ELSE ik.numerator END::DECIMAL(38, 6) AS numerator,
        CASE WHEN w.measured THEN mk.denominator ELSE ik.denominator END::DECIMAL(38, 6)
            AS denominator,
        CASE WHEN w.measured THEN 'measured' ELSE 'input' END AS source,
        -- the actual as an exact fraction: a measured KPI's counts (its value is their quotient
        -- rounded to 6 places, for display), an input KPI's value over 1. Every comparison and
        -- every severity reads these, never a rounded quotient.
        CASE WHEN w.measured THEN mk.numerator ELSE ik.value END::DECIMAL(38, 6)
            AS actual_numerator,
        CASE
            WHEN w.measured THEN mk.denominator
            WHEN ik.value IS NOT NULL THEN 1
        END::DECIMAL(38, 6) AS actual_denominator
    FROM with_target w
    LEFT JOIN in_kpis ik USING (contract_id, kpi_id, period)
    LEFT JOIN calc_measured_kpis mk USING (contract_id, kpi_id, period)
),
month_exclusions AS (
    -- only a row without a time window excuses the whole month (windows only filter interactions);
    -- a row without kpi_id excuses every KPI of the contract that month
    SELECT
        o.contract_id, o.kpi_id, o.period,
        string_agg(DISTINCT e.reason, '; ' ORDER BY e.reason) AS reason
    FROM observed o
    JOIN in_exclusions e
      ON e.contract_id = o.contract_id
     AND e.period = o.period
     AND (e.kpi_id IS NULL OR e.kpi_id = o.kpi_id)
    WHERE e.starts_at IS NULL
    GROUP BY ALL
),
classified AS (
    SELECT
        o.*,
        x.reason AS exclusion_reason,
        CASE
            WHEN x.reason IS NOT NULL THEN 'excused'
            -- no target known yet (as-known-at before it was agreed): nothing to assess against
            WHEN o.target IS NULL THEN 'no_data'
            WHEN o.value IS NULL AND o.no_data_fails THEN 'failed'
            WHEN o.value IS NULL THEN 'no_data'
            WHEN worse_than(o.direction, o.actual_numerator, o.actual_denominator, o.target)
                THEN 'failed'
            ELSE 'met'
        END AS status
    FROM observed o
    LEFT JOIN month_exclusions x USING (contract_id, kpi_id, period)
),
runs AS (
    -- a run of failures restarts after each met month; excused and no_data months add nothing to
    -- either count, so they neither break nor extend it
    SELECT
        *,
        sum(CASE WHEN status = 'met' THEN 1 ELSE 0 END) OVER (
            PARTITION BY contract_id, kpi_id ORDER BY period
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS run_group
    FROM classified
),
counted AS (
    SELECT
        *,
        sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) OVER (
            PARTITION BY contract_id, kpi_id, run_group ORDER BY period
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS failures_so_far
    FROM runs
)
SELECT
    -- keys
    contract_id, period, kpi_id, kpi_order,
    -- observation
    value, numerator, denominator, source, actual_numerator, actual_denominator,
    -- the rule in force
    target, target_from, target_reason, direction, critical_below,
    -- outcome
    status,
    CASE status WHEN 'met' THEN true WHEN 'failed' THEN false END AS met,
    status = 'excused' AS excused,
    exclusion_reason,
    value IS NULL AS no_data,
    CASE WHEN status IN ('met', 'failed') THEN failures_so_far::INTEGER END AS consecutive_failures,
    coalesce(
        status <> 'excused'
            AND worse_than(direction, actual_numerator, actual_denominator, critical_below),
        false
    ) AS critical,
    -- share | seconds | count | score: how readers print the value and target
    value_kind
FROM counted
ORDER BY contract_id, period, kpi_order;
