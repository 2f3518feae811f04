-- Raw interactions (SPEC 6, 12): the interaction_counts stage. pipelines/interactions.py runs the
-- statements below in order, filling the placeholders in braces from cfg_kpi_measures (the
-- thresholds the contracts actually use); the input checks then test the validation columns and
-- stop the run on any broken rule.
--
-- ONE definition, two engines: `interaction_counts` is written in the subset of DuckDB SQL that
-- sqlglot transpiles to Spark SQL unchanged in meaning (no lists, no `epoch_us`, no DuckDB-only
-- functions, and no count_if: over only NULLs DuckDB's gives NULL and Spark's 0; a count of a
-- CASE gives 0 on both), so `--interactions-engine spark` runs the
-- transpiled text of this very statement (pipelines/spark.py; tests/test_spark.py checks the
-- text and the figures). `exclusion_segments` reads the small exclusions/ input and always runs
-- on DuckDB; Spark receives its result as a Parquet file.
--
-- Grain of calc_exclusion_segments: one row per contract and stretch of time covered by one or
-- more of its exclusion windows (starts_at inclusive, ends_at exclusive), with the KPIs they excuse.
-- Overlapping windows are cut into disjoint stretches so that an interaction falls in at most one
-- and is never left out twice.
--
-- Grain of interaction_counts: one row per contract, service line, month of arrival, exclusion
-- segment (excluded_from: the segment's start, NULL outside every window) and threshold class:
--   kind 'all'  (bound NULL): every count and sum a measured KPI needs, and the extremes the
--               validation rules test;
--   kind 'wait' (bound T s):  answered / abandoned = those answered / abandoned within T seconds;
--   kind 'csat' (bound k):    csat_answers = the answers with csat >= k.
-- Why a coarse grain with conditional counts rather than a histogram of waiting times: each extra
-- group costs more per row than a conditional count (measured in bench/), and the thresholds in
-- use are few. The classes are made after the aggregation (a cross join of the groups with the
-- few classes), so the files are scanned once.
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
-- portable: reads in_interactions and calc_exclusion_segments (contract_id, starts_at, ends_at)
WITH timed AS (
    SELECT
        contract_id, service_line_id, arrived_at,
        -- waiting times in whole microseconds (exact integers, never an interval or a float)
        date_diff('microsecond', arrived_at, answered_at) AS answer_us,
        date_diff('microsecond', arrived_at, abandoned_at) AS abandon_us,
        CASE WHEN answered_at IS NOT NULL THEN handle_s END AS answered_handle_s,
        handle_s, first_contact_resolved, csat, _cast_error
    FROM in_interactions
),
counted AS (
    SELECT
        t.contract_id,
        t.service_line_id,
        CAST(date_trunc('month', t.arrived_at) AS DATE) AS period,
        s.starts_at AS excluded_from,
        count(*) AS interactions,
        count(t.answer_us) AS answered,
        count(t.abandon_us) AS abandoned,
        sum(t.answer_us) AS answer_wait_us,
        count(t.answered_handle_s) AS handled,
        sum(t.answered_handle_s) AS handle_s,
        count(t.first_contact_resolved) AS fcr_answers,
        count(CASE WHEN t.first_contact_resolved THEN 1 END) AS fcr_resolved,
        count(t.csat) AS csat_answers,
        sum(t.csat) AS csat_sum,
        -- validation: a group breaks a rule exactly when one of these extremes is out of range
        -- (NULL: the files' Parquet statistics already prove the rule for every row)
        count(t.answer_us + t.abandon_us) AS answered_and_abandoned,
        min(least(t.answer_us, t.abandon_us)) AS earliest_outcome_us,
        {min_handle_s} AS min_handle_s,
        {min_csat} AS min_csat,
        {max_csat} AS max_csat,
        {cast_errors} AS cast_errors{class_counts}
    FROM timed t
    LEFT JOIN calc_exclusion_segments s
      ON s.contract_id = t.contract_id
     AND t.arrived_at >= s.starts_at
     AND t.arrived_at < s.ends_at
    GROUP BY t.contract_id, t.service_line_id, CAST(date_trunc('month', t.arrived_at) AS DATE),
             s.starts_at
),
classes AS (
    SELECT * FROM (VALUES ('all', CAST(NULL AS INTEGER)){class_values}) AS v(kind, bound)
)
SELECT
    CAST(g.contract_id AS VARCHAR) AS contract_id,
    CAST(g.service_line_id AS VARCHAR) AS service_line_id,
    g.period,
    CAST(g.excluded_from AS TIMESTAMP) AS excluded_from,
    CAST(c.kind AS VARCHAR) AS kind,
    CAST(c.bound AS INTEGER) AS bound,
    CAST(CASE WHEN c.kind = 'all' THEN g.interactions END AS BIGINT) AS interactions,
    CAST(CASE WHEN c.kind = 'all' THEN g.answered{answered_cases} END AS BIGINT) AS answered,
    CAST(CASE WHEN c.kind = 'all' THEN g.abandoned{abandoned_cases} END AS BIGINT) AS abandoned,
    CAST(CASE WHEN c.kind = 'all' THEN g.answer_wait_us END AS BIGINT) AS answer_wait_us,
    CAST(CASE WHEN c.kind = 'all' THEN g.handled END AS BIGINT) AS handled,
    CAST(CASE WHEN c.kind = 'all' THEN g.handle_s END AS BIGINT) AS handle_s,
    CAST(CASE WHEN c.kind = 'all' THEN g.fcr_answers END AS BIGINT) AS fcr_answers,
    CAST(CASE WHEN c.kind = 'all' THEN g.fcr_resolved END AS BIGINT) AS fcr_resolved,
    CAST(CASE WHEN c.kind = 'all' THEN g.csat_answers{csat_cases} END AS BIGINT)
        AS csat_answers,
    CAST(CASE WHEN c.kind = 'all' THEN g.csat_sum END AS BIGINT) AS csat_sum,
    CAST(CASE WHEN c.kind = 'all' THEN g.answered_and_abandoned END AS BIGINT)
        AS answered_and_abandoned,
    CAST(CASE WHEN c.kind = 'all' THEN g.earliest_outcome_us END AS BIGINT) AS earliest_outcome_us,
    CAST(CASE WHEN c.kind = 'all' THEN g.min_handle_s END AS INTEGER) AS min_handle_s,
    CAST(CASE WHEN c.kind = 'all' THEN g.min_csat END AS INTEGER) AS min_csat,
    CAST(CASE WHEN c.kind = 'all' THEN g.max_csat END AS INTEGER) AS max_csat,
    CAST(CASE WHEN c.kind = 'all' THEN g.cast_errors END AS BIGINT) AS cast_errors
FROM counted g
CROSS JOIN classes c
