-- The stored tables that every run shares. The per-run result tables (charge_lines, invoice_lines,
-- ...) are created by the engine from the settlement SQL's own columns, each with a leading
-- run_id; everything is append-only except period_status, whose open rows become closed once.

CREATE TABLE IF NOT EXISTS settlement_runs (
    run_id BIGINT PRIMARY KEY,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,              -- succeeded (a failed run rolls back and leaves no row)
    mode VARCHAR,                -- settle | as_known_at (a rebuild, never current)
    periods VARCHAR,             -- 'YYYY-MM..YYYY-MM' as requested
    period_from DATE,
    period_to DATE,
    as_known_at DATE,
    contracts VARCHAR[],
    code_version VARCHAR,        -- package version + hash of the engine's code and SQL
    data_dir VARCHAR,
    config_sha256 MAP(VARCHAR, VARCHAR),   -- contract id -> sha256 of its YAML file
    input_sha256 MAP(VARCHAR, VARCHAR)     -- input file -> sha256 of its bytes
);

-- Which months each run stored, per contract: the basis of every current_ view.
CREATE TABLE IF NOT EXISTS run_periods (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE
);

CREATE TABLE IF NOT EXISTS period_status (
    contract_id VARCHAR,
    period DATE,
    status VARCHAR,              -- open | closed
    closed_at TIMESTAMP,
    closed_run_id BIGINT,
    PRIMARY KEY (contract_id, period)
);

-- The run whose figures stand for each contract and month: the closing run of a closed month,
-- else the latest settle run that stored it.
CREATE OR REPLACE VIEW current_run_periods AS
SELECT
    rp.contract_id,
    rp.period,
    coalesce(any_value(ps.closed_run_id) FILTER (WHERE ps.status = 'closed'), max(rp.run_id))
        AS run_id,
    coalesce(any_value(ps.status), 'open') AS status
FROM run_periods rp
JOIN settlement_runs r ON r.run_id = rp.run_id AND r.mode = 'settle'
LEFT JOIN period_status ps ON ps.contract_id = rp.contract_id AND ps.period = rp.period
GROUP BY rp.contract_id, rp.period;

-- The two result tables the settlement SQL reads back (closing figures and earlier adjustments);
-- the other result tables are created from the SQL's own columns on first use.
CREATE TABLE IF NOT EXISTS invoice_lines (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    line_key VARCHAR,
    line_type VARCHAR,           -- usage | fixed_fee | minimum | surge | credit | earn_back | bonus
                                 -- | gain_share | adjustment
    description VARCHAR,
    quantity DECIMAL(38, 6),
    rate DECIMAL(38, 8),
    amount DECIMAL(38, 4),       -- rounded once, with the contract's mode and amount_scale
    currency VARCHAR,
    sort_order INTEGER
);

CREATE TABLE IF NOT EXISTS adjustments (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,                 -- the closed month restated
    billed_in_period DATE,       -- the open month whose invoice carries the difference
    line_key VARCHAR,            -- the restated line's key
    description VARCHAR,
    closed_amount DECIMAL(38, 4),
    previously_adjusted DECIMAL(38, 4),
    restated_amount DECIMAL(38, 4),
    delta DECIMAL(38, 4),        -- restated - closed - previously adjusted
    reason VARCHAR
);

-- The terms each run settled with: every effective-dated entry (fingerprinted) and the contract
-- files themselves, so an auditor can read the exact YAML behind any run.
CREATE TABLE IF NOT EXISTS run_terms (
    run_id BIGINT,
    contract_id VARCHAR,
    kind VARCHAR,                -- pricing | fixed_fee | target | baseline
    item_id VARCHAR,             -- service line, fee or KPI id ('gain_share' for baselines)
    effective_from DATE,
    agreed_on DATE,
    reason VARCHAR,
    fingerprint VARCHAR          -- sha256 prefix of the entry's terms
);

CREATE TABLE IF NOT EXISTS run_configs (
    run_id BIGINT,
    contract_id VARCHAR,
    config_file VARCHAR,
    config_sha256 VARCHAR,
    config_yaml VARCHAR
);

-- What each run read (SPEC 9, 12): every input file with its month (from a `period=YYYY-MM/`
-- folder, else NULL) and sha256. For interactions/ also the size and modification time that
-- let a later run trust the hash without opening the file, and per month a '(measurement)' row
-- (file = '(measurement)', sha256 = fingerprint of the counting SQL, the thresholds in use and
-- the month's exclusion windows). See pipelines/closed_months.py.
CREATE TABLE IF NOT EXISTS run_inputs (
    run_id BIGINT,
    folder VARCHAR,              -- volumes | kpis | ... | interactions
    file VARCHAR,                -- path inside the data folder, e.g. interactions/period=2025-01/a.parquet
    period DATE,
    sha256 VARCHAR,
    rows BIGINT,                 -- interactions/: rows of the file, when known
    bytes BIGINT,
    modified_ns BIGINT
);

-- The interaction_counts stage (sql/interactions.sql), stored for the months each run wrote: one
-- row per contract, service line, month, exclusion segment and threshold class. A closed month's
-- measured KPIs are re-derived from its closing run's rows without opening its files.
CREATE TABLE IF NOT EXISTS interaction_counts (
    run_id BIGINT,
    contract_id VARCHAR,
    service_line_id VARCHAR,
    period DATE,
    excluded_from TIMESTAMP,     -- start of the exclusion segment; NULL outside every window
    kind VARCHAR,                -- all | wait (bound = seconds) | csat (bound = top box)
    bound INTEGER,
    interactions BIGINT,
    answered BIGINT,             -- kind wait: answered within bound seconds
    abandoned BIGINT,            -- kind wait: abandoned within bound seconds
    answer_wait_us BIGINT,
    handled BIGINT,
    handle_s BIGINT,
    fcr_answers BIGINT,
    fcr_resolved BIGINT,
    csat_answers BIGINT,         -- kind csat: answers with csat >= bound
    csat_sum BIGINT,
    answered_and_abandoned BIGINT,
    earliest_outcome_us BIGINT,
    min_handle_s INTEGER,
    min_csat INTEGER,
    max_csat INTEGER,
    cast_errors BIGINT
);
