-- Exact decimal arithmetic, defined once.
--
-- DuckDB's ROUND on a DECIMAL needs a constant scale and `/` returns DOUBLE, so a contract's own
-- rounding (mode and scale are per contract) and every division that decides money go through these
-- macros. Both work on scaled integers (HUGEINT) and never pass through a float.

-- 10^n as an exact HUGEINT (powers of ten up to 10^22 are exact in a double).
CREATE OR REPLACE TEMP MACRO pow10(n) AS CAST(pow(10, n) AS HUGEINT);

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
        WHEN 'fixed_fee' THEN 5000 + n
        WHEN 'credit' THEN 7000 + n
        WHEN 'earn_back' THEN 7500 + n
        WHEN 'bonus' THEN 8000 + n
        WHEN 'gain_share' THEN 9000
        WHEN 'adjustment' THEN 9500
    END AS INTEGER);

-- An indexation review with no floor or no cap (SPEC 4): a change can fall to -100% and rise
-- without bound, so the clamp is then no clamp. The two sentinels, named once.
CREATE OR REPLACE TEMP MACRO change_floor(review_floor) AS coalesce(review_floor, -1);
CREATE OR REPLACE TEMP MACRO change_cap(review_cap) AS coalesce(review_cap, 1000000);
