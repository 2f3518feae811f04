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
    closed_how VARCHAR,          -- approved | disputed | forced: what allowed the close (SPEC 11)
    closed_by VARCHAR,
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

-- Month-end decisions by people (SPEC 11): append-only events, never updated.
-- An approval stands for the run it names: a later run of the month supersedes it.
CREATE TABLE IF NOT EXISTS approvals (
    approval_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    run_id BIGINT,               -- the run whose invoice was approved
    approved_by VARCHAR,         -- SPEC's `by` (BY is reserved in SQL)
    approved_at TIMESTAMP,       -- SPEC's `at`
    note VARCHAR
);

-- One row per event on a dispute: raised, then resolved (the resolving row repeats what was raised).
CREATE TABLE IF NOT EXISTS disputes (
    event_id BIGINT,
    dispute_id BIGINT,
    contract_id VARCHAR,
    period DATE,                 -- the disputed month
    line_key VARCHAR,
    run_id BIGINT,               -- the run whose reconciliation was disputed
    amount DECIMAL(38, 4),       -- disputed amount (default: the line's reconciliation difference)
    reason VARCHAR,
    raised_by VARCHAR,
    raised_at TIMESTAMP,
    status VARCHAR,              -- open | resolved
    outcome VARCHAR,             -- accepted | rejected | settled (resolved only)
    resolution_amount DECIMAL(38, 4),  -- settled: billed as line dispute:<id> on the next open month
    resolved_by VARCHAR,
    resolved_at TIMESTAMP,
    note VARCHAR
);

-- The ledger accounts each run posts its line types to (the contract's `accounting` section).
CREATE TABLE IF NOT EXISTS accounting_map (
    run_id BIGINT,
    contract_id VARCHAR,
    supplier_id VARCHAR,
    cost_centre VARCHAR,
    line_type VARCHAR,           -- a line type, or 'default'
    account VARCHAR
);

CREATE OR REPLACE VIEW current_approvals AS
SELECT * EXCLUDE (rn) FROM (
    SELECT a.*, row_number() OVER (PARTITION BY contract_id, period ORDER BY approval_id DESC) AS rn
    FROM approvals a
) WHERE rn = 1;

CREATE OR REPLACE VIEW current_disputes AS
SELECT * EXCLUDE (rn) FROM (
    SELECT d.*, row_number() OVER (PARTITION BY dispute_id ORDER BY event_id DESC) AS rn
    FROM disputes d
) WHERE rn = 1;
