-- Grain: one row per contract, measured KPI and month of calc_months (the whole history the run
-- covers): the numerator, denominator and value of a KPI with a `measure` (SPEC 6), derived from
-- calc_interaction_counts (sql/interactions.sql: one scan of the interaction files, made while the
-- inputs were validated). A month without interactions, or whose interactions were all left out,
-- has denominator 0 and no value: sql/06_kpi_results.sql reports it no_data (or failed, when the
-- KPI says `no_data: fail`).
--
-- With A = answered, A_T = answered within threshold_s of arrival, Ab = abandoned, Ab_T =
-- abandoned within threshold_s, Ab_short = abandoned within short_abandon_s:
--   service_level  ignore A_T / A; count_as_failed A_T / (A + Ab); exclude_short
--                  A_T / (A + Ab - Ab_short); exclude_within_threshold A_T / (A + Ab - Ab_T);
--                  count_as_met (A_T + Ab_T) / (A + Ab)
--   abandon_rate   Ab / (A + Ab); exclude_short (Ab - Ab_short) / (A + Ab - Ab_short); every other
--                  `abandons` value leaves it as Ab / (A + Ab) (the spec defines no other form)
--   asa_s          seconds from arrival to answer, summed exactly in microseconds, over A
--   aht_s          handle_s summed over answered interactions that have it, over their count
--   fcr            first_contact_resolved = true over non-null first_contact_resolved
--   csat           csat summed over non-null csat, over their count; with csat_top_box k, the
--                  count of csat >= k over the non-null count
--
-- "Within T seconds" includes T itself: answered_at - arrived_at <= T x 1,000,000 microseconds.
-- "80% within 20 seconds" counts a call answered at 20.000 s as within, the common workforce-
-- management convention (the wait has not exceeded the threshold). The same rule applies to
-- abandons within threshold_s and within short_abandon_s.
--
-- An interaction whose arrived_at falls inside an exclusion window of its contract (starts_at
-- inclusive, ends_at exclusive) is left out of every measure the window applies to (kpi_id NULL:
-- all of them). The period of an interaction is the month of its arrived_at.
--
-- value = div_round(numerator, denominator, 6, 'half_up'): exact, never AVG or `/` (DOUBLE). It is
-- for display: met / failed, bands, critical and linear severity compare the numerator against
-- threshold x denominator (sql/06_kpi_results.sql, worse_than), never this rounded quotient.

CREATE OR REPLACE TEMP TABLE calc_measured_kpis AS
WITH measures AS (
    SELECT m.*
    FROM cfg_kpi_measures m
    JOIN run_contracts USING (contract_id)
),
counted AS (
    SELECT
        m.contract_id, m.kpi_id, g.period,
        -- the threshold classes of interaction_counts: 'all' carries the totals, 'wait' with
        -- bound T the answered / abandoned within T seconds, 'csat' with bound k csat >= k
        sum(CASE WHEN g.kind = 'all' THEN g.answered END) AS a,
        sum(CASE WHEN g.kind = 'wait' AND g.bound = m.threshold_s THEN g.answered END) AS a_t,
        sum(CASE WHEN g.kind = 'all' THEN g.abandoned END) AS ab,
        sum(CASE WHEN g.kind = 'wait' AND g.bound = m.threshold_s THEN g.abandoned END) AS ab_t,
        sum(CASE WHEN g.kind = 'wait' AND g.bound = m.short_abandon_s THEN g.abandoned END)
            AS ab_short,
        sum(CASE WHEN g.kind = 'all' THEN g.answer_wait_us END) AS answer_wait_us,
        sum(CASE WHEN g.kind = 'all' THEN g.handled END) AS handled,
        sum(CASE WHEN g.kind = 'all' THEN g.handle_s END) AS handle_s,
        sum(CASE WHEN g.kind = 'all' THEN g.fcr_answers END) AS fcr_answers,
        sum(CASE WHEN g.kind = 'all' THEN g.fcr_resolved END) AS fcr_resolved,
        sum(CASE WHEN g.kind = 'all' THEN g.csat_answers END) AS csat_answers,
        sum(CASE WHEN g.kind = 'all' THEN g.csat_sum END) AS csat_sum,
        sum(CASE WHEN g.kind = 'csat' AND g.bound = m.csat_top_box THEN g.csat_answers END)
            AS csat_top
    FROM measures m
    JOIN calc_interaction_counts g
      ON g.contract_id = m.contract_id AND g.service_line_id = m.service_line_id
    LEFT JOIN calc_exclusion_segments x
      ON x.contract_id = g.contract_id AND x.starts_at = g.excluded_from
    WHERE g.excluded_from IS NULL OR NOT (x.all_kpis OR list_contains(x.kpi_ids, m.kpi_id))
    GROUP BY m.contract_id, m.kpi_id, g.period
),
fractions AS (
    -- every branch is cast on its own: a CASE over DECIMALs of different scales takes the smaller
    SELECT
        c.contract_id, c.kpi_id, c.period,
        CASE
            WHEN m.metric = 'service_level' AND m.abandons = 'count_as_met'
                THEN CAST(c.a_t + c.ab_t AS DECIMAL(38, 6))
            WHEN m.metric = 'service_level' THEN CAST(c.a_t AS DECIMAL(38, 6))
            WHEN m.metric = 'abandon_rate' AND m.abandons = 'exclude_short'
                THEN CAST(c.ab - c.ab_short AS DECIMAL(38, 6))
            WHEN m.metric = 'abandon_rate' THEN CAST(c.ab AS DECIMAL(38, 6))
            -- microseconds -> seconds, exactly: DECIMAL(38, 6) holds every microsecond
            WHEN m.metric = 'asa_s'
                THEN CAST(CAST(c.answer_wait_us AS DECIMAL(38, 0)) * CAST(0.000001 AS DECIMAL(38, 6))
                          AS DECIMAL(38, 6))
            WHEN m.metric = 'aht_s' THEN CAST(c.handle_s AS DECIMAL(38, 6))
            WHEN m.metric = 'fcr' THEN CAST(c.fcr_resolved AS DECIMAL(38, 6))
            WHEN m.metric = 'csat' AND m.csat_top_box IS NOT NULL
                THEN CAST(c.csat_top AS DECIMAL(38, 6))
            WHEN m.metric = 'csat' THEN CAST(c.csat_sum AS DECIMAL(38, 6))
        END AS numerator,
        -- denominators are counts (whole numbers)
        CAST(CASE
            WHEN m.metric = 'service_level' THEN CASE m.abandons
                WHEN 'ignore' THEN c.a
                WHEN 'count_as_failed' THEN c.a + c.ab
                WHEN 'count_as_met' THEN c.a + c.ab
                WHEN 'exclude_short' THEN c.a + c.ab - c.ab_short
                WHEN 'exclude_within_threshold' THEN c.a + c.ab - c.ab_t
            END
            WHEN m.metric = 'abandon_rate' AND m.abandons = 'exclude_short'
                THEN c.a + c.ab - c.ab_short
            WHEN m.metric = 'abandon_rate' THEN c.a + c.ab
            WHEN m.metric = 'asa_s' THEN c.a
            WHEN m.metric = 'aht_s' THEN c.handled
            WHEN m.metric = 'fcr' THEN c.fcr_answers
            WHEN m.metric = 'csat' THEN c.csat_answers
        END AS DECIMAL(38, 6)) AS denominator
    FROM counted c
    JOIN cfg_kpi_measures m USING (contract_id, kpi_id)
)
SELECT
    mo.contract_id,
    m.kpi_id,
    mo.period,
    coalesce(f.numerator, 0)::DECIMAL(38, 6) AS numerator,
    coalesce(f.denominator, 0)::DECIMAL(38, 6) AS denominator,
    CASE
        WHEN f.denominator > 0 THEN div_round(f.numerator, f.denominator, 6, 'half_up')
    END::DECIMAL(38, 10) AS value
FROM calc_months mo
JOIN cfg_kpi_measures m USING (contract_id)
LEFT JOIN fractions f
  ON f.contract_id = mo.contract_id AND f.kpi_id = m.kpi_id AND f.period = mo.period
ORDER BY mo.contract_id, m.kpi_id, mo.period;
