-- Every stored table, declared once (pipelines/store.py names them and says how each is filled).
-- Everything is append-only except period_status, whose open rows become closed once.

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
    closed_how VARCHAR,          -- approved | disputed | forced: what allowed the close
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

-- The per-run result tables (pipelines/store.py RESULT_TABLES), each with a leading run_id and
-- exactly the columns of its calc table: a run checks its rows against these declarations and
-- stops, writing nothing, when they differ. Rounded money is DECIMAL(38, 4) (any amount_scale up
-- to 4); exact intermediates keep their own scale under their own names (amount_unrounded,
-- at_risk_amount, uncapped_amount, cap_amount, provider_amount_unrounded, ...).

CREATE TABLE IF NOT EXISTS index_factors (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,                        -- the review month
    index_id VARCHAR,
    weight DECIMAL(20, 6),
    reference_period DATE,
    reference_value DECIMAL(28, 6),
    previous_reference_period DATE,
    previous_reference_value DECIMAL(28, 6),
    raw_change DECIMAL(38, 10),         -- index ratio - 1, before cap and floor
    applied_change DECIMAL(38, 10),     -- after cap, floor and indexed share
    previous_factor DECIMAL(38, 10),
    unrounded_factor DECIMAL(38, 26),   -- exact product before factor_scale
    factor DECIMAL(38, 10),             -- rounded to factor_scale; multiplies prices
    method VARCHAR,
    cap DECIMAL(20, 6),
    floor DECIMAL(20, 6),
    factor_scale INTEGER,
    change_clamped_to VARCHAR,  -- cap | floor | NULL: which bound held the change
    factor_held_at VARCHAR,  -- base_relative: the bound the factor was held at
    rounding_mode VARCHAR
);

CREATE TABLE IF NOT EXISTS charge_bands (
    run_id BIGINT,
    contract_id VARCHAR,
    service_line_id VARCHAR,
    period DATE,
    model VARCHAR,
    band INTEGER,
    lower_bound DECIMAL(20, 6),
    up_to DECIMAL(20, 6),
    units DECIMAL(38, 12),
    base_rate DECIMAL(20, 6),
    rate DECIMAL(38, 10),
    base_flat_fee DECIMAL(20, 6),
    flat_fee DECIMAL(38, 10),
    amount_unrounded DECIMAL(38, 10),
    base_amount_unrounded DECIMAL(38, 18) -- the band at base prices, unrounded
);

CREATE TABLE IF NOT EXISTS charge_lines (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    line_key VARCHAR,
    service_line_id VARCHAR,
    fee_id VARCHAR,
    charge_type VARCHAR,
    band INTEGER,
    pricing_model VARCHAR,
    pricing_from DATE,
    units DECIMAL(38, 12),
    forecast_units DECIMAL(38, 6),
    surge_threshold DECIMAL(38, 12),
    base_rate DECIMAL(38, 10),
    index_factor DECIMAL(38, 10),
    rate DECIMAL(38, 10),
    amount_unrounded DECIMAL(38, 16),   -- exact, before rounding
    amount DECIMAL(38, 4),              -- rounded once, contract's mode and amount_scale
    capped BOOLEAN,
    rounding_mode VARCHAR,
    amount_scale INTEGER,
    rate_scale INTEGER,
    description VARCHAR,
    sort_order INTEGER,
    indexed BOOLEAN,
    line_units DECIMAL(38, 12),  -- the service line's units that month
    banded_units DECIMAL(38, 12),  -- units priced by the bands (surge taken out)
    surge_over_forecast_pct DECIMAL(38, 8),
    package_size DECIMAL(38, 6),
    package_count DECIMAL(38, 0),  -- ceil(units / package_size)
    base_package_price DECIMAL(38, 6),
    minimum_units DECIMAL(38, 6),
    minimum_charge DECIMAL(38, 6),
    usage_amount DECIMAL(38, 4),  -- minimum lines: the usage charge the floor compares
    shortfall_amount DECIMAL(38, 4),  -- minimum lines: take-or-pay units x first rate
    top_up_amount DECIMAL(38, 4),  -- minimum lines: up to the minimum_charge floor
    base_amount DECIMAL(38, 4),  -- the line at base (unindexed) prices, rounded
    indexation_effect DECIMAL(38, 4) -- amount - base_amount
);

CREATE TABLE IF NOT EXISTS kpi_results (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    kpi_id VARCHAR,
    kpi_order INTEGER,
    value DECIMAL(38, 10),              -- the KPI value shown (6 places for a measured one)
    numerator DECIMAL(38, 6),
    denominator DECIMAL(38, 6),
    actual_numerator DECIMAL(38, 6),    -- the actual as an exact fraction: what met / failed,
    actual_denominator DECIMAL(38, 6),  -- bands and severity compare (an input value is value / 1)
    source VARCHAR,
    target DECIMAL(20, 6),
    target_from DATE,
    target_reason VARCHAR,
    direction VARCHAR,
    critical_below DECIMAL(20, 6),
    status VARCHAR,                     -- met | failed | excused | no_data
    met BOOLEAN,
    excused BOOLEAN,
    exclusion_reason VARCHAR,
    no_data BOOLEAN,
    consecutive_failures INTEGER,
    critical BOOLEAN,
    value_kind VARCHAR                  -- share | seconds | count | score (how it reads)
);

CREATE TABLE IF NOT EXISTS service_credits (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    kpi_id VARCHAR,
    kpi_order INTEGER,
    regime VARCHAR,
    value DECIMAL(38, 10),
    target DECIMAL(20, 6),
    direction VARCHAR,
    no_data BOOLEAN,
    consecutive_failures INTEGER,
    credit_model VARCHAR,
    minimum DECIMAL(20, 6),
    band INTEGER,
    band_worse_than DECIMAL(20, 6),
    severity DECIMAL(38, 6),            -- for reading; money uses the exact fraction below
    severity_numerator DECIMAL(38, 0),
    severity_denominator DECIMAL(38, 0),
    band_points DECIMAL(20, 6),
    points DECIMAL(38, 12),
    repeat_multiplier DECIMAL(20, 6),
    multiplier DECIMAL(38, 6),
    weight DECIMAL(38, 20),
    charges DECIMAL(38, 4),
    at_risk_pct DECIMAL(20, 6),
    at_risk_amount DECIMAL(38, 10),
    allocation_pct DECIMAL(20, 6),
    uncapped_amount DECIMAL(38, 18),    -- before the monthly cap (for reading, 18 places)
    points_total DECIMAL(38, 12),
    points_pct DECIMAL(20, 6),
    month_uncapped_total DECIMAL(38, 18),
    monthly_cap_pct DECIMAL(20, 6),
    cap_amount DECIMAL(38, 10),         -- exact: monthly_cap_pct x charges
    capped BOOLEAN,
    split_total DECIMAL(38, 4),         -- the rounded cap a capped month's credits add up to
    floor_units HUGEINT,
    remainder_units HUGEINT,
    extra_unit BOOLEAN,
    amount DECIMAL(38, 4),              -- rounded once (largest-remainder split when capped)
    amount_scale INTEGER,
    rounding_mode VARCHAR,
    earn_back_months INTEGER,
    earn_back_status VARCHAR,
    earn_back_broken_in DATE,
    earned_back_in DATE,
    at_risk_rounded DECIMAL(38, 4),  -- for readers: the exact figure, rounded (mode, amount_scale)
    uncapped_rounded DECIMAL(38, 4),
    cap_rounded DECIMAL(38, 4)
);

CREATE TABLE IF NOT EXISTS gain_share (
    run_id BIGINT,
    contract_id VARCHAR,
    window_start DATE,
    window_end DATE,
    billed_period DATE,
    first_period DATE,
    months INTEGER,
    settle_every VARCHAR,
    measure VARCHAR,
    volume DECIMAL(38, 6),
    value_per_unit DECIMAL(20, 6),
    baseline_cost DECIMAL(38, 22),
    actual_cost DECIMAL(38, 22),
    savings DECIMAL(38, 22),
    threshold_pct DECIMAL(38, 6),
    threshold_amount DECIMAL(38, 18),
    below_threshold BOOLEAN,
    kind VARCHAR,
    tiered_amount DECIMAL(38, 18),
    tiers_applied VARCHAR,
    pain_share BOOLEAN,
    cap DECIMAL(38, 6),
    capped BOOLEAN,
    gate_failed BOOLEAN,
    gate_failures VARCHAR,
    gated BOOLEAN,
    provider_amount_unrounded DECIMAL(38, 18),  -- exact, before rounding
    provider_amount DECIMAL(38, 4),     -- rounded once; billed on billed_period
    outcome VARCHAR,                    -- kind, or no_baseline | below_threshold | gated | pain_not_shared
    baseline_reason VARCHAR,
    description VARCHAR,
    amount_scale INTEGER,   -- the contract's; each *_rounded: the exact figure, rounded for readers
    baseline_cost_rounded DECIMAL(38, 4),
    actual_cost_rounded DECIMAL(38, 4),
    savings_rounded DECIMAL(38, 4),
    threshold_rounded DECIMAL(38, 4),
    tiered_rounded DECIMAL(38, 4)
);

CREATE TABLE IF NOT EXISTS gain_share_months (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    window_start DATE,
    window_end DATE,
    billed_period DATE,
    window_settled BOOLEAN,
    measure VARCHAR,
    settle_every VARCHAR,
    baseline_indexed BOOLEAN,
    value_per_unit DECIMAL(20, 6),
    scope_unit VARCHAR,
    rounding_mode VARCHAR,
    amount_scale INTEGER,
    units DECIMAL(38, 6),
    charges DECIMAL(38, 4),             -- the month's rounded charge lines summed
    baseline DECIMAL(20, 6),
    baseline_from DATE,
    baseline_agreed_on DATE,
    baseline_reason VARCHAR,
    index_factor DECIMAL(38, 10),
    baseline_factor DECIMAL(38, 10),
    baseline_cost DECIMAL(38, 22),
    actual_cost DECIMAL(38, 22),
    savings DECIMAL(38, 22)
);

CREATE TABLE IF NOT EXISTS invoice_reconciliation (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    line_key VARCHAR,
    description VARCHAR,
    invoice_id VARCHAR,
    expected_quantity DECIMAL(38, 6),
    expected_rate DECIMAL(38, 8),
    expected_amount DECIMAL(38, 4),
    billed_quantity DECIMAL(28, 6),
    billed_rate DECIMAL(28, 8),
    billed_amount DECIMAL(38, 4),
    difference DECIMAL(38, 4),          -- billed - expected (a missing side is 0)
    status VARCHAR,                     -- match | over_billed | under_billed | not_billed | unexpected
    rate_variance DECIMAL(38, 4),
    volume_variance DECIMAL(38, 4),
    other_variance DECIMAL(38, 4),  -- difference - rate - volume variance
    variance_basis VARCHAR          -- how the difference splits (quantity x rate or not)
);

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
    sort_order INTEGER,
    rounding_mode VARCHAR,
    amount_scale INTEGER,
    bonus_level DECIMAL(38, 10),
    bonus_pct DECIMAL(38, 8),
    bonus_charges DECIMAL(38, 4),
    earned_back_of DATE[]           -- earn_back lines: the months whose credit is returned
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

-- What each contract-month's inputs were when a run read them, stored only when they differ from
-- what an earlier run saw (so a month-end adds one month, not the history): a digest of the
-- contract's rows of that month in volumes/, kpis/, exclusions/ and pass_through/, and of the
-- month's interaction files (names and sha256 of its period= folder). The latest row with
-- run_id <= R is what run R saw. sql/10_adjustments.sql compares it with the inputs now to name
-- the cause of an adjustment ("volumes of 2025-03 changed").
CREATE TABLE IF NOT EXISTS input_digests (
    contract_id VARCHAR,
    period DATE,                 -- the month the rows belong to
    folder VARCHAR,              -- volumes | kpis | exclusions | pass_through | interactions
    digest VARCHAR,              -- md5 of the month's rows as text ('none': no rows)
    run_id BIGINT                -- the first run that saw this digest
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

-- Month-end decisions by people: append-only events, never updated.
-- An approval stands for the run it names: a later run of the month supersedes it.
CREATE TABLE IF NOT EXISTS approvals (
    approval_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    run_id BIGINT,               -- the run whose invoice was approved
    approved_by VARCHAR,         -- who approved (--by); `by` is a reserved word in SQL
    approved_at TIMESTAMP,       -- when (UTC)
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

-- Terms beyond the month (SPEC 10): the figures behind the true_up, one_off, pass_through,
-- fx_share and credit_cap_refund lines.
CREATE TABLE IF NOT EXISTS commitment_windows (
    run_id BIGINT,
    contract_id VARCHAR,
    service_line_id VARCHAR,
    billed_period DATE,          -- the window's last month in the term: where the true-up is billed
    commitment_from DATE,        -- effective_from of the commitment in force that month
    over VARCHAR,                -- contract_year | calendar_year | quarter
    window_start DATE,
    window_end DATE,
    term_start DATE,             -- the window clipped to the contract's term
    term_end DATE,
    months_in_term INTEGER,
    months_in_window INTEGER,    -- the minimum is prorated by months_in_term / months_in_window
    minimum_units DECIMAL(38, 6),
    minimum_charge DECIMAL(38, 4),
    minimum_charge_in_force DECIMAL(38, 4),  -- indexed with the month's factor on an indexed line
    window_units DECIMAL(38, 6),
    window_usage DECIMAL(38, 4), -- the window's usage lines (rounded), for a minimum_charge
    first_base_rate DECIMAL(38, 10),
    first_rate DECIMAL(38, 10),  -- the first band's rate in force in billed_period (indexed)
    minimum_units_prorated DECIMAL(38, 10),
    shortfall_units DECIMAL(38, 10),
    amount DECIMAL(38, 4),       -- the true_up line: one exact division, rounded once
    description VARCHAR
);

CREATE TABLE IF NOT EXISTS one_off_instalments (
    run_id BIGINT,
    contract_id VARCHAR,
    one_off_id VARCHAR,
    description VARCHAR,
    period DATE,                 -- the month billed (instalments after the term: its last month)
    instalment INTEGER,
    instalments INTEGER,
    due_period DATE,
    in_charges BOOLEAN,
    indexed BOOLEAN,
    item_order INTEGER,
    one_off_amount DECIMAL(38, 4),
    instalment_amount DECIMAL(38, 4),  -- amount / n cut to the scale, remainder to the earliest
    base_instalment DECIMAL(38, 4),    -- amount / n cut to the amount scale
    remainder_units INTEGER,     -- units of the last place left over, one each to the earliest
    extra_unit BOOLEAN,          -- this instalment took one of them
    index_factor DECIMAL(38, 10),
    amount_scale INTEGER,
    rounding_mode VARCHAR
);

CREATE TABLE IF NOT EXISTS pass_through_costs (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    item_id VARCHAR,
    description VARCHAR,
    margin_pct DECIMAL(20, 6),
    in_charges BOOLEAN,
    item_order INTEGER,
    cost_rows INTEGER,
    cost DECIMAL(38, 4),         -- the month's pass_through/ costs of the item
    amount DECIMAL(38, 4)        -- round(cost x (1 + margin_pct))
);

CREATE TABLE IF NOT EXISTS fx_shares (
    run_id BIGINT,
    contract_id VARCHAR,
    period DATE,
    delivery_currency VARCHAR,
    rate_period DATE,            -- month - lag_months: the fx_rates/ row read
    rate DECIMAL(28, 8),
    base_rate DECIMAL(20, 6),
    band_pct DECIMAL(20, 6),
    client_share DECIMAL(20, 6),
    lag_months INTEGER,
    charges_base DECIMAL(38, 4), -- C: usage, minimum, surge and true-up of the applies_to lines
    movement DECIMAL(38, 10),    -- m = rate / base_rate - 1 (for reading; the line is exact)
    shared_movement DECIMAL(38, 10),  -- e = sign(m) x max(|m| - band_pct, 0)
    amount DECIMAL(38, 4)        -- fx_share = C x e x client_share, rounded once
);

CREATE TABLE IF NOT EXISTS annual_credit_caps (
    run_id BIGINT,
    contract_id VARCHAR,
    year_start DATE,
    year_end DATE,
    term_start DATE,
    term_end DATE,
    billed_period DATE,          -- the contract year's last month in the term
    year_charges DECIMAL(38, 4), -- charges before credits over the year
    year_credits DECIMAL(38, 4), -- credit and earn_back lines over the year
    annual_cap_pct DECIMAL(20, 6),
    annual_cap_amount DECIMAL(20, 6),
    cap_amount DECIMAL(38, 10),  -- the lower of annual_cap_amount and annual_cap_pct x year_charges
    capped BOOLEAN,
    amount DECIMAL(38, 4)        -- credit_cap_refund: the excess returned, rounded once
);
