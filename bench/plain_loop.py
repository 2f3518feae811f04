"""The yardstick a user would write by hand: a plain per-contract Python loop that settles the
portfolio's pricing (SPEC 3), indexation (SPEC 4) and at-risk service credits (SPEC 4), in exact
`Decimal`, with no database and no writes.

It is plain, not slow on purpose: inputs are read once with PyArrow and grouped by contract into
dicts, terms come from the same validated contracts the engine loads, every lookup inside a
contract is a dict access, and each contract is settled month by month with the spec's formulas.
Its lines are compared one by one with what the engine stores for the same portfolio
(`charge_lines` and, for at-risk-pool contracts, `service_credits`), so the comparison is between
two implementations that give the same answers.

What it leaves out, which the engine does on top (so the comparison flatters the loop): input
validation, measuring KPIs from raw interactions (it is given the engine's measured counts, the
numerator and denominator of each measured KPI, never the 6-place quotient shown), the points
regime, earn-back and bonuses, gain-share, the invoice, reconciliation, and storing.

    python bench/plain_loop.py --contracts DIR --data DIR [--db FILE]   # settle and compare
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal
from fractions import Fraction
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipelines.config import Contract  # noqa: E402
from pipelines.contract_cache import load_contracts  # noqa: E402

MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
ZERO, ONE = Decimal(0), Decimal(1)
WIDE = Context(prec=60)  # exact enough that a quotient rounded to 10 places is rounded once
NO_CAP, NO_FLOOR = Decimal(1_000_000), Decimal(-1)

Key = tuple[str, dt.date, str]


def rnd(x: Decimal, scale: int, mode: str) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-scale), rounding=MODES[mode])


def ratio(a: Decimal, b: Decimal, places: int) -> Decimal:
    """a / b rounded once, half away from zero (the engine's div_round)."""
    return WIDE.divide(a, b).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def rnd_exact(x: Fraction, scale: int, mode: str) -> Decimal:
    """An exact fraction rounded once to `scale` places (half_up: half away from zero)."""
    whole, rest = divmod(abs(x.numerator) * 10**scale, x.denominator)
    if 2 * rest > x.denominator or (
        2 * rest == x.denominator and (mode == "half_up" or whole % 2 == 1)
    ):
        whole += 1
    return Decimal(-whole if x < 0 else whole).scaleb(-scale, WIDE)


def add_months(d: dt.date, n: int) -> dt.date:
    m = d.year * 12 + d.month - 1 + n
    return dt.date(m // 12, m % 12 + 1, 1)


# --------------------------------------------------------------------------- inputs


class Inputs:
    """The Parquet inputs as plain dicts keyed by contract (read once, not per contract)."""

    def __init__(self, data_dir: Path, measured: dict[tuple[str, str, dt.date], Fraction]):
        def rows(folder: str) -> list[dict]:
            files = sorted((data_dir / folder).rglob("*.parquet"))
            return [r for f in files for r in pq.read_table(f).to_pylist()]

        self.volumes: dict[str, dict[tuple[str, dt.date], tuple]] = defaultdict(dict)
        for r in rows("volumes"):
            self.volumes[r["contract_id"]][(r["service_line_id"], r["period"])] = (
                r["units"],
                r.get("forecast_units"),
            )
        # every KPI actual as an exact Fraction: an input value as given, a measured one as its
        # counts' quotient (rounding it to the 6 places shown would move a linear severity)
        self.kpis: dict[str, dict[tuple[str, dt.date], Fraction]] = defaultdict(dict)
        for r in rows("kpis"):
            if r["value"] is not None:
                self.kpis[r["contract_id"]][(r["kpi_id"], r["period"])] = Fraction(r["value"])
        for (cid, kid, period), value in measured.items():
            self.kpis[cid][(kid, period)] = value
        self.excused: dict[str, set[tuple[str | None, dt.date]]] = defaultdict(set)
        for r in rows("exclusions"):
            if r.get("starts_at") is None:  # only a whole-month row excuses a KPI
                self.excused[r["contract_id"]].add((r.get("kpi_id"), r["period"]))
        self.index: dict[tuple[str, dt.date], Decimal] = {
            (r["index_id"], r["period"]): r["value"] for r in rows("index_values")
        }


# --------------------------------------------------------------------------- indexation


def month_factors(c: Contract, months: list[dt.date], index: dict) -> dict[dt.date, Decimal]:
    """The factor in force each month: 1 before the first review, then each review's (SPEC 4)."""
    ix = c.indexation
    if ix is None:
        return {}
    mode, scale = c.rounding.mode, ix.factor_scale
    weights = (
        [(b.index_id, b.weight) for b in ix.basket]
        if ix.basket is not None
        else [(ix.index_id, ix.indexed_share if ix.indexed_share is not None else ONE)]
    )
    floor = ix.floor if ix.floor is not None else NO_FLOOR
    cap = ix.cap if ix.cap is not None else NO_CAP
    reviews: list[tuple[dt.date, Decimal]] = []
    factor, n = ONE, 0
    while (review := add_months(ix.first_review, n * ix.review_every_months)) <= months[-1]:
        reference = add_months(review, -ix.lag_months)
        if ix.method == "base_relative" or n == 0:
            previous = ix.base_period
        else:
            previous = add_months(ix.first_review, (n - 1) * ix.review_every_months - ix.lag_months)
        changes = [
            (w, ratio(index[(i, reference)], index[(i, previous)], 10) - 1) for i, w in weights
        ]
        if ix.method == "base_relative":
            step = rnd((1 - sum(w for w, _ in changes)) + sum(w * (1 + ch) for w, ch in changes),
                       scale, mode)  # fmt: skip
            factor = rnd(min(max(step, factor * (1 + floor)), factor * (1 + cap)), scale, mode)
        else:
            step = 1 + sum(w * min(max(ch, floor), cap) for w, ch in changes)
            factor = rnd(factor * step, scale, mode)
        reviews.append((review, factor))
        n += 1
    out, current, k = {}, ONE, 0
    for m in months:
        while k < len(reviews) and reviews[k][0] <= m:
            current = reviews[k][1]
            k += 1
        out[m] = current
    return out


# --------------------------------------------------------------------------- pricing


def in_force(entries: list, period: dt.date):
    best = None
    for e in entries:
        if (e.effective_from or dt.date.min) <= period:
            best = e
    return best


def price_line(sl, p, units, forecast, f, indexed, scale, rate_scale, mode, itemise):
    """(line_key, amount) of one service line in one month (SPEC 3)."""
    out: list[tuple[str, Decimal]] = []

    def money(x):
        return rnd(x * f, scale, mode) if indexed and x is not None else x

    rates = [rnd(b.rate * f, rate_scale, mode) if indexed else b.rate for b in p.bands]
    fees = [money(b.flat_fee) for b in p.bands]
    surge_units = ZERO
    if p.surge is not None and forecast is not None:
        surge_rate = rnd(p.surge.rate * f, rate_scale, mode) if indexed else p.surge.rate
        surge_units = max(units - forecast * (1 + p.surge.over_forecast_pct), ZERO)
    banded = units - surge_units
    usage: list[tuple[str, Decimal]] = []
    if p.model == "package":
        if banded > 0:
            packages = math.ceil(banded / p.package_size)
            usage.append(("", rnd(packages * money(p.package_price), scale, mode)))
    elif banded > 0:
        parts: list[tuple[int, Decimal]] = []
        lower = ZERO
        for k, band in enumerate(p.bands, start=1):
            up_to = band.up_to
            if p.model in ("graduated", "per_unit"):
                inside = max(min(banded, up_to if up_to is not None else banded) - lower, ZERO)
                if inside > 0:
                    parts.append((k, inside * rates[k - 1] + fees[k - 1]))
            elif (banded > lower or k == 1) and (up_to is None or banded <= up_to):
                if p.model == "volume":
                    parts.append((k, banded * rates[k - 1] + fees[k - 1]))
                else:  # stairstep
                    parts.append((k, fees[k - 1]))
            lower = up_to if up_to is not None else lower
        if parts and itemise and p.model == "graduated":
            usage = [(f":band{k}", rnd(a, scale, mode)) for k, a in parts]
        elif parts:
            total = sum((a for _, a in parts), ZERO)
            cap = money(p.maximum_charge)
            if cap is not None:
                total = min(total, cap)
            usage = [("", rnd(total, scale, mode))]
    for suffix, amount in usage:
        out.append((f"usage:{sl}{suffix}", amount))
    if surge_units > 0:
        out.append((f"surge:{sl}", rnd(surge_units * surge_rate, scale, mode)))
    usage_amount = sum((a for _, a in usage), ZERO)
    shortfall_units = max(p.minimum_units - units, ZERO) if p.minimum_units is not None else ZERO
    shortfall = rnd(shortfall_units * (rates[0] if rates else ZERO), scale, mode)
    floor = money(p.minimum_charge)
    top_up = max(floor - usage_amount - shortfall, ZERO) if floor is not None else ZERO
    if shortfall_units > 0 or (floor is not None and usage_amount < floor):
        out.append((f"minimum:{sl}", shortfall + top_up))
    return out


# --------------------------------------------------------------------------- credits


def credits(c: Contract, period, charges, kpis, excused, runs) -> list[tuple[str, Decimal]]:
    """(kpi_id, amount) of the month's at-risk-pool credits; `runs` carries each KPI's count of
    consecutive failures from month to month (excused and no-data months leave it alone).

    Worked in exact Fractions from the actual to the line, as by hand: the severity, each KPI's
    share and the pool are never rounded, and each amount is rounded once with the contract's
    mode and scale (a 60-digit or 28-digit Decimal quotient would round on the way)."""
    sc = c.service_credits
    scale, mode = c.rounding.amount_scale, c.rounding.mode
    failed = []
    for order, k in enumerate(sc.kpis):
        target = in_force(k.target, period)
        value = kpis.get((k.id, period))
        if (k.id, period) in excused or (None, period) in excused or target is None:
            continue
        if value is None and k.no_data != "fail":
            continue
        t = Fraction(target.value)
        worse = value is None or (value < t if k.direction == "higher_is_better" else value > t)
        if not worse:
            runs[k.id] = 0
            continue
        runs[k.id] = runs.get(k.id, 0) + 1
        if k.credit.model == "binary" or value is None and k.credit.model == "linear":
            severity = Fraction(1)
        elif k.credit.model == "linear":
            lowest = Fraction(k.minimum)
            raw = (
                (t - value) / (t - lowest)
                if k.direction == "higher_is_better"
                else ((value - t) / (lowest - t))
            )
            severity = min(max(raw, Fraction(0)), Fraction(1))
        else:  # bands: the last band the actual is strictly worse than; none: the first
            bands = k.credit.bands
            reached = len(bands) if value is None else 1
            for i, b in enumerate(bands, start=1):
                if value is not None and (
                    value < Fraction(b.worse_than)
                    if k.direction == "higher_is_better"
                    else value > Fraction(b.worse_than)
                ):
                    reached = i
            severity = Fraction(bands[reached - 1].pct)
        multiplier = Fraction(k.repeat_multiplier if runs[k.id] >= 2 else ONE)
        failed.append((order, k.id, Fraction(k.allocation_pct or ZERO) * severity * multiplier))
    if not failed:
        return []
    charges = Fraction(charges)
    at_risk = Fraction(sc.at_risk_pct or ZERO) * charges
    cap_pct = sc.monthly_cap_pct if sc.monthly_cap_pct is not None else sc.at_risk_pct
    alone = [(kid, rnd_exact(at_risk * w, scale, mode)) for _, kid, w in failed]
    if cap_pct is None:
        return alone
    cap = Fraction(cap_pct) * charges
    rounded_cap = rnd_exact(cap, scale, mode)
    total_weight = sum(w for _, _, w in failed)
    if not (at_risk * total_weight > cap or sum(a for _, a in alone) > rounded_cap):
        return alone
    # capped: the rounded cap split by the largest-remainder method, ties to the KPI listed first
    unit = Decimal(1).scaleb(-scale)
    units = int(rounded_cap.scaleb(scale, WIDE))
    if total_weight == 0:
        return [(kid, ZERO) for _, kid, _ in failed]
    shares = []
    for order, kid, w in failed:
        exact = units * w / total_weight
        whole = exact.numerator // exact.denominator
        shares.append([order, kid, whole, exact - whole])
    missing = units - sum(s[2] for s in shares)
    for s in sorted(shares, key=lambda s: (-s[3], s[0]))[:missing]:
        s[2] += 1
    return [(kid, whole * unit) for _, kid, whole, _ in shares]


# --------------------------------------------------------------------------- the loop


def settle(contracts: list[Contract], inputs: Inputs, last: dt.date):
    """Every contract, month by month: charge lines and at-risk credits."""
    lines: dict[Key, Decimal] = {}
    credit_lines: dict[Key, Decimal] = {}
    for c in contracts:
        cid = c.contract_id
        end = min(c.end, last) if c.end else last
        months = [add_months(c.start, i) for i in range(_months(c.start, end) + 1)]
        factors = month_factors(c, months, inputs.index)
        ix = c.indexation
        if ix is None:
            indexed = set()
        elif ix.applies_to is not None:
            indexed = set(ix.applies_to)
        else:
            indexed = {s.id for s in c.service_lines} | {f.id for f in c.fixed_fees if f.indexed}
        vols, kpis, excused = inputs.volumes[cid], inputs.kpis[cid], inputs.excused[cid]
        scale, rate_scale, mode = c.rounding.amount_scale, c.rounding.rate_scale, c.rounding.mode
        at_risk = c.service_credits is not None and c.service_credits.regime == "at_risk_pool"
        runs: dict[str, int] = {}
        fees_by_id: dict[str, list] = defaultdict(list)
        for fee in c.fixed_fees:
            fees_by_id[fee.id].append(fee)
        for period in months:
            f = factors.get(period, ONE)
            charges = ZERO
            for sl in c.service_lines:
                p = in_force(sl.pricing, period)
                units, forecast = vols.get((sl.id, period), (ZERO, None))
                itemise = p.itemise_bands if p.itemise_bands is not None else sl.itemise_bands
                for key, amount in price_line(sl.id, p, units, forecast, f, sl.id in indexed,
                                              scale, rate_scale, mode, itemise):  # fmt: skip
                    lines[(cid, period, key)] = amount
                    charges += amount
            for fee_id, entries in fees_by_id.items():
                fee = in_force(entries, period)
                if fee is not None:
                    amount = rnd(fee.amount * (f if fee_id in indexed else ONE), scale, mode)
                    lines[(cid, period, f"fixed:{fee_id}")] = amount
                    charges += amount
            if at_risk:
                for kid, amount in credits(c, period, charges, kpis, excused, runs):
                    credit_lines[(cid, period, kid)] = amount
    return lines, credit_lines


def _months(a: dt.date, b: dt.date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def engine_lines(db: Path, run_id: int | None = None):
    """What the engine stored for the same portfolio: charge lines, at-risk credits and each
    measured KPI's counts as an exact Fraction (the loop is given these, not the interactions)."""
    with duckdb.connect(str(db), read_only=True) as con:
        run = run_id or con.execute("SELECT max(run_id) FROM settlement_runs").fetchone()[0]
        charges = {
            (c, p, k): a
            for c, p, k, a in con.execute(
                "SELECT contract_id, period, line_key, amount FROM charge_lines WHERE run_id = ?",
                [run],
            ).fetchall()
        }
        credit = {
            (c, p, k): a
            for c, p, k, a in con.execute(
                "SELECT contract_id, period, kpi_id, amount FROM service_credits "
                "WHERE run_id = ? AND regime = 'at_risk_pool'",
                [run],
            ).fetchall()
        }
        measured = {
            (c, k, p): Fraction(n) / Fraction(d)
            for c, k, p, n, d in con.execute(
                "SELECT contract_id, kpi_id, period, numerator, denominator FROM kpi_results "
                "WHERE run_id = ? AND source = 'measured' AND value IS NOT NULL",
                [run],
            ).fetchall()
        }
    return charges, credit, measured


def differences(ours: dict, theirs: dict) -> list:
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))


def run(contracts_dir: Path, data_dir: Path, db: Path, last: dt.date) -> dict:
    """Time the loop on the portfolio and compare its lines with the engine's stored run."""
    charges, credit, measured = engine_lines(db)
    timings = {}
    started = time.perf_counter()
    contracts = [c.terms for c in load_contracts(contracts_dir)]
    timings["load contracts"] = time.perf_counter() - started
    started = time.perf_counter()
    inputs = Inputs(data_dir, measured)
    timings["read inputs"] = time.perf_counter() - started
    started = time.perf_counter()
    lines, credit_lines = settle(contracts, inputs, last)
    timings["loop"] = time.perf_counter() - started
    return {
        "timings": timings,
        "lines": len(lines),
        "credits": len(credit_lines),
        "charge_differences": differences(lines, charges),
        "credit_differences": differences(credit_lines, credit),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True, help="a database with the backfill")
    parser.add_argument("--last", default="2026-12")
    args = parser.parse_args(argv)
    year, month = map(int, args.last.split("-"))
    result = run(args.contracts, args.data, args.db, dt.date(year, month, 1))
    for name, seconds in result["timings"].items():
        print(f"  {name:<16} {seconds:7.2f}s")
    print(f"  {result['lines']:,} charge lines, {result['credits']:,} at-risk credits")
    for what in ("charge_differences", "credit_differences"):
        diff = result[what]
        print(f"  {what}: {len(diff)}" + (f" (first: {diff[:3]})" if diff else ""))


if __name__ == "__main__":
    main()
