-- Exact decimal arithmetic, defined once.
--
-- DuckDB's ROUND on a DECIMAL needs a constant scale and `/` returns DOUBLE, so a contract's own
-- rounding (mode and scale are per contract) and every division that decides money go through these
-- macros. Both work on scaled integers (HUGEINT) and never pass through a float.

-- 10^n as an exact HUGEINT, n in 0..38. Built from text: a double is exact only up to 10^22, and
-- the scaled products below reach 10^24.
CREATE OR REPLACE TEMP MACRO pow10(n) AS CAST(rpad('1', CAST(n + 1 AS INTEGER), '0') AS HUGEINT);

-- The far-future sentinel, defined once: "no end" for a term (end_period NULL) and "every term
-- agreed so far" for a run (as_known_at NULL). Python passes NULL and never spells the date.
-- 9999-12 is the last month Python's dates (years 1-9999) can hold.
CREATE OR REPLACE TEMP MACRO far_future() AS DATE '9999-12-31';

-- The last month of a term: its end_period, or the far-future month when the term is open.
CREATE OR REPLACE TEMP MACRO term_end(end_period) AS
    coalesce(end_period, CAST(date_trunc('month', far_future()) AS DATE));

-- x as an integer count of 10^-6. Exact for every term and input: contract terms are
-- DECIMAL(20, 6), input values DECIMAL(28, 6) and month charges DECIMAL(38, 4).
CREATE OR REPLACE TEMP MACRO to_units6(x) AS
    CAST(CAST(x AS DECIMAL(38, 6)) * CAST(1000000 AS DECIMAL(38, 0)) AS HUGEINT);

-- x as an integer count of 10^-12 (a division's operands are taken at 12 decimal places, far below
-- any scale a quotient is rounded to).
CREATE OR REPLACE TEMP MACRO to_units12(x) AS
    CAST(CAST(x AS DECIMAL(38, 12)) * CAST(1000000000000 AS DECIMAL(38, 0)) AS HUGEINT);

-- Integer quotient q = n / d rounded by `mode`:
--   half_up (half away from zero), half_even, down (toward zero), ceiling (toward +infinity).
CREATE OR REPLACE TEMP MACRO int_div_round(n, d, mode) AS
    (n // d) + CASE
        WHEN n % d = 0 THEN 0
        WHEN mode = 'down' THEN 0
        WHEN mode = 'ceiling' THEN CASE WHEN sign(n) * sign(d) > 0 THEN 1 ELSE 0 END
        WHEN 2 * abs(n % d) > abs(d) THEN sign(n) * sign(d)
        WHEN 2 * abs(n % d) < abs(d) THEN 0
        WHEN mode = 'half_even' AND (n // d) % 2 = 0 THEN 0
        ELSE sign(n) * sign(d)
    END;

-- a / b rounded once to `scale` (0..10) places with `mode`; the result is DECIMAL(38, 10).
CREATE OR REPLACE TEMP MACRO div_round(a, b, scale, mode) AS
    CAST(
        int_div_round(to_units12(a) * pow10(scale), to_units12(b), mode) * pow10(10 - scale)
        AS DECIMAL(38, 0)
    ) * CAST(0.0000000001 AS DECIMAL(38, 10));

-- floor(|x| x |p| / |q|) and its remainder for integers (HUGEINT), without forming |x| x |p|,
-- which may pass 2^127: with |x| = a |q| + b, |x| |p| / |q| = a |p| + b |p| / |q| and
-- b |p| < |q| |p|. Safe while |q| |p| < 10^38 and the quotient itself fits.
CREATE OR REPLACE TEMP MACRO muldiv_floor(x, p, q) AS
    (abs(x) // abs(q)) * abs(p) + ((abs(x) % abs(q)) * abs(p)) // abs(q);
CREATE OR REPLACE TEMP MACRO muldiv_rem(x, p, q) AS ((abs(x) % abs(q)) * abs(p)) % abs(q);

-- The magnitude (f + r / q) / m rounded once to an integer by `mode` (as int_div_round), for an
-- exact value held as a floor f >= 0 and a remainder 0 <= r < q below its unit; m = 10^k moves
-- the unit to the last place kept, and `positive` says which way 'ceiling' goes. With f = u m + w
-- the part below the last place is (w + r / q) / m: above one half when 2w > m, or 2w = m and
-- r > 0, or 2w = m - 1 and 2r > q; exactly one half when 2w = m and r = 0, or 2w = m - 1 and
-- 2r = q. No product of f with anything is formed, so nothing can overflow.
CREATE OR REPLACE TEMP MACRO round_floor_rem(f, r, q, m, mode, positive) AS
    f // m + CASE
        WHEN f % m = 0 AND r = 0 THEN 0
        WHEN mode = 'down' THEN 0
        WHEN mode = 'ceiling' THEN CASE WHEN positive THEN 1 ELSE 0 END
        WHEN 2 * (f % m) > m
          OR (2 * (f % m) = m AND r > 0)
          OR (2 * (f % m) = m - 1 AND 2 * r > q) THEN 1
        WHEN (2 * (f % m) = m AND r = 0) OR (2 * (f % m) = m - 1 AND 2 * r = q)
            THEN CASE WHEN mode = 'half_even' AND (f // m) % 2 = 0 THEN 0 ELSE 1 END
        ELSE 0
    END;

-- The integer x x p / (q x m) rounded once by `mode`, for a product of terms over a quotient: x
-- is the product of the terms in units of 10^-k, p / q the exact quotient and m = 10^(k - scale),
-- so the result counts units of the last place.
CREATE OR REPLACE TEMP MACRO muldiv_round(x, p, q, m, mode) AS
    sign(x) * sign(p) * sign(q) * round_floor_rem(
        muldiv_floor(x, p, q), muldiv_rem(x, p, q), abs(q), m, mode,
        sign(x) * sign(p) * sign(q) > 0);

-- x as an integer count of 10^-22, exactly (from the decimal's own digits): for sums of
-- products that carry up to 22 places (6-place terms times a 10-place index factor).
CREATE OR REPLACE TEMP MACRO to_units22(x) AS
    CAST(replace(CAST(CAST(x AS DECIMAL(38, 22)) AS VARCHAR), '.', '') AS HUGEINT);

-- u units of 10^-scale (0..10) as a DECIMAL(38, 10), exactly.
CREATE OR REPLACE TEMP MACRO from_units(u, scale) AS
    CAST(u * pow10(10 - scale) AS DECIMAL(38, 0)) * CAST(0.0000000001 AS DECIMAL(38, 10));

-- u units of 10^-18 as a DECIMAL(38, 18), exactly (informative columns before rounding).
CREATE OR REPLACE TEMP MACRO from_units18(u) AS
    CAST(u AS DECIMAL(38, 0)) * CAST('0.000000000000000001' AS DECIMAL(38, 18));

-- (x_units / 10^24) x p / q rounded once to `scale` (0..10) places: the product of up to four
-- 6-place terms (to_units6 each, multiplied) times an exact quotient, as money. DECIMAL(38, 10).
CREATE OR REPLACE TEMP MACRO product_ratio_round(x_units, p, q, scale, mode) AS
    from_units(muldiv_round(x_units, p, q, pow10(24 - scale), mode), scale);

-- x rounded to `scale` (0..10) places with the contract's `mode` ('half_up' or 'half_even').
-- DuckDB rounds a DECIMAL exactly at any scale, but only to a constant number of places: hence one
-- branch per scale. The result is DECIMAL(38, 10).
CREATE OR REPLACE TEMP MACRO round_to(x, scale, mode) AS
    CASE
        WHEN mode = 'half_even' THEN CASE scale
            WHEN 0 THEN CAST(round_even(x, 0) AS DECIMAL(38, 10))
            WHEN 1 THEN CAST(round_even(x, 1) AS DECIMAL(38, 10))
            WHEN 2 THEN CAST(round_even(x, 2) AS DECIMAL(38, 10))
            WHEN 3 THEN CAST(round_even(x, 3) AS DECIMAL(38, 10))
            WHEN 4 THEN CAST(round_even(x, 4) AS DECIMAL(38, 10))
            WHEN 5 THEN CAST(round_even(x, 5) AS DECIMAL(38, 10))
            WHEN 6 THEN CAST(round_even(x, 6) AS DECIMAL(38, 10))
            WHEN 7 THEN CAST(round_even(x, 7) AS DECIMAL(38, 10))
            WHEN 8 THEN CAST(round_even(x, 8) AS DECIMAL(38, 10))
            WHEN 9 THEN CAST(round_even(x, 9) AS DECIMAL(38, 10))
            WHEN 10 THEN CAST(round_even(x, 10) AS DECIMAL(38, 10))
        END
        ELSE CASE scale
            WHEN 0 THEN CAST(round(x, 0) AS DECIMAL(38, 10))
            WHEN 1 THEN CAST(round(x, 1) AS DECIMAL(38, 10))
            WHEN 2 THEN CAST(round(x, 2) AS DECIMAL(38, 10))
            WHEN 3 THEN CAST(round(x, 3) AS DECIMAL(38, 10))
            WHEN 4 THEN CAST(round(x, 4) AS DECIMAL(38, 10))
            WHEN 5 THEN CAST(round(x, 5) AS DECIMAL(38, 10))
            WHEN 6 THEN CAST(round(x, 6) AS DECIMAL(38, 10))
            WHEN 7 THEN CAST(round(x, 7) AS DECIMAL(38, 10))
            WHEN 8 THEN CAST(round(x, 8) AS DECIMAL(38, 10))
            WHEN 9 THEN CAST(round(x, 9) AS DECIMAL(38, 10))
            WHEN 10 THEN CAST(round(x, 10) AS DECIMAL(38, 10))
        END
    END;

-- Is the actual n / d (d > 0) strictly worse than x? Compared exactly as n against x x d, never
-- through the rounded quotient: below for higher_is_better, above for lower_is_better. NULL when
-- any part is NULL.
CREATE OR REPLACE TEMP MACRO worse_than(direction, n, d, x) AS
    CASE direction
        WHEN 'higher_is_better'
            THEN CAST(n AS DECIMAL(38, 12)) < CAST(CAST(x AS DECIMAL(38, 6)) * d AS DECIMAL(38, 12))
        ELSE CAST(n AS DECIMAL(38, 12)) > CAST(CAST(x AS DECIMAL(38, 6)) * d AS DECIMAL(38, 12))
    END;

-- Whole months from a to b (both first-of-month dates).
CREATE OR REPLACE TEMP MACRO months_between(a, b) AS
    (year(b) - year(a)) * 12 + month(b) - month(a);

-- The invoice's line order (SPEC 7), named once: a service line's usage, surge and minimum lines
-- together in the order of the contract's service lines, then the fixed fees, the service credits,
-- the earn-backs and the bonuses in the order of the contract's KPIs, then gain-share, then the
-- adjustments. `n` is the line's position among its kind (line_order, fee_order, kpi_order).
CREATE OR REPLACE TEMP MACRO line_sort_order(line_type, n) AS CAST(
    CASE line_type
        WHEN 'usage' THEN 10 + n * 10
        WHEN 'surge' THEN 11 + n * 10
        WHEN 'minimum' THEN 12 + n * 10
        WHEN 'true_up' THEN 13 + n * 10
        WHEN 'fixed_fee' THEN 5000 + n
        WHEN 'pass_through' THEN 5500 + n
        WHEN 'one_off' THEN 5700 + n
        WHEN 'credit' THEN 7000 + n
        WHEN 'earn_back' THEN 7500 + n
        WHEN 'bonus' THEN 8000 + n
        WHEN 'credit_cap_refund' THEN 8500
        WHEN 'fx_share' THEN 8800
        WHEN 'gain_share' THEN 9000
        WHEN 'adjustment' THEN 9500
        WHEN 'dispute' THEN 9600
    END AS INTEGER);

-- An indexation review with no floor or no cap (SPEC 4): a change can fall to -100% and rise
-- without bound, so the clamp is then no clamp. The two sentinels, named once.
CREATE OR REPLACE TEMP MACRO change_floor(review_floor) AS coalesce(review_floor, -1);
CREATE OR REPLACE TEMP MACRO change_cap(review_cap) AS coalesce(review_cap, 1000000);
