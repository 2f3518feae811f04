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
-- (mirrored for lower_is_better), bands the pct of the last band
-- whose worse_than the actual is strictly worse than (none: the first band). multiplier =
-- repeat_multiplier from the 2nd consecutive failure. points: each failed KPI scores its band's
-- points (x repeat_multiplier on a repeat); the month's total maps to pct of charges through
-- points_to_credit (largest from_points <= total). Either way the month's total is capped at
-- monthly_cap_pct x charges; a capped total (and every points total) is rounded once and split
-- over the failed KPIs by the largest-remainder method, ties to the KPI listed first, so the
-- rounded lines add up to it exactly.
-- Round once: a linear severity is kept as the exact fraction severity_numerator /
-- severity_denominator (the clamp compares the two), and a credit rounded on its own is
-- A x allocation x multiplier x numerator / denominator in one exact division rounded at the line
-- (product_ratio_round); the stored 6-place severity is for the reader only. The actual is
-- compared by its exact fraction (actual_numerator / actual_denominator of calc_kpi_results).
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
        r.actual_numerator, r.actual_denominator, r.no_data, r.consecutive_failures,
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
                    WHERE worse_than(
                        f.direction, f.actual_numerator, f.actual_denominator, b.worse_than)
                ),
                1
            )
        END AS band
    FROM failures f
    JOIN regime_bands b USING (contract_id, period, kpi_id)
    GROUP BY f.contract_id, f.period, f.kpi_id, f.value, f.direction, f.actual_numerator,
        f.actual_denominator
),
linear AS (
    -- linear severity as an exact fraction p / q of integers: with the actual n / d (d = 1 for an
    -- input KPI), (target - n / d) / (target - minimum) = (target x d - n) / ((target - minimum)
    -- x d), all in units of 10^-6 (mirrored for lower_is_better). A measured d is a whole count,
    -- so both stay below 10^19 and their product within HUGEINT (muldiv_round).
    SELECT
        f.contract_id, f.period, f.kpi_id,
        CASE f.direction
            WHEN 'higher_is_better'
                THEN to_units6(f.target) * to_units6(f.actual_denominator) // pow10(6)
                     - to_units6(f.actual_numerator)
            ELSE to_units6(f.actual_numerator)
                 - to_units6(f.target) * to_units6(f.actual_denominator) // pow10(6)
        END AS p,
        CASE f.direction
            WHEN 'higher_is_better' THEN to_units6(f.target - f.minimum)
            ELSE to_units6(f.minimum - f.target)
        END * to_units6(f.actual_denominator) // pow10(6) AS q
    FROM failures f
    WHERE f.regime = 'at_risk_pool' AND f.credit_model = 'linear' AND f.value IS NOT NULL
),
scored AS (
    SELECT
        f.*,
        br.band,
        b.worse_than AS band_worse_than,
        -- severity = severity_numerator / severity_denominator exactly, clamped to [0, 1] by
        -- comparing the two (nothing is rounded); the money is computed from this fraction
        CASE
            WHEN f.regime = 'points' THEN NULL
            WHEN f.credit_model = 'binary' OR f.value IS NULL THEN CAST(1 AS HUGEINT)
            WHEN f.credit_model = 'bands' THEN to_units6(b.pct)
            WHEN l.p <= 0 THEN CAST(0 AS HUGEINT)
            WHEN l.p >= l.q THEN l.q
            ELSE l.p
        END AS severity_numerator,
        CASE
            WHEN f.regime = 'points' THEN NULL
            WHEN f.credit_model = 'binary' OR f.value IS NULL THEN CAST(1 AS HUGEINT)
            WHEN f.credit_model = 'bands' THEN pow10(6)
            ELSE l.q
        END AS severity_denominator,
        b.points AS band_points,
        CAST(CASE WHEN f.consecutive_failures >= 2 THEN f.repeat_multiplier ELSE 1 END
             AS DECIMAL(38, 6)) AS multiplier
    FROM failures f
    LEFT JOIN band_reached br USING (contract_id, period, kpi_id)
    LEFT JOIN regime_bands b USING (contract_id, period, kpi_id, band)
    LEFT JOIN linear l USING (contract_id, period, kpi_id)
)
SELECT
    s.*,
    -- for the reader only, rounded to 6 places: no amount is computed from it
    CASE WHEN s.regime <> 'points' THEN product_ratio_round(
        pow10(24), s.severity_numerator, s.severity_denominator, 6, 'half_up')
    END::DECIMAL(38, 6) AS severity,
    CAST(s.band_points * s.multiplier AS DECIMAL(38, 12)) AS points,
    -- the KPI's share of the month's credit in units of 10^-20: allocation x severity x
    -- multiplier (at risk; A is the same for every KPI of the month) or points. Exact for points,
    -- binary and bands; a linear severity that does not end within 20 places is cut there. The
    -- split uses these only for points, or when the exact weights of calc_service_credits
    -- would overflow.
    CASE
        WHEN s.regime = 'points'
            THEN CAST(s.band_points * s.multiplier * CAST(pow10(20) AS DECIMAL(38, 0)) AS HUGEINT)
        ELSE muldiv_floor(
            to_units6(s.allocation_pct) * to_units6(s.multiplier) * pow10(8),
            s.severity_numerator, s.severity_denominator)
    END AS weight_units,
    -- the money before any cap or rounding, as an integer count of 10^-24 (A x allocation x
    -- multiplier, four 6-place terms) with the severity fraction still to apply
    CASE WHEN s.regime = 'at_risk_pool' THEN
        to_units6(ch.charges) * to_units6(g.at_risk_pct) * to_units6(s.allocation_pct)
        * to_units6(s.multiplier)
    END AS credit_terms_units
FROM scored s
JOIN calc_month_charges ch USING (contract_id, period)
JOIN cfg_credit_regimes g USING (contract_id);

CREATE OR REPLACE TEMP TABLE calc_credit_months AS
WITH month_scores AS (
    SELECT
        s.contract_id, s.period, s.regime,
        count(*) AS failed_kpis,
        sum(s.weight_units) AS total_weight_units,
        CAST(sum(s.points) AS DECIMAL(38, 12)) AS points_total,
        -- at risk: the month's exact credits before the cap in units of 10^-24, as the sum of
        -- each one's floor and whether any had a remainder below that unit
        sum(muldiv_floor(s.credit_terms_units, s.severity_numerator, s.severity_denominator))
            AS credits_units24,
        bool_or(muldiv_rem(s.credit_terms_units, s.severity_numerator, s.severity_denominator) > 0)
            AS credits_below_unit24,
        -- at risk: the month's credits as billed if each were rounded on its own
        sum(product_ratio_round(s.credit_terms_units, s.severity_numerator,
                                s.severity_denominator, c.amount_scale, c.rounding_mode))
            AS rounded_alone_total
    FROM calc_credit_scores s
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
        to_units6(g.monthly_cap_pct) * to_units6(ch.charges) * pow10(12) AS cap_units24,
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
        -- for the reader: points pct x charges (exact, 10 places), or the at-risk credits
        -- rounded to 18 places. Each branch is cast first (a CASE takes the narrower scale).
        CASE
            WHEN regime = 'points' THEN CAST(coalesce(points_pct, 0) * charges AS DECIMAL(38, 18))
            ELSE from_units18(int_div_round(credits_units24, pow10(6), 'half_up'))
        END AS uncapped_total
    FROM priced
),
capping AS (
    -- The cap binds when the exact total passes it (compared in units of 10^-24: above when the
    -- floors add up to more, or to exactly the cap with a remainder left), and also when the
    -- total is within the cap but rounding each credit on its own would bill more than the
    -- rounded cap (three credits of 33.335 under a cap of 100.005): the rounded lines never add
    -- up to more than the rounded cap.
    SELECT
        *,
        cap_amount IS NOT NULL AND CASE
            WHEN regime = 'points' THEN coalesce(points_pct, 0) * charges > cap_amount
            ELSE credits_units24 > cap_units24
              OR (credits_units24 = cap_units24 AND credits_below_unit24)
              OR rounded_alone_total > rounded_cap
        END AS capped
    FROM totals
)
SELECT
    * EXCLUDE (credits_units24, credits_below_unit24, cap_units24),
    -- the rounded total that is split by largest remainder; NULL when each credit is rounded alone
    CASE
        WHEN capped THEN rounded_cap
        WHEN regime = 'points' THEN round_to(uncapped_total, amount_scale, rounding_mode)
    END AS split_total
FROM capping;

CREATE OR REPLACE TEMP TABLE calc_service_credits AS
WITH month_rows AS (
    SELECT
        s.*,
        m.charges, m.at_risk_pct, m.at_risk_amount, m.monthly_cap_pct, m.cap_amount,
        m.capped, m.points_total, m.points_pct, m.uncapped_total, m.split_total,
        m.amount_scale, m.rounding_mode,
        -- the total to split, in units of its last place
        CAST(m.split_total * pow10(m.amount_scale) AS HUGEINT) AS total_units,
        -- the severity in lowest terms
        s.severity_numerator // gcd(s.severity_numerator, s.severity_denominator) AS sev_num,
        s.severity_denominator // gcd(s.severity_numerator, s.severity_denominator) AS sev_den
    FROM calc_credit_scores s
    JOIN calc_credit_months m USING (contract_id, period)
),
denominators AS (
    SELECT *, list(sev_den) OVER (PARTITION BY contract_id, period) AS month_sev_dens
    FROM month_rows
),
exact_weights AS (
    -- The exact weights of an at-risk month: allocation x multiplier x severity brought to the
    -- month's common denominator (the lcm of the severities' denominators), as whole numbers.
    -- try() turns an overflow into NULL, and such a month falls back to weight_units below.
    SELECT
        * EXCLUDE (month_sev_dens),
        try(
            to_units6(allocation_pct) * to_units6(multiplier) * sev_num
            * (list_reduce(month_sev_dens, lambda x, y: lcm(x, y)) // sev_den)
        ) AS common_weight
    FROM denominators
),
common_weights AS (
    SELECT *, list(common_weight) OVER (PARTITION BY contract_id, period) AS month_weights
    FROM exact_weights
),
lowest_weights AS (
    -- divided by their greatest common divisor, to keep the products below small
    SELECT
        * EXCLUDE (month_weights),
        try(common_weight // list_reduce(month_weights, lambda x, y: gcd(x, y))) AS exact_weight
    FROM common_weights
),
fits AS (
    SELECT
        *,
        exact_weight IS NOT NULL AND exact_weight < pow10(30)
            AND try(total_units * exact_weight) IS NOT NULL AS exact_fits
    FROM lowest_weights
),
chosen AS (
    -- points are exact as weight_units; an at-risk month is split on its exact weights whenever
    -- they fit HUGEINT with the total (almost always), else on weight_units (cut at 10^-20)
    SELECT
        *,
        regime = 'at_risk_pool'
            AND bool_and(exact_fits) OVER (PARTITION BY contract_id, period) AS split_exact
    FROM fits
),
shares AS (
    SELECT
        * EXCLUDE (common_weight),
        CASE WHEN split_exact THEN exact_weight ELSE weight_units END AS split_weight,
        sum(CASE WHEN split_exact THEN exact_weight ELSE weight_units END)
            OVER (PARTITION BY contract_id, period) AS total_split_weight
    FROM chosen
),
floored AS (
    -- each share cut toward zero to the amount scale; the remainder decides the missing units
    SELECT
        *,
        CASE WHEN total_split_weight > 0
             THEN (total_units * split_weight) // total_split_weight ELSE 0 END AS floor_units,
        CASE WHEN total_split_weight > 0
             THEN (total_units * split_weight) % total_split_weight ELSE 0 END AS remainder_units
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
        -- for the reader, rounded to 18 places: at risk A x allocation x severity x multiplier;
        -- for points the KPI's share of the stepped credit before the cap (the amount is split
        -- from the rounded total)
        CASE
            WHEN regime = 'at_risk_pool' THEN from_units18(muldiv_round(
                credit_terms_units, severity_numerator, severity_denominator, pow10(6), 'half_up'))
            WHEN total_split_weight > 0 THEN CAST(
                div_round(coalesce(points_pct, 0) * charges * points, points_total, 10, 'half_up')
                AS DECIMAL(38, 18))
        END AS uncapped_amount,
        CASE
            -- A x allocation x multiplier x severity fraction, one exact division rounded once
            WHEN split_total IS NULL THEN product_ratio_round(
                credit_terms_units, severity_numerator, severity_denominator,
                amount_scale, rounding_mode)
            ELSE from_units(
                floor_units + CASE WHEN remainder_rank <= missing_units THEN 1 ELSE 0 END,
                amount_scale)
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
    a.credit_model, a.minimum, a.band, a.band_worse_than, a.severity,
    CAST(a.severity_numerator AS DECIMAL(38, 0)) AS severity_numerator,
    CAST(a.severity_denominator AS DECIMAL(38, 0)) AS severity_denominator,
    a.band_points, a.points, a.repeat_multiplier, a.multiplier,
    CAST(a.weight_units AS DECIMAL(38, 0)) * CAST('0.00000000000000000001' AS DECIMAL(38, 20)) AS weight,
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
    a.earn_back_months, e.earn_back_status, e.earn_back_broken_in, e.earned_back_in,
    -- for the reader: the exact figures above rounded with the contract's own terms
    CAST(round_to(a.at_risk_amount, a.amount_scale, a.rounding_mode) AS DECIMAL(38, 4))
        AS at_risk_rounded,
    CAST(round_to(a.uncapped_amount, a.amount_scale, a.rounding_mode) AS DECIMAL(38, 4))
        AS uncapped_rounded,
    CAST(round_to(a.cap_amount, a.amount_scale, a.rounding_mode) AS DECIMAL(38, 4))
        AS cap_rounded
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
  -- at or better: not strictly worse, compared exactly on the actual's fraction
  AND NOT worse_than(r.direction, r.actual_numerator, r.actual_denominator, k.bonus_at_or_better)
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
