-- Raw interactions (SPEC 6): read once, when the inputs are registered, before anything is
-- computed. pipelines/interactions.py runs the two statements below in order, filling the
-- placeholders in braces from cfg_kpi_measures (the thresholds the contracts actually use); the
-- input checks then test the validation columns and stop the run on any broken rule.
--
-- Grain of calc_exclusion_segments: one row per contract and stretch of time covered by one or
-- more of its exclusion windows (starts_at inclusive, ends_at exclusive), with the KPIs they excuse.
-- Overlapping windows are cut into disjoint stretches so that an interaction falls in at most one
-- and is never left out twice.
--
-- Grain of calc_interaction_counts: one row per contract, service line, month of arrival and
-- exclusion segment (NULL: outside every window). It holds every count and sum a measured KPI
-- needs (sql/05_measures.sql derives the KPIs from it), and the extremes the validation rules
-- test. Why one coarse grain with conditional counts rather than a histogram of waiting times:
-- each extra group costs more per row than a conditional count (measured in bench/), and the
-- thresholds in use are few.
--
-- "Within T seconds" compares exact microsecond differences with T x 1,000,000 (<=): see 05.

-- name: exclusion_segments
CREATE OR REPLACE TEMP TABLE calc_exclusion_segments AS
WITH windows AS (
    SELECT contract_id, kpi_id, starts_at, ends_at
    FROM in_exclusions
    WHERE starts_at IS NOT NULL AND ends_at > starts_at
),
edges AS (
    SELECT DISTINCT contract_id, starts_at AS edge_at FROM windows
    UNION
    SELECT DISTINCT contract_id, ends_at FROM windows
),
stretches AS (
    SELECT
        contract_id, edge_at AS starts_at,
        lead(edge_at) OVER (PARTITION BY contract_id ORDER BY edge_at) AS ends_at
    FROM edges
)
SELECT
    row_number() OVER (ORDER BY s.contract_id, s.starts_at) AS segment,
    s.contract_id, s.starts_at, s.ends_at,
    -- a window without kpi_id leaves the interactions out of every measure of the contract
    bool_or(w.kpi_id IS NULL) AS all_kpis,
    coalesce(list(DISTINCT w.kpi_id ORDER BY w.kpi_id) FILTER (WHERE w.kpi_id IS NOT NULL), [])
        AS kpi_ids
FROM stretches s
JOIN windows w
  ON w.contract_id = s.contract_id AND w.starts_at <= s.starts_at AND w.ends_at >= s.ends_at
WHERE s.ends_at IS NOT NULL
GROUP BY s.contract_id, s.starts_at, s.ends_at
ORDER BY segment;

-- name: interaction_counts
CREATE OR REPLACE TEMP TABLE calc_interaction_counts AS
WITH timed AS (
    SELECT
        contract_id, service_line_id, arrived_at,
        -- waiting times in whole microseconds (exact integers, never an interval or a float)
        epoch_us(answered_at) - epoch_us(arrived_at) AS answer_us,
        epoch_us(abandoned_at) - epoch_us(arrived_at) AS abandon_us,
        CASE WHEN answered_at IS NOT NULL THEN handle_s END AS answered_handle_s,
        handle_s, first_contact_resolved, csat{cast_error_column}
    FROM in_interactions
),
counted AS (
    SELECT
        t.contract_id,
        t.service_line_id,
        date_trunc('month', t.arrived_at)::DATE AS period,
        s.segment,
        count(*) AS interactions,
        count(t.answer_us) AS answered,
        count(t.abandon_us) AS abandoned,
        sum(t.answer_us) AS answer_wait_us,
        [{answered_within}]::BIGINT[] AS answered_within,
        [{abandoned_within}]::BIGINT[] AS abandoned_within,
        count(t.answered_handle_s) AS handled,
        sum(t.answered_handle_s) AS handle_s,
        count(t.first_contact_resolved) AS fcr_answers,
        count_if(t.first_contact_resolved) AS fcr_resolved,
        count(t.csat) AS csat_answers,
        sum(t.csat) AS csat_sum,
        [{csat_at_or_above}]::BIGINT[] AS csat_at_or_above,
        -- validation: a group breaks a rule exactly when one of these extremes is out of range
        -- (NULL: the files' Parquet statistics already prove the rule for every row)
        count(t.answer_us + t.abandon_us) AS answered_and_abandoned,
        min(least(t.answer_us, t.abandon_us)) AS earliest_outcome_us,
        {min_handle_s} AS min_handle_s,
        {min_csat} AS min_csat,
        {max_csat} AS max_csat,
        {cast_errors} AS cast_errors
    FROM timed t
    LEFT JOIN calc_exclusion_segments s
      ON s.contract_id = t.contract_id
     AND t.arrived_at >= s.starts_at
     AND t.arrived_at < s.ends_at
    GROUP BY t.contract_id, t.service_line_id, date_trunc('month', t.arrived_at)::DATE, s.segment
)
SELECT
    contract_id, service_line_id, period, segment,
    -- the seconds each position of the *_within lists stands for, and the csat boxes
    {answered_within_s}::INTEGER[] AS answered_within_s,
    {abandoned_within_s}::INTEGER[] AS abandoned_within_s,
    {csat_boxes}::INTEGER[] AS csat_boxes,
    interactions, answered, abandoned, answer_wait_us, answered_within, abandoned_within,
    handled, handle_s, fcr_answers, fcr_resolved, csat_answers, csat_sum, csat_at_or_above,
    answered_and_abandoned, earliest_outcome_us, min_handle_s, min_csat, max_csat, cast_errors
FROM counted
ORDER BY contract_id, service_line_id, period, segment;
