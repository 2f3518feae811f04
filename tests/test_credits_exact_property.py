"""Service credits are exact to the cent (SPEC 1 and 4: round once, at the line).

The expected credit of every line is worked out here from the spec's formula with Python Decimal
and Fraction (exact rationals), never with the product's code or SQL:

    at_risk_pool  credit = A x allocation_pct x severity x multiplier, A = at_risk_pct x charges,
                  severity binary 1, linear (target - actual) / (target - minimum) clamped to
                  [0, 1] (mirrored for lower_is_better), bands the pct of the last band whose
                  worse_than the actual is strictly worse than (none: the first)
    points        band points x multiplier per failed KPI; the month's total maps to pct x charges
                  through the stepped table; split over the KPIs in proportion to their points
    cap           monthly_cap_pct x charges (default at_risk_pct); when it binds, the rounded cap
                  is split pro rata by the largest-remainder method over the exact shares, ties
                  to the KPI listed first

A credit that is not split is the exact figure rounded once with the contract's mode and scale.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import largest_remainder, round_at, round_int, sql_steps, text

D = Decimal
F = Fraction
MONTHS = [dt.date(2024, m, 1) for m in (1, 2, 3)]


# --------------------------------------------------------------------------- the spec, in Python


def worse(direction: str, actual: Fraction, threshold: Fraction) -> bool:
    return actual < threshold if direction == "higher_is_better" else actual > threshold


def band_of(kpi: dict, actual: Fraction, key: str) -> Fraction:
    """The last band the actual is strictly worse than; a failure worse than no band: the first."""
    chosen = kpi["bands"][0]
    for band in kpi["bands"]:
        if worse(kpi["direction"], actual, band["worse_than"]):
            chosen = band
    return chosen[key]


def expected_credits(c: dict) -> dict[tuple[dt.date, str], Decimal]:
    """(month, kpi_id) -> the credit amount (positive) of every failed KPI, from the spec."""
    out: dict[tuple[dt.date, str], Decimal] = {}
    scale, mode = c["scale"], c["mode"]
    run: dict[str, int] = {k["id"]: 0 for k in c["kpis"]}
    for month in MONTHS:
        # the service line is per unit at 1.00: the month's charges are its one usage line
        charges = F(round_at(F(c["units"]), scale, mode))
        failed = []
        for k in c["kpis"]:
            actual = c["values"][(month, k["id"])]
            if worse(k["direction"], actual, k["target"]):
                run[k["id"]] += 1
                mult = k["repeat"] if run[k["id"]] >= 2 else F(1)
                failed.append((k, actual, mult))
            else:
                run[k["id"]] = 0
        if not failed:
            continue
        cap_pct = c["cap_pct"] if c["cap_pct"] is not None else c.get("at_risk_pct")
        cap = None if cap_pct is None else cap_pct * charges
        if c["regime"] == "points":
            points = [band_of(k, a, "points") * m for k, a, m in failed]
            total_points = sum(points)
            pct = F(0)
            for step in c["steps"]:
                if total_points > 0 and step["from_points"] <= total_points:
                    pct = step["pct"]
            credit = pct * charges
            total = round_at(min(credit, cap) if cap is not None else credit, scale, mode)
            amounts = largest_remainder(total, points, scale)
        else:
            exact = []
            for k, actual, mult in failed:
                if k["model"] == "binary":
                    severity = F(1)
                elif k["model"] == "bands":
                    severity = band_of(k, actual, "pct")
                else:
                    gap = k["target"] - actual
                    span = k["target"] - k["minimum"]
                    severity = min(max(gap / span, F(0)), F(1))
                exact.append(c["at_risk_pct"] * charges * k["allocation"] * severity * mult)
            alone = [round_at(x, scale, mode) for x in exact]
            # the cap binds when the exact total passes it, or when the lines rounded one by one
            # would bill more than the rounded cap (sql/07_credits.sql, interpretations)
            rounded_cap = round_at(cap, scale, mode) if cap is not None else None
            if cap is not None and (sum(exact) > cap or sum(alone) > rounded_cap):
                amounts = largest_remainder(rounded_cap, exact, scale)
            else:
                amounts = alone
        for (k, _, _), amount in zip(failed, amounts, strict=True):
            out[(month, k["id"])] = amount
    return out


# --------------------------------------------------------------------------- drawing contracts

PCT = st.integers(1, 3000).map(lambda n: F(n, 10000))  # 0.0001 .. 0.30
VALUE = st.integers(0, 10**6).map(lambda n: F(n, 10**6))  # a KPI actual with 6 places


@st.composite
def pool_kpi(draw, i: int) -> dict:
    direction = draw(st.sampled_from(["higher_is_better", "lower_is_better"]))
    model = draw(st.sampled_from(["binary", "linear", "bands"]))
    target = draw(st.integers(100000, 900000).map(lambda n: F(n, 10**6)))
    # an even count of 10^-6, so that the band half way to the minimum has 6 places too
    span = draw(st.integers(1, 49999).map(lambda n: F(2 * n, 10**6)))
    toward_worse = -1 if direction == "higher_is_better" else 1
    kpi = {
        "id": f"k{i}",
        "direction": direction,
        "target": target,
        "model": model,
        "minimum": target + toward_worse * span,
        "allocation": draw(st.integers(1, 50).map(lambda n: F(n, 100))),
        "repeat": draw(st.sampled_from([F(1), F(3, 2), F(2)])),
        # two bands from mild to severe
        "bands": [
            {"worse_than": target, "pct": draw(PCT) + F(1, 2)},
            {"worse_than": target + toward_worse * span / 2, "pct": F(1)},
        ],
    }
    return kpi


@st.composite
def points_kpi(draw, i: int) -> dict:
    target = draw(st.integers(100000, 900000).map(lambda n: F(n, 10**6)))
    return {
        "id": f"k{i}",
        "direction": "higher_is_better",
        "target": target,
        "repeat": draw(st.sampled_from([F(1), F(2), F(3)])),
        "bands": [
            {"worse_than": target, "points": F(draw(st.integers(0, 5)))},
            {"worse_than": target - F(1, 20), "points": F(draw(st.integers(0, 5)))},
        ],
    }


@st.composite
def contract(draw, n: int) -> dict:
    regime = draw(st.sampled_from(["at_risk_pool", "points"]))
    count = draw(st.integers(1, 4))
    kpis = [draw((pool_kpi if regime == "at_risk_pool" else points_kpi)(i)) for i in range(count)]
    c = {
        "id": f"X{n}",
        "regime": regime,
        "scale": draw(st.integers(0, 4)),
        "mode": draw(st.sampled_from(["half_up", "half_even"])),
        "units": F(draw(st.integers(1, 10**10)), 1000),
        "cap_pct": draw(st.one_of(st.none(), PCT)),
        "kpis": kpis,
        "values": {},
    }
    if regime == "at_risk_pool":
        c["at_risk_pct"] = draw(PCT)
    else:
        froms = sorted(draw(st.sets(st.integers(1, 12), min_size=1, max_size=3)))
        c["steps"] = [{"from_points": F(p), "pct": draw(PCT)} for p in froms]
    for k in kpis:
        for month in MONTHS:
            # mostly near the target on its worse side, so that failures, the clamp at the
            # minimum and every band are reached; sometimes anywhere in [0, 1]
            worse_side = -1 if k["direction"] == "higher_is_better" else 1
            near = st.integers(-20000, 120000).map(
                lambda d, t=k["target"], w=worse_side: t + w * F(d, 10**6)
            )
            c["values"][(month, k["id"])] = draw(
                st.one_of(VALUE, near).filter(lambda v: 0 <= v <= 1)
            )
    return c


def contract_yaml(c: dict) -> str:
    lines = [
        f"contract_id: {c['id']}",
        "currency: GBP",
        "start: 2024-01",
        "end: 2024-12",
        f"rounding: {{mode: {c['mode']}, amount_scale: {c['scale']}, rate_scale: 4}}",
        "service_lines:",
        "  - id: voice",
        "    pricing:",
        "      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}",
        "service_credits:",
        f"  regime: {c['regime']}",
        "  pool_pct: 2.0",
    ]
    if c["cap_pct"] is not None:
        lines.append(f"  monthly_cap_pct: {text(c['cap_pct'])}")
    if c["regime"] == "at_risk_pool":
        lines.append(f"  at_risk_pct: {text(c['at_risk_pct'])}")
    else:
        steps = ", ".join(
            f"{{from_points: {text(s['from_points'])}, pct: {text(s['pct'])}}}" for s in c["steps"]
        )
        lines.append(f"  points_to_credit_pct: [{steps}]")
    lines.append("  kpis:")
    for k in c["kpis"]:
        lines += [
            f"    - id: {k['id']}",
            f"      direction: {k['direction']}",
            f"      target: {text(k['target'])}",
            f"      repeat_multiplier: {text(k['repeat'])}",
        ]
        if c["regime"] == "points":
            bands = ", ".join(
                f"{{worse_than: {text(b['worse_than'])}, points: {text(b['points'])}}}"
                for b in k["bands"]
            )
            lines.append(f"      points_bands: [{bands}]")
            continue
        lines += [
            f"      minimum: {text(k['minimum'])}",
            f"      allocation_pct: {text(k['allocation'])}",
        ]
        if k["model"] == "bands":
            bands = ", ".join(
                f"{{worse_than: {text(b['worse_than'])}, pct: {text(b['pct'])}}}"
                for b in k["bands"]
            )
            lines.append(f"      credit: {{model: bands, bands: [{bands}]}}")
        else:
            lines.append(f"      credit: {{model: {k['model']}}}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- settling


def settle_credits(contracts: list[dict]) -> duckdb.DuckDBPyConnection:
    """sql/01..07 in memory (tests/helpers.py): many contracts settled in one set-based pass."""
    rows = {
        "volumes": [(c["id"], "voice", m, text(c["units"])) for c in contracts for m in MONTHS],
        "kpis": [
            (c["id"], kpi_id, m, text(v))
            for c in contracts
            for (m, kpi_id), v in c["values"].items()
        ],
    }
    return sql_steps([contract_yaml(c) for c in contracts], rows, "07", MONTHS[-1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4, 8).flatmap(lambda n: st.tuples(*[contract(i) for i in range(n)])))
def test_every_credit_line_is_the_spec_formula_to_the_cent(contracts):
    con = settle_credits(list(contracts))
    got_credits = {
        (r[0], r[1], r[2]): r[3]
        for r in con.execute(
            "SELECT contract_id, period, kpi_id, amount FROM calc_service_credits"
        ).fetchall()
    }
    got_lines = {
        (r[0], r[1], r[2]): r[3]
        for r in con.execute(
            "SELECT contract_id, period, line_key, amount FROM calc_credit_lines"
        ).fetchall()
    }
    want_credits, want_lines = {}, {}
    for c in contracts:
        for (month, kpi_id), amount in expected_credits(c).items():
            want_credits[(c["id"], month, kpi_id)] = amount
            if amount != 0:
                want_lines[(c["id"], month, f"credit:{kpi_id}")] = -amount
    assert got_credits == want_credits
    assert got_lines == want_lines


# --------------------------------------------------------------------------- hand cases

ASA_CONTRACT = """\
contract_id: H1
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  kpis:
    - id: asa
      description: Average speed of answer
      direction: lower_is_better
      target: 60
      minimum: 120
      allocation_pct: 0.5
      credit: {model: linear}
"""


def test_linear_credit_is_one_division_rounded_at_the_line(ws):
    ws.contract(ASA_CONTRACT)
    # charges 387,012.49 x 1.00 = 387,012.49; A = 10% = 38,701.249
    ws.volumes([("H1", "voice", "2024-01", "387012.49")])
    # severity (95.8 - 60) / (120 - 60) = 35.8 / 60 = 0.59666...
    ws.kpis([("H1", "asa", "2024-01", "95.8")])
    ws.settle("2024-01")
    # 38,701.249 x 0.5 x 35.8 / 60 = 19,350.6245 x 35.8 / 60 = 692,752.3571 / 60
    # = 11,545.872618... -> 11,545.87. A severity rounded first to 0.596667 would bill
    # 19,350.6245 x 0.596667 = 11,545.8800 -> 11,545.88, a cent too much.
    assert ws.lines("2024-01")["credit:asa"] == D("-11545.87")
    c = ws.rows("SELECT * FROM current_service_credits")[0]
    # the fraction is kept exactly (units of 10^-6: 35.8 and 60) and the 6 places are for reading
    assert (c["severity_numerator"], c["severity_denominator"]) == (D(35800000), D(60000000))
    assert c["severity"] == D("0.596667")
    assert c["amount"] == D("11545.87")


MEASURED_CONTRACT = """\
contract_id: H2
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  pool_pct: 2.0
  kpis:
    - id: sl
      target: 0.5
      minimum: 0.2
      allocation_pct: 1.0
      credit: {model: linear}
      measure: {metric: service_level, service_line: voice, threshold_s: 20,
                abandons: count_as_failed}
    - id: abandons
      direction: lower_is_better
      target: 0.333333
      allocation_pct: 0.1
      measure: {metric: abandon_rate, service_line: voice}
"""


def test_measured_kpis_compare_and_credit_on_the_exact_fraction(ws):
    ws.contract(MEASURED_CONTRACT)
    ws.volumes([("H2", "voice", "2024-01", "900000")])
    t0 = dt.datetime(2024, 1, 10, 9, 0, 0)
    s = dt.timedelta(seconds=1)
    ws.interactions(
        [
            # answered within 20 s, answered after 20 s, abandoned at 40 s
            ("H2", "voice", t0, t0 + 5 * s, None),
            ("H2", "voice", t0, t0 + 30 * s, None),
            ("H2", "voice", t0, None, t0 + 40 * s),
        ]
    )
    ws.settle("2024-01")
    r = {x["kpi_id"]: x for x in ws.rows("SELECT * FROM current_kpi_results")}
    # abandon rate 1 / (2 + 1) = 0.333333... is shown as 0.333333, equal to the target, but the
    # exact 1/3 is above 0.333333 (1 > 0.333333 x 3 = 0.999999): lower is better, so it fails
    assert (r["abandons"]["value"], r["abandons"]["status"]) == (D("0.333333"), "failed")
    assert (r["abandons"]["actual_numerator"], r["abandons"]["actual_denominator"]) == (1, 3)
    # service level A_T / (A + Ab) = 1 / 3: fails 0.5
    assert (r["sl"]["value"], r["sl"]["status"]) == (D("0.333333"), "failed")
    lines = ws.lines("2024-01")
    # charges 900,000.00, A = 90,000.00. sl: severity (0.5 - 1/3) / (0.5 - 0.2) = (1/6) / 0.3
    # = 5/9, so 90,000 x 1.0 x 5/9 = 50,000.00 exactly (the shown 0.333333 would give
    # (0.5 - 0.333333) / 0.3 = 0.55555667 and 50,000.10)
    assert lines["credit:sl"] == D("-50000.00")
    # abandons: binary, 90,000 x 0.1 = 9,000.00; both within the cap of 10% x charges = 90,000
    assert lines["credit:abandons"] == D("-9000.00")


# --------------------------------------------------------------------------- the macros

HALF_MODES = st.sampled_from(["half_up", "half_even", "down", "ceiling"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    x=st.integers(-(10**30), 10**30),
    q=st.integers(1, 10**15),
    p_share=st.fractions(0, 1),
    k=st.integers(0, 12),
    negative_q=st.booleans(),
    mode=HALF_MODES,
    tie=st.booleans(),
)
def test_muldiv_round_matches_exact_rounding(macros, x, q, p_share, k, negative_q, mode, tie):
    # x x p / (q x 10^k) rounded once; |p| <= |q| as for a clamped severity. `tie` builds an
    # exact half: p = q and x = (2j + 1) x 10^k / 2.
    p = int(q * p_share)
    if tie and k > 0:
        p, x = q, (2 * (x // 10**k) + 1) * 10**k // 2
    if negative_q:
        q = -q
    got = macros.execute(
        "SELECT muldiv_round(?::HUGEINT, ?::HUGEINT, ?::HUGEINT, pow10(?), ?)", [x, p, q, k, mode]
    ).fetchone()[0]
    # in integers: a Decimal would round a 29-digit result to its context's 28 digits
    assert got == round_int(F(x * p, q * 10**k), mode)


BANDED_CONTRACT = """\
contract_id: H3
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  kpis:
    - id: sl
      target: 0.70
      allocation_pct: 1.0
      credit:
        model: bands
        bands: [{worse_than: 0.70, pct: 0.5}, {worse_than: 0.666667, pct: 1.0}]
      measure: {metric: service_level, service_line: voice, threshold_s: 20}
"""


def test_measured_kpi_finds_its_band_on_the_exact_fraction(ws):
    ws.contract(BANDED_CONTRACT)
    ws.volumes([("H3", "voice", "2024-01", "1000")])
    t0 = dt.datetime(2024, 1, 10, 9, 0, 0)
    s = dt.timedelta(seconds=1)
    # two of three answered within 20 s: 2/3 = 0.666666..., shown as 0.666667
    ws.interactions([("H3", "voice", t0, t0 + w * s, None) for w in (5, 10, 30)])
    ws.settle("2024-01")
    c = ws.rows("SELECT * FROM current_service_credits")[0]
    # 2/3 is strictly worse than 0.666667 (2 < 0.666667 x 3 = 2.000001): band 2, pct 1.0; the
    # shown 0.666667 would stop at band 1 (0.5)
    assert (c["value"], c["band"], c["severity"]) == (D("0.666667"), 2, D("1"))
    # charges 1,000.00, A = 100.00, x allocation 1.0 x 1.0 = 100.00 (band 1 would be 50.00)
    assert ws.lines("2024-01")["credit:sl"] == D("-100.00")


TIE_CONTRACT = """\
contract_id: H4
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.50
  monthly_cap_pct: 0.03
  kpis:
    - {id: a, target: 0.9, minimum: 0.6, allocation_pct: 0.2, credit: {model: linear}}
    - {id: b, target: 0.9, minimum: 0.6, allocation_pct: 0.1, credit: {model: linear}}
    - {id: c, target: 0.9, allocation_pct: 0.1}
"""


def test_capped_split_breaks_an_exact_tie_by_contract_order(ws):
    ws.contract(TIE_CONTRACT)
    ws.volumes([("H4", "voice", "2024-01", "1")])
    # a and b: severity (0.9 - 0.8) / (0.9 - 0.6) = 1/3; c: binary 1
    ws.kpis([("H4", k, "2024-01", "0.8") for k in ("a", "b", "c")])
    ws.settle("2024-01")
    # weights 0.2 x 1/3 = 1/15, 0.1 x 1/3 = 1/30, 0.1: in the ratio 2 : 1 : 3. Charges 1.00,
    # A = 0.50: credits 1/30 + 1/60 + 0.05 = 0.10 > the cap 0.03 x 1.00 = 0.03, which is split:
    # 3 cents x 2/6, 1/6, 3/6 = 1, 0.5, 1.5 cents. Cut to the cent: 1, 0, 1; the missing cent goes
    # to the largest remainder, an exact tie of 0.5 between b and c: b, listed first. Weights cut
    # at 20 places would make c's remainder the larger and bill 0.01, 0.00, 0.02.
    assert ws.lines("2024-01") == {
        "usage:voice": D("1.00"),
        "credit:a": D("-0.01"),
        "credit:b": D("-0.01"),
        "credit:c": D("-0.01"),
    }
