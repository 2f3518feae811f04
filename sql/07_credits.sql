-- Service credits, earn-back and bonuses (SPEC 4). Grains:
--   calc_month_charges    per contract and month: charges before credits
--   calc_credit_scores    per contract, month and failed KPI: severity or points, multiplier
--   calc_credit_months    per contract and month with a failure: totals, cap, what is split
--   calc_service_credits  per contract, month and failed KPI: the credit and its earn-back
--   calc_bonuses          per contract, month and bonus KPI at or better than its bonus level
--   calc_credit_lines     per invoice line: credit:<kpi>, earn_back:<kpi>, bonus:<kpi>
--
-- at_risk_pool: A = at_risk_pct x charges; credit = A x allocation_pct x severity x multiplier,
-- with severity binary 1, linear (target - actual) / (target - minimum) clamped to [0, 1]
-- (mirrored for lower_is_better) and rounded to 6 places half up, bands the pct of the last band
-- whose worse_than the actual is strictly worse than (none: the first band). multiplier =
-- repeat_multiplier from the 2nd consecutive failure. points: each failed KPI scores its band's
-- points (x repeat_multiplier on a repeat); the month's total maps to pct of charges through
-- points_to_credit (largest from_points <= total). Either way the month's total is capped at
-- monthly_cap_pct x charges; a capped total (and every points total) is rounded once and split
-- over the failed KPIs by the largest-remainder method, ties to the KPI listed first, so the
-- rounded lines add up to it exactly.
-- Earn-back: met in each of the next earn_back_months counted months (not excused, not no_data)
-- returns the credit in full in the last of them; a failure among them breaks it.
-- Bonus: at or better than bonus.at_or_better, when no KPI of the contract failed that month.
--
-- Interpretations of the spec: a no_data month that counts as a failure (no_data: fail) is scored
-- as the worst case: linear severity 1, the last (most severe) band. A month with 0 points credits
-- nothing whatever points_to_credit says. An excused month earns no bonus (it is not met). The cap
-- also binds when the credits are within it but rounding each on its own would bill more than the
-- rounded cap: the month's rounded credits never exceed the rounded cap.

-- A KPI value as text for invoice descriptions: at least 4 places, more only when it has them.
CREATE OR REPLACE MACRO kpi_text(v) AS
    CASE
        WHEN v = round(v, 4) THEN CAST(CAST(v AS DECIMAL(38, 4)) AS VARCHAR)
        ELSE rtrim(CAST(v AS VARCHAR), '0')
    END;

-- A multiplier or a points count without trailing zeros: 2.000000 -> 2, 1.500000 -> 1.5.
CREATE OR REPLACE MACRO num_text(v) AS
    rtrim(rtrim(CAST(CAST(v AS DECIMAL(38, 6)) AS VARCHAR), '0'), '.');

-- Every charge line is rounded to amount_scale (at most 4 places), so DECIMAL(38, 4) holds the sum
-- exactly, and keeps the scale of the products below within 38 (A x weight is at scale 28).
CREATE OR REPLACE TEMP TABLE calc_month_charges AS
SELECT
    m.contract_id, m.period,
    CAST(coalesce(sum(cl.amount), 0) AS DECIMAL(38, 4)) AS charges
FROM calc_months m
LEFT JOIN calc_charge_lines cl USING (contract_id, period)
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE calc_credit_scores AS
WITH failures AS (
    SELECT
        r.contract_id, r.period, r.kpi_id, r.kpi_order, r.value, r.target, r.direction,
        r.no_data, r.consecutive_failures,
        g.regime, k.credit_model, k.minimum, k.allocation_pct, k.repeat_multiplier,
        k.earn_back_months
    FROM calc_kpi_results r
    JOIN cfg_kpis k USING (contract_id, kpi_id)
    JOIN cfg_credit_regimes g USING (contract_id)
    WHERE r.status = 'failed'
),
regime_bands AS (
    -- a KPI may carry credit bands (pct) and points bands (points); each regime reads its own
    SELECT f.contract_id, f.period, f.kpi_id, b.band, b.worse_than, b.pct, b.points
    FROM failures f
    JOIN cfg_kpi_bands b USING (contract_id, kpi_id)
    WHERE (f.regime = 'points' AND b.points IS NOT NULL)
       OR (f.regime = 'at_risk_pool' AND f.credit_model = 'bands' AND b.pct IS NOT NULL)
),
band_reached AS (
    -- bands run from mild to severe: the last one the actual is strictly worse than; a failure
    -- worse than no band takes the first, and a failure without a value the last
    SELECT
        f.contract_id, f.period, f.kpi_id,
        CASE
            WHEN f.value IS NULL THEN max(b.band)
            ELSE coalesce(
                max(b.band) FILTER (
                    WHERE (f.direction = 'higher_is_better' AND f.value < b.worse_than)
                       OR (f.direction = 'lower_is_better' AND f.value > b.worse_than)
                ),
                1
            )
        END AS band
    FROM failures f
    JOIN regime_bands b USING (contract_id, period, kpi_id)
    GROUP BY f.contract_id, f.period, f.kpi_id, f.value, f.direction
),
scored AS (
    SELECT
        f.*,
        br.band,
        b.worse_than AS band_worse_than,
        CAST(CASE
            WHEN f.regime = 'points' THEN NULL
            WHEN f.credit_model = 'binary' THEN 1
            WHEN f.credit_model = 'bands' THEN b.pct
            WHEN f.value IS NULL THEN 1
            -- an exact quotient rounded once to 6 places, then clamped
            WHEN f.direction = 'higher_is_better' THEN least(greatest(
                div_round(f.target - f.value, f.target - f.minimum, 6, 'half_up'), 0), 1)
            ELSE least(greatest(
                div_round(f.value - f.target, f.minimum - f.target, 6, 'half_up'), 0), 1)
        END AS DECIMAL(38, 6)) AS severity,
        b.points AS band_points,
        CAST(CASE WHEN f.consecutive_failures >= 2 THEN f.repeat_multiplier ELSE 1 END
             AS DECIMAL(38, 6)) AS multiplier
    FROM failures f
    LEFT JOIN band_reached br USING (contract_id, period, kpi_id)
    LEFT JOIN regime_bands b USING (contract_id, period, kpi_id, band)
)
SELECT
    s.*,
    CAST(s.band_points * s.multiplier AS DECIMAL(38, 12)) AS points,
    -- the KPI's share of the month's credit: allocation x severity x multiplier (at risk; A is the
    -- same for every KPI of the month) or points; exact at 18 places. Each branch is cast first:
    -- a CASE over DECIMALs of different scales silently takes the narrower scale.
    CASE
        WHEN s.regime = 'points' THEN CAST(s.band_points * s.multiplier AS DECIMAL(38, 18))
        ELSE CAST(s.allocation_pct * s.severity * s.multiplier AS DECIMAL(38, 18))
    END AS weight
FROM scored s;

CREATE OR REPLACE TEMP TABLE calc_credit_months AS
WITH month_scores AS (
    SELECT
        s.contract_id, s.period, s.regime,
        count(*) AS failed_kpis,
        sum(s.weight) AS total_weight,
        CAST(sum(s.points) AS DECIMAL(38, 12)) AS points_total,
        -- at risk: the month's credits as billed if each were rounded on its own
        sum(round_to(g.at_risk_pct * ch.charges * s.weight, c.amount_scale, c.rounding_mode))
            AS rounded_alone_total
    FROM calc_credit_scores s
    JOIN calc_month_charges ch USING (contract_id, period)
    JOIN cfg_credit_regimes g USING (contract_id)
    JOIN cfg_contracts c USING (contract_id)
    GROUP BY ALL
),
priced AS (
    SELECT
        ms.*,
        ch.charges,
        g.at_risk_pct, g.monthly_cap_pct,
        c.amount_scale, c.rounding_mode,
        g.at_risk_pct * ch.charges AS at_risk_amount,
        g.monthly_cap_pct * ch.charges AS cap_amount,
        round_to(g.monthly_cap_pct * ch.charges, c.amount_scale, c.rounding_mode)
            AS rounded_cap,
        p.from_points AS points_step_from,
        CASE WHEN ms.regime = 'points' AND ms.points_total > 0 THEN coalesce(p.pct, 0) END
            AS points_pct
    FROM month_scores ms
    JOIN calc_month_charges ch USING (contract_id, period)
    JOIN cfg_credit_regimes g USING (contract_id)
    JOIN cfg_contracts c USING (contract_id)
    ASOF LEFT JOIN cfg_points_to_credit p
        ON p.contract_id = ms.contract_id AND ms.points_total >= p.from_points
),
totals AS (
    SELECT
        *,
        -- exact before the cap: A x sum(weight) at scale 28, or points pct x charges at scale 10
        CASE
            WHEN regime = 'points' THEN CAST(coalesce(points_pct, 0) * charges AS DECIMAL(38, 28))
            ELSE CAST(at_risk_amount * total_weight AS DECIMAL(38, 28))
        END AS uncapped_total
    FROM priced
),
capping AS (
    -- The cap binds when the exact total passes it, and also when the total is within the cap but
    -- rounding each credit on its own would bill more than the rounded cap (three credits of
    -- 33.335 under a cap of 100.005): the rounded lines never add up to more than the rounded cap.
    SELECT
        *,
        cap_amount IS NOT NULL AND (
            uncapped_total > cap_amount
            OR (regime = 'at_risk_pool' AND rounded_alone_total > rounded_cap)
        ) AS capped
    FROM totals
)
SELECT
    *,
    -- the rounded total that is split by largest remainder; NULL when each credit is rounded alone
    CASE
        WHEN capped THEN rounded_cap
        WHEN regime = 'points' THEN round_to(uncapped_total, amount_scale, rounding_mode)
    END AS split_total
FROM capping;

CREATE OR REPLACE TEMP TABLE calc_service_credits AS
WITH shares AS (
    -- integer arithmetic (HUGEINT) keeps the split exact: the total in units of the last place,
    -- the weights in units of 10^-18
    SELECT
        s.*,
        m.charges, m.at_risk_pct, m.at_risk_amount, m.monthly_cap_pct, m.cap_amount,
        m.capped, m.points_total, m.points_pct, m.uncapped_total, m.split_total,
        m.amount_scale, m.rounding_mode,
        CAST(m.split_total * pow10(m.amount_scale) AS HUGEINT) AS total_units,
        CAST(s.weight * CAST(pow10(18) AS DECIMAL(38, 0)) AS HUGEINT) AS weight_units,
        sum(CAST(s.weight * CAST(pow10(18) AS DECIMAL(38, 0)) AS HUGEINT))
            OVER (PARTITION BY s.contract_id, s.period) AS total_weight_units
    FROM calc_credit_scores s
    JOIN calc_credit_months m USING (contract_id, period)
),
floored AS (
    -- each share cut toward zero to the amount scale; the remainder decides the missing units
    SELECT
        *,
        CASE WHEN total_weight_units > 0
             THEN (total_units * weight_units) // total_weight_units ELSE 0 END AS floor_units,
        CASE WHEN total_weight_units > 0
             THEN (total_units * weight_units) % total_weight_units ELSE 0 END AS remainder_units
    FROM shares
),
ranked AS (
    SELECT
        *,
        total_units - sum(floor_units) OVER (PARTITION BY contract_id, period) AS missing_units,
        row_number() OVER (
            PARTITION BY contract_id, period ORDER BY remainder_units DESC, kpi_order
        ) AS remainder_rank
    FROM floored
),
amounts AS (
    SELECT
        *,
        -- exact for at_risk_pool; for points the KPI's share of the stepped credit before the cap,
        -- for the reader only (rounded to 10 places: the amount is split from the rounded total)
        CASE
            WHEN regime = 'at_risk_pool' THEN CAST(at_risk_amount * weight AS DECIMAL(38, 28))
            WHEN total_weight_units > 0 THEN CAST(
                div_round(coalesce(points_pct, 0) * charges * points, points_total, 10, 'half_up')
                AS DECIMAL(38, 28))
        END AS uncapped_amount,
        CASE
            WHEN split_total IS NULL
                THEN round_to(at_risk_amount * weight, amount_scale, rounding_mode)
            -- units of the last place back to money: an exact quotient by 10^amount_scale
            ELSE div_round(
                floor_units + CASE WHEN remainder_rank <= missing_units THEN 1 ELSE 0 END,
                pow10(amount_scale), amount_scale, 'down')
        END AS amount
    FROM ranked
),
counted_months AS (
    -- earn-back counts only months that are met or failed: excused and no_data months are skipped
    SELECT
        contract_id, kpi_id, period, status,
        row_number() OVER (PARTITION BY contract_id, kpi_id ORDER BY period) AS seq
    FROM calc_kpi_results
    WHERE status IN ('met', 'failed')
),
next_failures AS (
    SELECT
        *,
        min(CASE WHEN status = 'failed' THEN seq END) OVER (
            PARTITION BY contract_id, kpi_id ORDER BY seq
            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
        ) AS next_failure_seq
    FROM counted_months
),
earn_back AS (
    SELECT
        a.contract_id, a.period, a.kpi_id,
        CASE
            WHEN nf.next_failure_seq <= nf.seq + a.earn_back_months THEN 'broken'
            WHEN last_month.period IS NOT NULL THEN 'earned_back'
            ELSE 'pending'
        END AS earn_back_status,
        CASE WHEN nf.next_failure_seq <= nf.seq + a.earn_back_months THEN broke.period END
            AS earn_back_broken_in,
        CASE WHEN coalesce(nf.next_failure_seq > nf.seq + a.earn_back_months, true)
             THEN last_month.period END AS earned_back_in
    FROM amounts a
    JOIN next_failures nf USING (contract_id, kpi_id, period)
    LEFT JOIN counted_months last_month
      ON last_month.contract_id = a.contract_id
     AND last_month.kpi_id = a.kpi_id
     AND last_month.seq = nf.seq + a.earn_back_months
    LEFT JOIN counted_months broke
      ON broke.contract_id = a.contract_id
     AND broke.kpi_id = a.kpi_id
     AND broke.seq = nf.next_failure_seq
    WHERE a.earn_back_months IS NOT NULL
)
SELECT
    -- keys
    a.contract_id, a.period, a.kpi_id, a.kpi_order, a.regime,
    -- the failure
    a.value, a.target, a.direction, a.no_data, a.consecutive_failures,
    -- scoring
    a.credit_model, a.minimum, a.band, a.band_worse_than, a.severity, a.band_points, a.points,
    a.repeat_multiplier, a.multiplier, a.weight,
    -- the month
    a.charges, a.at_risk_pct, a.at_risk_amount, a.allocation_pct, a.uncapped_amount,
    a.points_total, a.points_pct, a.uncapped_total AS month_uncapped_total,
    a.monthly_cap_pct, a.cap_amount, a.capped, a.split_total,
    -- the largest-remainder split (NULL when each credit is rounded alone)
    CASE WHEN a.split_total IS NOT NULL THEN a.floor_units END AS floor_units,
    CASE WHEN a.split_total IS NOT NULL THEN a.remainder_units END AS remainder_units,
    CASE WHEN a.split_total IS NOT NULL THEN a.remainder_rank <= a.missing_units END
        AS extra_unit,
    -- outcome
    a.amount, a.amount_scale, a.rounding_mode,
    a.earn_back_months, e.earn_back_status, e.earn_back_broken_in, e.earned_back_in
FROM amounts a
LEFT JOIN earn_back e USING (contract_id, period, kpi_id)
ORDER BY a.contract_id, a.period, a.kpi_order;

CREATE OR REPLACE TEMP TABLE calc_bonuses AS
WITH month_failures AS (
    SELECT
        contract_id, period,
        string_agg(kpi_id, ', ' ORDER BY kpi_order) FILTER (WHERE status = 'failed')
            AS failed_kpis
    FROM calc_kpi_results
    GROUP BY ALL
)
SELECT
    r.contract_id, r.period, r.kpi_id, r.kpi_order, r.value, r.direction,
    k.bonus_at_or_better, k.bonus_pct, ch.charges,
    mf.failed_kpis AS suppressed_by,
    mf.failed_kpis IS NOT NULL AS suppressed,
    CASE
        WHEN mf.failed_kpis IS NULL
            THEN round_to(k.bonus_pct * ch.charges, c.amount_scale, c.rounding_mode)
        ELSE CAST(0 AS DECIMAL(38, 10))
    END AS amount
FROM calc_kpi_results r
JOIN cfg_kpis k USING (contract_id, kpi_id)
JOIN cfg_contracts c USING (contract_id)
JOIN calc_month_charges ch USING (contract_id, period)
JOIN month_failures mf USING (contract_id, period)
WHERE k.bonus_pct IS NOT NULL
  AND r.status = 'met'
  AND CASE r.direction
        WHEN 'higher_is_better' THEN r.value >= k.bonus_at_or_better
        ELSE r.value <= k.bonus_at_or_better
      END
ORDER BY r.contract_id, r.period, r.kpi_order;

CREATE OR REPLACE TEMP TABLE calc_credit_lines AS
WITH credit_lines AS (
    SELECT
        sc.contract_id, sc.period, 'credit:' || sc.kpi_id AS line_key, 'credit' AS line_type,
        sc.kpi_id,
        k.description || ': service credit ('
            || CASE WHEN sc.no_data THEN 'no data, counted as a failure; target '
                    ELSE 'actual ' || kpi_text(sc.value) || ' vs target ' END
            || kpi_text(sc.target)
            || CASE WHEN sc.regime = 'points'
                    THEN '; ' || num_text(sc.points)
                         || CASE WHEN sc.points = 1 THEN ' point' ELSE ' points' END
                    ELSE '' END
            || CASE WHEN sc.multiplier > 1
                    THEN '; consecutive failure ' || sc.consecutive_failures
                         || ', x' || num_text(sc.multiplier)
                    ELSE '' END
            || CASE WHEN sc.capped THEN '; pro rata to the monthly cap' ELSE '' END
            || ')' AS description,
        -sc.amount AS amount,
        line_sort_order('credit', sc.kpi_order) AS sort_order
    FROM calc_service_credits sc
    JOIN cfg_kpis k USING (contract_id, kpi_id)
    WHERE sc.amount <> 0
),
earn_back_lines AS (
    -- two earn-backs of one KPI landing in the same month make one line
    SELECT
        sc.contract_id, sc.earned_back_in AS period, 'earn_back:' || sc.kpi_id AS line_key,
        'earn_back' AS line_type, sc.kpi_id,
        any_value(k.description) || ': earn-back of the service credit for '
            || string_agg(strftime(sc.period, '%Y-%m'), ', ' ORDER BY sc.period)
            || ' (target met in the ' || any_value(sc.earn_back_months)
            || ' following assessed months)' AS description,
        sum(sc.amount) AS amount,
        line_sort_order('earn_back', any_value(sc.kpi_order)) AS sort_order
    FROM calc_service_credits sc
    JOIN cfg_kpis k USING (contract_id, kpi_id)
    WHERE sc.earned_back_in IS NOT NULL AND sc.amount <> 0
    GROUP BY sc.contract_id, sc.earned_back_in, sc.kpi_id
),
bonus_lines AS (
    SELECT
        b.contract_id, b.period, 'bonus:' || b.kpi_id AS line_key, 'bonus' AS line_type,
        b.kpi_id,
        k.description || ': performance bonus (actual ' || kpi_text(b.value)
            || ' at or better than ' || kpi_text(b.bonus_at_or_better) || '; '
            || num_text(b.bonus_pct * 100) || '% of charges)' AS description,
        b.amount,
        line_sort_order('bonus', b.kpi_order) AS sort_order
    FROM calc_bonuses b
    JOIN cfg_kpis k USING (contract_id, kpi_id)
    WHERE NOT b.suppressed AND b.amount <> 0
)
SELECT
    contract_id, period, line_key, line_type, kpi_id, description,
    NULL::DECIMAL(38, 6) AS quantity,
    NULL::DECIMAL(38, 10) AS rate,
    CAST(amount AS DECIMAL(38, 10)) AS amount,
    sort_order::INTEGER AS sort_order
FROM (
    SELECT * FROM credit_lines
    UNION ALL SELECT * FROM earn_back_lines
    UNION ALL SELECT * FROM bonus_lines
)
ORDER BY contract_id, period, sort_order;
