"""Gain-share is exact to the cent (SPEC 5 and SPEC 1: round once, at the line).

The expected provider amount of every window is worked out here from the spec with Python
Fraction (exact rationals), never with the product's code: V = units, C = the scope's charges
(units x rate, rounded at the line), B = baseline x V (unit_cost) or baseline (total_cost),
S = B - C. Nothing is shared when |S| < threshold_pct x B; otherwise the provider amount is the
marginal tiered share of |S| (pain tiers for an overrun), + for a gain, - for an overrun when
pain is shared, capped in absolute value, and rounded once with the contract's mode and scale.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import round_at, sql_steps, text

F = Fraction
MONTHS = [dt.date(2024, m, 1) for m in (1, 2, 3)]


def tiered(amount: Fraction, tiers: list[dict]) -> Fraction:
    """Marginal tiers: each share applies to the part of the amount inside its tier."""
    out, lower = F(0), F(0)
    for t in tiers:
        upper = t["up_to"] if t["up_to"] is not None else amount
        out += t["share"] * max(min(amount, upper) - lower, F(0))
        lower = upper if t["up_to"] is not None else lower
    return out


def expected(c: dict, month: dt.date) -> Decimal:
    units = c["units"][month]
    charges = F(round_at(units * c["rate"], c["scale"], c["mode"]))
    base = c["baseline"] * units if c["measure"] == "unit_cost" else c["baseline"]
    savings = base - charges
    if abs(savings) < c["threshold"] * base:
        return round_at(F(0), c["scale"], c["mode"])
    if savings >= 0:
        amount = tiered(savings, c["tiers"])
    elif c["pain_share"]:
        amount = -tiered(-savings, c["pain_tiers"])
    else:
        amount = F(0)
    if c["cap"] is not None and abs(amount) > c["cap"]:
        amount = c["cap"] if amount > 0 else -c["cap"]
    return round_at(amount, c["scale"], c["mode"])


SHARE = st.integers(1, 10**6).map(lambda n: F(n, 10**6))


@st.composite
def tier_list(draw) -> list[dict]:
    bounds = sorted(draw(st.sets(st.integers(1, 10**9), max_size=2)))
    tiers = [{"up_to": F(b, 1000), "share": draw(SHARE)} for b in bounds]
    return tiers + [{"up_to": None, "share": draw(SHARE)}]


@st.composite
def contract(draw, n: int) -> dict:
    measure = draw(st.sampled_from(["unit_cost", "total_cost"]))
    units = {m: F(draw(st.integers(0, 10**8)), 1000) for m in MONTHS}
    rate = F(draw(st.integers(1, 10**6)), 10**4)
    if measure == "unit_cost":
        # a baseline near the rate, so gains, overruns and the threshold all occur
        baseline = rate + F(draw(st.integers(-(10**4), 10**4)), 10**6)
    else:
        baseline = F(draw(st.integers(0, 10**13)), 10**6)
    return {
        "id": f"G{n}",
        "measure": measure,
        "units": units,
        "rate": rate,
        "baseline": max(baseline, F(0)),
        "scale": draw(st.integers(0, 4)),
        "mode": draw(st.sampled_from(["half_up", "half_even"])),
        "threshold": draw(
            st.sampled_from([F(0), F(1, 100), F(draw(st.integers(0, 10**5)), 10**6)])
        ),
        "tiers": draw(tier_list()),
        "pain_share": draw(st.booleans()),
        "pain_tiers": draw(tier_list()),
        "cap": draw(st.one_of(st.none(), st.integers(0, 10**10).map(lambda v: F(v, 1000)))),
    }


def contract_yaml(c: dict) -> str:
    def tiers(ts: list[dict]) -> str:
        return ", ".join(
            "{"
            + (f"up_to: {text(t['up_to'])}, " if t["up_to"] is not None else "")
            + f"provider_share: {text(t['share'])}"
            + "}"
            for t in ts
        )

    cap = f"\n  cap: {text(c['cap'])}" if c["cap"] is not None else ""
    return f"""\
contract_id: {c["id"]}
currency: GBP
start: 2024-01
end: 2024-12
rounding: {{mode: {c["mode"]}, amount_scale: {c["scale"]}, rate_scale: 4}}
service_lines:
  - id: voice
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: {text(c["rate"])}}}]}}
gain_share:
  scope: [voice]
  measure: {c["measure"]}
  settle_every: month
  baselines: [{{effective_from: 2024-01, value: {text(c["baseline"])}}}]
  threshold_pct: {text(c["threshold"])}
  tiers: [{tiers(c["tiers"])}]
  pain_share: {str(c["pain_share"]).lower()}
  pain_tiers: [{tiers(c["pain_tiers"])}]{cap}
"""


def settle(contracts: list[dict]) -> duckdb.DuckDBPyConnection:
    """sql/01..08 on an in-memory database (tests/helpers.py)."""
    rows = [(c["id"], "voice", m, text(u)) for c in contracts for m, u in c["units"].items()]
    return sql_steps([contract_yaml(c) for c in contracts], {"volumes": rows}, "08", MONTHS[-1])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4, 8).flatmap(lambda n: st.tuples(*[contract(i) for i in range(n)])))
def test_every_gain_share_amount_is_the_spec_formula_to_the_cent(contracts):
    con = settle(list(contracts))
    got = {
        (r[0], r[1]): r[2]
        for r in con.execute(
            "SELECT contract_id, window_start, provider_amount FROM calc_gain_share"
        ).fetchall()
    }
    want = {(c["id"], m): expected(c, m) for c in contracts for m in MONTHS}
    assert got == want
