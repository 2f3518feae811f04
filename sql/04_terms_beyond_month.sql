-- Terms beyond the month (SPEC 10): commitments, one-off charges, pass-through costs and FX
-- risk-sharing. Grains:
--   calc_commitment_windows   one row per contract, service line and commitment window whose last
--                             month in the term lies in this run's history: units, usage, true-up
--   calc_one_off_instalments  one row per contract, one-off charge and month it is billed in
--   calc_pass_through_lines   one row per contract, pass-through item and month with costs
--   calc_fx_shares            one row per contract with fx_sharing and month
--   calc_extra_lines          invoice lines that do not count in the charges before credits
--
-- True-up lines, and pass-through and one-off lines with `in_charges: true`, join
-- calc_charge_lines: they count in the charges before credits (at-risk amount, bonus, caps). The
-- others, and the FX line, go to calc_extra_lines and are billed after credits. Every amount is
-- rounded once, at its line, with the contract's mode and amount scale.

-- ---------------------------------------------------------------- commitments -> true_up lines
-- The commitment in force in each month fixes the window that month belongs to (a calendar
-- quarter or year, or a contract year from contract_year_start); the window is settled in its
-- last month inside the term, with the commitment in force in that month. A window cut short by
-- the term has its minimum prorated by months in term / months in window, exactly: the shortfall
-- is (minimum x m - units x n) / n and is divided once, at the line.
CREATE OR REPLACE TEMP TABLE calc_commitment_windows AS
WITH in_force AS (
    SELECT l.contract_id, l.service_line_id, l.period, l.indexed, l.index_factor,
           l.amount_scale, l.rounding_mode, l.description,
           k.effective_from AS commitment_from, k.over, k.minimum_units, k.minimum_charge
    FROM calc_line_units l
    ASOF JOIN (
        SELECT * FROM cfg_commitments WHERE agreed_on <= (SELECT as_known_at FROM run_params)
    ) k ON k.contract_id = l.contract_id
       AND k.service_line_id = l.service_line_id
       AND l.period >= k.effective_from
),
windowed AS (
    SELECT
        f.*, c.start_period, c.end_period,
        CAST(CASE f.over
            WHEN 'quarter' THEN date_trunc('quarter', f.period)
            WHEN 'calendar_year' THEN date_trunc('year', f.period)
            ELSE c.contract_year_start + to_months(
                12 * CAST(floor(months_between(c.contract_year_start, f.period) / 12) AS INTEGER))
        END AS DATE) AS window_start,
        CASE f.over WHEN 'quarter' THEN 3 ELSE 12 END AS months_in_window
    FROM in_force f
    JOIN cfg_contracts c USING (contract_id)
),
clipped AS (
    SELECT
        w.*,
        CAST(w.window_start + to_months(w.months_in_window - 1) AS DATE) AS window_end,
        greatest(w.window_start, w.start_period) AS term_start,
        least(CAST(w.window_start + to_months(w.months_in_window - 1) AS DATE),
              term_end(w.end_period)) AS term_end
    FROM windowed w
),
closing AS (
    SELECT *, CAST(months_between(term_start, term_end) + 1 AS INTEGER) AS months_in_term
    FROM clipped
    WHERE period = term_end
),
totals AS (
    SELECT
        c.contract_id, c.service_line_id, c.period,
        CAST(sum(l.units) AS DECIMAL(38, 6)) AS window_units,
        CAST(coalesce(sum(u.amount), 0) AS DECIMAL(38, 4)) AS window_usage
    FROM closing c
    JOIN calc_line_units l
      ON l.contract_id = c.contract_id AND l.service_line_id = c.service_line_id
     AND l.period BETWEEN c.term_start AND c.term_end
    LEFT JOIN (
        SELECT contract_id, service_line_id, period, sum(amount) AS amount
        FROM calc_usage_lines GROUP BY ALL
    ) u ON u.contract_id = l.contract_id AND u.service_line_id = l.service_line_id
       AND u.period = l.period
    GROUP BY ALL
),
priced AS (
    SELECT
        c.*, t.window_units, t.window_usage,
        fb.base_rate AS first_base_rate, fb.rate AS first_rate,
        -- a money commitment moves with the index like every price on an indexed line
        CASE WHEN c.indexed THEN round_to(c.minimum_charge * c.index_factor, c.amount_scale,
                                          c.rounding_mode)
             ELSE c.minimum_charge END AS minimum_charge_in_force,
        -- shortfall x months_in_window, exact
        CAST(c.minimum_units * c.months_in_term - t.window_units * c.months_in_window
             AS DECIMAL(38, 6)) AS units_short_scaled
    FROM closing c
    JOIN totals t USING (contract_id, service_line_id, period)
    LEFT JOIN calc_bands_in_force fb
      ON fb.contract_id = c.contract_id AND fb.service_line_id = c.service_line_id
     AND fb.period = c.period AND fb.band = 1
)
SELECT
    contract_id, service_line_id, period AS billed_period, commitment_from, over,
    window_start, window_end, term_start, term_end, months_in_term, months_in_window,
    CAST(minimum_units AS DECIMAL(38, 6)) AS minimum_units,
    CAST(minimum_charge AS DECIMAL(38, 4)) AS minimum_charge,
    CAST(minimum_charge_in_force AS DECIMAL(38, 4)) AS minimum_charge_in_force,
    window_units, window_usage, CAST(first_base_rate AS DECIMAL(38, 10)) AS first_base_rate,
    CAST(first_rate AS DECIMAL(38, 10)) AS first_rate,
    CAST(CASE WHEN minimum_units IS NOT NULL
              THEN div_round(minimum_units * months_in_term, months_in_window, 10, 'half_up')
         END AS DECIMAL(38, 10)) AS minimum_units_prorated,
    CAST(CASE WHEN minimum_units IS NOT NULL AND units_short_scaled > 0
              THEN div_round(units_short_scaled, months_in_window, 10, 'half_up')
              ELSE 0 END AS DECIMAL(38, 10)) AS shortfall_units,
    CAST(CASE
        -- shortfall x months (6 places) x rate (up to 10) has 16 places, more than div_round's
        -- 12: both taken as integers (10^-6 and 10^-12 units), multiplied and divided once by
        -- muldiv_round, which never forms a product that could pass HUGEINT
        WHEN minimum_units IS NOT NULL AND units_short_scaled > 0
            THEN from_units(muldiv_round(to_units6(units_short_scaled), to_units12(first_rate),
                                         months_in_window, pow10(18 - amount_scale),
                                         rounding_mode), amount_scale)
        WHEN minimum_charge IS NOT NULL
             AND minimum_charge_in_force * months_in_term > window_usage * months_in_window
            THEN div_round(minimum_charge_in_force * months_in_term
                               - window_usage * months_in_window,
                           months_in_window, amount_scale, rounding_mode)
        ELSE 0
    END AS DECIMAL(38, 4)) AS amount,
    description
FROM priced;

INSERT INTO calc_charge_lines BY NAME
SELECT
    w.contract_id, w.billed_period AS period, 'true_up:' || w.service_line_id AS line_key,
    w.service_line_id, 'true_up' AS charge_type,
    CAST(CASE WHEN w.minimum_units IS NOT NULL THEN w.shortfall_units END AS DECIMAL(38, 12))
        AS units,
    CAST(CASE WHEN w.minimum_units IS NOT NULL THEN w.first_base_rate END AS DECIMAL(38, 10))
        AS base_rate,
    l.index_factor,
    CAST(CASE WHEN w.minimum_units IS NOT NULL THEN w.first_rate END AS DECIMAL(38, 10)) AS rate,
    w.amount, false AS capped, c.rounding_mode, c.amount_scale, c.rate_scale,
    w.description || ' true-up: ' || replace(w.over, '_', ' ') || ' '
        || strftime(w.term_start, '%Y-%m') || '..' || strftime(w.term_end, '%Y-%m')
        || ' commitment shortfall' AS description,
    line_sort_order('true_up', l.line_order) AS sort_order
FROM calc_commitment_windows w
JOIN calc_line_units l
  ON l.contract_id = w.contract_id AND l.service_line_id = w.service_line_id
 AND l.period = w.billed_period
JOIN cfg_contracts c ON c.contract_id = w.contract_id
WHERE w.amount > 0;

-- ---------------------------------------------------------------- one-off charges
-- amount / n cut to the amount scale per instalment; the units of the last place left over go
-- one each to the earliest instalments, so the instalments add up to the amount exactly.
-- Instalments that would fall after the contract's end are all billed in its last month.
-- Indexed: each instalment x the month's factor, rounded at the line.
CREATE OR REPLACE TEMP TABLE calc_one_off_instalments AS
WITH agreed AS (
    SELECT o.*, c.amount_scale, c.rounding_mode, c.end_period
    FROM cfg_one_offs o
    JOIN cfg_contracts c USING (contract_id)
    JOIN run_contracts USING (contract_id)
    WHERE o.agreed_on <= (SELECT as_known_at FROM run_params)
),
split AS (
    SELECT
        a.*, i.instalment,
        -- in units of the last place: base share and the remainder spread to the earliest
        to_units12(a.amount) // (pow10(12 - a.amount_scale)) AS total_units,
        CAST(a.first_period + to_months(i.instalment - 1) AS DATE) AS due_period
    FROM agreed a,
    LATERAL (SELECT unnest(range(1, a.instalments + 1)) AS instalment) i
),
shares AS (
    SELECT
        *,
        (total_units // instalments)
            + CASE WHEN instalment <= total_units % instalments THEN 1 ELSE 0 END
            AS instalment_units,
        least(due_period, term_end(end_period)) AS billed_period
    FROM split
)
SELECT
    s.contract_id, s.one_off_id, s.description, s.billed_period AS period,
    CAST(s.instalment AS INTEGER) AS instalment,
    s.instalments, s.due_period, s.in_charges, s.indexed, s.item_order,
    CAST(s.amount AS DECIMAL(38, 4)) AS one_off_amount,
    CAST(s.instalment_units AS DECIMAL(38, 0)) * CAST(pow10(4 - s.amount_scale) AS DECIMAL(38, 0))
        * CAST(0.0001 AS DECIMAL(38, 4)) AS instalment_amount,
    -- the split, stored for reading: the share every instalment gets, the units of the last
    -- place left over, and whether this instalment took one of them
    CAST(s.total_units // s.instalments AS DECIMAL(38, 0))
        * CAST(pow10(4 - s.amount_scale) AS DECIMAL(38, 0)) * CAST(0.0001 AS DECIMAL(38, 4))
        AS base_instalment,
    CAST(s.total_units % s.instalments AS INTEGER) AS remainder_units,
    s.instalment <= s.total_units % s.instalments AS extra_unit,
    CASE WHEN s.indexed THEN f.factor ELSE CAST(1 AS DECIMAL(38, 10)) END AS index_factor,
    s.amount_scale, s.rounding_mode
FROM shares s
JOIN calc_months m ON m.contract_id = s.contract_id AND m.period = s.billed_period
JOIN calc_month_factors f ON f.contract_id = s.contract_id AND f.period = s.billed_period;

-- ---------------------------------------------------------------- pass-through costs
CREATE OR REPLACE TEMP TABLE calc_pass_through_lines AS
SELECT
    p.contract_id, p.period, t.item_id, t.description, t.margin_pct, t.in_charges, t.item_order,
    CAST(count(*) AS INTEGER) AS cost_rows,
    CAST(sum(p.cost) AS DECIMAL(38, 4)) AS cost,
    CAST(round_to(sum(p.cost) * (1 + t.margin_pct), c.amount_scale, c.rounding_mode)
         AS DECIMAL(38, 4)) AS amount
FROM in_pass_through p
JOIN cfg_pass_through t USING (contract_id, item_id)
JOIN cfg_contracts c USING (contract_id)
JOIN calc_months m USING (contract_id, period)
GROUP BY p.contract_id, p.period, t.item_id, t.description, t.margin_pct, t.in_charges,
         t.item_order, c.amount_scale, c.rounding_mode;

-- The one-offs and pass-through costs in one shape, once: where they go depends on in_charges.
-- A pass-through line reads cost x (1 + margin_pct); a one-off line has no quantity or rate.
CREATE OR REPLACE TEMP TABLE calc_term_lines AS
SELECT
    i.contract_id, i.period, 'one_off:' || i.one_off_id AS line_key, 'one_off' AS line_type,
    i.one_off_id AS item_id, i.in_charges,
    CAST(NULL AS DECIMAL(38, 12)) AS quantity, CAST(NULL AS DECIMAL(38, 10)) AS rate,
    CAST(sum(i.instalment_amount) AS DECIMAL(38, 10)) AS base_amount,
    any_value(i.index_factor) AS index_factor,
    CAST(sum(round_to(i.instalment_amount * i.index_factor, i.amount_scale, i.rounding_mode))
         AS DECIMAL(38, 4)) AS amount,
    any_value(i.description)
        || CASE WHEN any_value(i.instalments) > 1
                THEN ' (instalment ' || string_agg(CAST(i.instalment AS VARCHAR), ', '
                                                    ORDER BY i.instalment)
                     || ' of ' || any_value(i.instalments) || ')'
                ELSE '' END AS description,
    line_sort_order('one_off', any_value(i.item_order)) AS sort_order
FROM calc_one_off_instalments i
GROUP BY i.contract_id, i.period, i.one_off_id, i.in_charges
UNION ALL
SELECT
    contract_id, period, 'pass_through:' || item_id, 'pass_through', item_id, in_charges,
    CAST(cost AS DECIMAL(38, 12)), CAST(1 + margin_pct AS DECIMAL(38, 10)),
    CAST(cost AS DECIMAL(38, 10)), CAST(1 AS DECIMAL(38, 10)), CAST(amount AS DECIMAL(38, 4)),
    description, line_sort_order('pass_through', item_order)
FROM calc_pass_through_lines;

INSERT INTO calc_charge_lines BY NAME
SELECT
    t.contract_id, t.period, t.line_key, t.item_id AS fee_id, t.line_type AS charge_type,
    t.quantity AS units, t.base_amount AS base_rate, t.index_factor, t.rate, t.amount,
    false AS capped, c.rounding_mode, c.amount_scale, c.rate_scale, t.description, t.sort_order
FROM calc_term_lines t
JOIN cfg_contracts c USING (contract_id)
WHERE t.in_charges;

-- ---------------------------------------------------------------- FX risk-sharing
-- m = rate(month - lag) / base_rate - 1; e = sign(m) x max(|m| - band_pct, 0);
-- fx_share = C x e x client_share, C = the month's usage, minimum, surge and true-up charges of
-- the applies_to lines. e x base_rate is exact (rate - base_rate x (1 +- band_pct)), so the line
-- is one division by base_rate, rounded once; m and e are stored for reading only.
CREATE OR REPLACE TEMP TABLE calc_fx_shares AS
WITH months AS (
    SELECT
        m.contract_id, m.period, x.delivery_currency, x.base_rate, x.band_pct, x.client_share,
        x.lag_months, CAST(m.period - to_months(x.lag_months) AS DATE) AS rate_period,
        c.amount_scale, c.rounding_mode
    FROM calc_months m
    JOIN cfg_fx_sharing x USING (contract_id)
    JOIN cfg_contracts c USING (contract_id)
),
charges AS (
    SELECT
        mo.contract_id, mo.period,
        CAST(coalesce(sum(cl.amount), 0) AS DECIMAL(38, 4)) AS charges_base
    FROM months mo
    LEFT JOIN calc_charge_lines cl
      ON cl.contract_id = mo.contract_id AND cl.period = mo.period
     AND cl.charge_type IN ('usage', 'minimum', 'surge', 'true_up')
     AND EXISTS (SELECT 1 FROM cfg_fx_lines f
                 WHERE f.contract_id = cl.contract_id AND f.service_line_id = cl.service_line_id)
    GROUP BY ALL
),
moved AS (
    SELECT
        mo.*, r.rate, ch.charges_base,
        CAST(CASE
            WHEN r.rate > mo.base_rate * (1 + mo.band_pct) THEN r.rate - mo.base_rate * (1 + mo.band_pct)
            WHEN r.rate < mo.base_rate * (1 - mo.band_pct) THEN r.rate - mo.base_rate * (1 - mo.band_pct)
            ELSE 0
        END AS DECIMAL(38, 12)) AS shared_rate_move
    FROM months mo
    JOIN charges ch USING (contract_id, period)
    LEFT JOIN in_fx_rates r ON r.currency = mo.delivery_currency AND r.period = mo.rate_period
)
SELECT
    contract_id, period, delivery_currency, rate_period, rate, base_rate, band_pct, client_share,
    lag_months, charges_base,
    CAST(div_round(rate - base_rate, base_rate, 10, 'half_up') AS DECIMAL(38, 10)) AS movement,
    CAST(div_round(shared_rate_move, base_rate, 10, 'half_up') AS DECIMAL(38, 10))
        AS shared_movement,
    -- charges x share x move / base rate, rounded once: the product as an integer count of
    -- 10^-24 (charges and share at 6 places, the move at 12) and the division by the base rate
    -- (10^-12 units) exact; div_round would take the product at 12 places and overflow past 10^14
    CAST(product_ratio_round(
        to_units6(charges_base) * to_units6(client_share) * to_units12(shared_rate_move),
        pow10(12), to_units12(base_rate), amount_scale, rounding_mode) AS DECIMAL(38, 4))
        AS amount
FROM moved;

-- A month whose FX rate is missing stops the run (the engine reads this table).
CREATE OR REPLACE TEMP TABLE calc_missing_fx_rates AS
SELECT contract_id, delivery_currency, rate_period, min(period) AS period
FROM calc_fx_shares
WHERE rate IS NULL
GROUP BY ALL
ORDER BY contract_id, rate_period;

-- Lines billed after credits: one-offs and pass-through outside the charges, and the FX share.
CREATE OR REPLACE TEMP TABLE calc_extra_lines AS
SELECT
    contract_id, period, line_key, line_type, description, quantity, rate,
    CAST(amount AS DECIMAL(38, 4)) AS amount, sort_order
FROM calc_term_lines
WHERE NOT in_charges
UNION ALL
SELECT
    f.contract_id, f.period, 'fx_share', 'fx_share',
    'Currency risk-sharing: ' || f.delivery_currency || ' rate ' || CAST(f.rate AS VARCHAR)
        || ' (' || strftime(f.rate_period, '%Y-%m') || ') vs base ' || CAST(f.base_rate AS VARCHAR),
    CAST(f.charges_base AS DECIMAL(38, 12)), CAST(f.shared_movement AS DECIMAL(38, 10)),
    f.amount, line_sort_order('fx_share', 0)
FROM calc_fx_shares f
WHERE f.amount <> 0;
