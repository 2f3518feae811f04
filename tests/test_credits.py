"""Service credits, earn-back and bonuses (SPEC 4): sql/06_kpi_results.sql and sql/07_credits.sql.

Every contract here has one service line priced per unit at 1.00, so the month's charges before
credits are its units, and the figures in the comments can be checked with a pencil. The expected
figures are worked out by hand beside each assertion, never recomputed by the code under test.
"""

from __future__ import annotations

import datetime as dt
import decimal
import textwrap
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import SettleError
from tests.helpers import round_at, sql_steps

D = Decimal

# --------------------------------------------------------------------------- contract builders


def pool_contract(
    kpis: str,
    *,
    at_risk_pct: str = "0.10",
    monthly_cap_pct: str | None = "0.10",
    rounding: str = "half_up",
    contract_id: str = "C1",
) -> str:
    """An at_risk_pool contract: one per_unit line at 1.00, the KPIs given as YAML list items."""
    cap = f"monthly_cap_pct: {monthly_cap_pct}" if monthly_cap_pct is not None else ""
    return f"""\
contract_id: {contract_id}
currency: GBP
start: 2024-01
end: 2025-12
rounding: {{mode: {rounding}, amount_scale: 2, rate_scale: 4}}
service_lines:
  - id: voice
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: 1.00}}]}}
service_credits:
  regime: at_risk_pool
  at_risk_pct: {at_risk_pct}
  pool_pct: 2.0
  {cap}
  kpis:
{textwrap.indent(textwrap.dedent(kpis), "    ")}
"""


POINTS_CONTRACT = """\
contract_id: P1
currency: EUR
start: 2024-01
end: 2025-12
service_lines:
  - id: claims
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}
service_credits:
  regime: points
  monthly_cap_pct: 0.05
  points_to_credit_pct:
    - {from_points: 1, pct: 0.01}
    - {from_points: 5, pct: 0.03}
    - {from_points: 10, pct: 0.06}
  kpis:
    - id: accuracy
      target: 0.98
      points_bands:
        - {worse_than: 0.98, points: 1}
        - {worse_than: 0.965, points: 3}
      repeat_multiplier: 2.0
    - id: turnaround
      target: 0.95
      points_bands:
        - {worse_than: 0.93, points: 1}
        - {worse_than: 0.90, points: 2}
        - {worse_than: 0.85, points: 4}
      repeat_multiplier: 2.0
"""


def months(first: str, count: int) -> list[str]:
    year, month = map(int, first.split("-"))
    out = []
    for i in range(count):
        index = year * 12 + month - 1 + i
        out.append(f"{index // 12}-{index % 12 + 1:02d}")
    return out


def volumes(
    ws,
    units: str,
    first: str = "2024-01",
    count: int = 12,
    contract: str = "C1",
    line: str = "voice",
) -> None:
    ws.volumes([(contract, line, m, units) for m in months(first, count)])


def credits(ws, contract: str = "C1") -> dict[tuple[str, str], dict]:
    """(YYYY-MM, kpi_id) -> the current service_credits row."""
    rows = ws.rows(
        "SELECT * FROM current_service_credits WHERE contract_id = ? ORDER BY period, kpi_id",
        [contract],
    )
    return {(f"{r['period']:%Y-%m}", r["kpi_id"]): r for r in rows}


def results(ws, kpi: str, contract: str = "C1") -> dict[str, dict]:
    """YYYY-MM -> the current kpi_results row of one KPI."""
    rows = ws.rows(
        "SELECT * FROM current_kpi_results WHERE contract_id = ? AND kpi_id = ? ORDER BY period",
        [contract, kpi],
    )
    return {f"{r['period']:%Y-%m}": r for r in rows}


def credit_lines(ws, contract: str = "C1") -> dict[tuple[str, str], Decimal]:
    """(YYYY-MM, line_key) -> amount of every credit, earn-back and bonus line."""
    rows = ws.rows(
        "SELECT period, line_key, amount FROM current_invoice_lines "
        "WHERE contract_id = ? AND line_type IN ('credit', 'earn_back', 'bonus')",
        [contract],
    )
    return {(f"{r['period']:%Y-%m}", r["line_key"]): r["amount"] for r in rows}


BINARY_SL = """\
- id: sl
  description: 80% answered in 20 s
  target: 0.80
  allocation_pct: 0.40
  credit: {model: binary}
  repeat_multiplier: 2.0
"""


# --------------------------------------------------------------------------- KPI results


def test_kpi_results_statuses_runs_and_critical(ws):
    ws.contract(
        pool_contract("""\
        - id: sl
          target: 0.80
          allocation_pct: 0.40
          repeat_multiplier: 2.0
          critical_below: 0.65
    """)
    )
    volumes(ws, "100000", count=6)
    # Jan fails, Feb met, Mar fails (critical), Apr excused, May no row (no_data), Jun fails
    ws.kpis(
        [
            ("C1", "sl", "2024-01", "0.79"),
            ("C1", "sl", "2024-02", "0.80"),
            ("C1", "sl", "2024-03", "0.64"),
            ("C1", "sl", "2024-04", "0.50"),
            ("C1", "sl", "2024-06", "0.70"),
        ]
    )
    ws.exclusions([("C1", None, "2024-04", "Relief event: flood at site")])
    ws.settle("2024-01", "2024-06")
    r = results(ws, "sl")
    # value exactly at target (0.80) is met: a KPI fails only when strictly worse
    assert [r[m]["status"] for m in months("2024-01", 6)] == [
        "failed",
        "met",
        "failed",
        "excused",
        "no_data",
        "failed",
    ]
    assert [r[m]["met"] for m in months("2024-01", 6)] == [False, True, False, None, None, False]
    # runs: Jan 1; Feb met 0; Mar 1; Apr excused and May no_data neither break nor extend; Jun 2
    assert [r[m]["consecutive_failures"] for m in months("2024-01", 6)] == [1, 0, 1, None, None, 2]
    # 0.64 < critical_below 0.65; the excused 0.50 is not critical (the month does not count)
    assert [r[m]["critical"] for m in months("2024-01", 6)] == [
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    assert r["2024-04"]["excused"] is True
    assert r["2024-04"]["exclusion_reason"] == "Relief event: flood at site"
    assert r["2024-01"]["source"] == "input"
    assert r["2024-01"]["target"] == D("0.80")


def test_lower_is_better_fails_strictly_above_target(ws):
    ws.contract(
        pool_contract("""\
        - id: backlog
          direction: lower_is_better
          target: 2.0
          allocation_pct: 0.50
    """)
    )
    volumes(ws, "100000", count=2)
    ws.kpis([("C1", "backlog", "2024-01", "2.0"), ("C1", "backlog", "2024-02", "2.000001")])
    ws.settle("2024-01", "2024-02")
    r = results(ws, "backlog")
    assert r["2024-01"]["status"] == "met"  # at the target
    assert r["2024-02"]["status"] == "failed"  # above it by 0.000001
    # A = 0.10 x 100,000.00 = 10,000.00; credit = 10,000 x 0.50 x 1 = 5,000.00
    assert credit_lines(ws) == {("2024-02", "credit:backlog"): D("-5000.00")}


def test_effective_dated_target_and_as_known_at(ws):
    ws.contract(
        pool_contract("""\
        - id: sl
          target:
            - {effective_from: 2024-01, value: 0.80}
            - {effective_from: 2024-03, value: 0.82, agreed_on: 2024-04-15, reason: rebased}
          allocation_pct: 0.40
    """)
    )
    volumes(ws, "100000", count=3)
    ws.kpis([("C1", "sl", m, "0.81") for m in months("2024-01", 3)])
    ws.settle("2024-01", "2024-03")
    r = results(ws, "sl")
    # 0.81 meets 0.80 in Jan-Feb and fails the 0.82 in force from March
    assert [r[m]["status"] for m in months("2024-01", 3)] == ["met", "met", "failed"]
    assert r["2024-03"]["target_reason"] == "rebased"
    # as known on 2024-04-01 the 0.82 had not been agreed: March is met, no credit
    rebuilt = ws.settle("2024-03", as_known_at="2024-04-01")
    row = ws.rows(
        "SELECT status, target FROM kpi_results WHERE run_id = ? AND kpi_id = 'sl'",
        [rebuilt.run_id],
    )
    assert row == [{"status": "met", "target": D("0.80")}]
    assert ws.rows("SELECT * FROM service_credits WHERE run_id = ?", [rebuilt.run_id]) == []


def test_missing_required_kpi_stops_the_run(ws):
    ws.contract(
        pool_contract("""\
        - id: report
          target: 1.0
          allocation_pct: 0.20
          required: true
    """)
    )
    volumes(ws, "1000", count=3)
    ws.kpis([("C1", "report", "2024-01", "1.0")])
    # Feb is excused (nothing to report), March is simply missing
    ws.exclusions([("C1", "report", "2024-02", "agreed holiday")])
    with pytest.raises(SettleError, match=r"kpi_id=report, period=2024-03\)"):
        ws.settle("2024-01", "2024-03")


# --------------------------------------------------------------------------- credit models


def test_binary_credit(ws):
    ws.contract(pool_contract(BINARY_SL))
    volumes(ws, "100000", count=1)
    ws.kpis([("C1", "sl", "2024-01", "0.7650")])
    ws.settle("2024-01")
    c = credits(ws)[("2024-01", "sl")]
    # charges 100,000.00; A = 0.10 x 100,000.00 = 10,000.00; 10,000 x 0.40 x 1 x 1 = 4,000.00
    assert c["charges"] == D("100000.00")
    assert c["at_risk_amount"] == D("10000.00")
    assert (c["severity"], c["multiplier"], c["amount"]) == (D(1), D(1), D("4000.00"))
    assert c["capped"] is False and c["cap_amount"] == D("10000.00")
    line = ws.rows("SELECT * FROM current_invoice_lines WHERE line_key = 'credit:sl'")[0]
    assert line["amount"] == D("-4000.00")
    assert line["line_type"] == "credit"
    assert line["description"] == (
        "80% answered in 20 s: service credit (actual 0.7650 vs target 0.8000)"
    )


@pytest.mark.parametrize(
    ("direction", "target", "minimum", "actual", "severity", "amount"),
    [
        # (0.80 - 0.7650) / (0.80 - 0.70) = 0.035 / 0.10 = 0.35; 10,000 x 0.50 x 0.35 = 1,750.00
        ("higher_is_better", "0.80", "0.70", "0.7650", "0.35", "1750.00"),
        # (0.0612 - 0.05) / (0.10 - 0.05) = 0.0112 / 0.05 = 0.224; 10,000 x 0.50 x 0.224 = 1,120.00
        ("lower_is_better", "0.05", "0.10", "0.0612", "0.224", "1120.00"),
        # below the minimum: clamped to 1; 10,000 x 0.50 = 5,000.00
        ("higher_is_better", "0.80", "0.70", "0.60", "1", "5000.00"),
        # 0.01 / 0.15 = 0.0666...: the stored severity shows 6 places (0.066667), but the money is
        # one exact division rounded at the line (SPEC 1): 10,000 x 0.50 x 0.01 / 0.15 =
        # 5,000 / 15 = 333.333... -> 333.33 (a severity rounded first would give 333.335 -> 333.34)
        ("higher_is_better", "0.80", "0.65", "0.79", "0.066667", "333.33"),
    ],
)
def test_linear_credit(ws, direction, target, minimum, actual, severity, amount):
    ws.contract(
        pool_contract(f"""\
        - id: k
          direction: {direction}
          target: {target}
          minimum: {minimum}
          allocation_pct: 0.50
          credit: {{model: linear}}
    """)
    )
    volumes(ws, "100000", count=1)
    ws.kpis([("C1", "k", "2024-01", actual)])
    ws.settle("2024-01")
    c = credits(ws)[("2024-01", "k")]
    assert c["severity"] == D(severity)
    assert c["amount"] == D(amount)
    assert credit_lines(ws) == {("2024-01", "credit:k"): -D(amount)}


def test_bands_credit(ws):
    ws.contract(
        pool_contract("""\
        - id: email
          target: 0.95
          allocation_pct: 0.30
          credit:
            model: bands
            bands:
              - {worse_than: 0.93, pct: 0.5}
              - {worse_than: 0.90, pct: 1.0}
    """)
    )
    volumes(ws, "100000", count=4)
    ws.kpis(
        [
            ("C1", "email", "2024-01", "0.94"),
            ("C1", "email", "2024-02", "0.92"),
            ("C1", "email", "2024-03", "0.90"),
            ("C1", "email", "2024-04", "0.89"),
        ]
    )
    ws.settle("2024-01", "2024-04")
    c = credits(ws)
    # Jan 0.94 fails 0.95 but is worse than no band: the first band (0.5)
    # Feb 0.92 < 0.93: band 1 (0.5); Mar 0.90 is not strictly worse than 0.90: still band 1
    # Apr 0.89 < 0.90: band 2 (1.0)
    assert [
        (c[(m, "email")]["band"], c[(m, "email")]["severity"]) for m in months("2024-01", 4)
    ] == [(1, D("0.5")), (1, D("0.5")), (1, D("0.5")), (2, D("1.0"))]
    # A = 10,000.00: 10,000 x 0.30 x 0.5 = 1,500.00; x 1.0 = 3,000.00 (no repeat multiplier)
    assert credit_lines(ws) == {
        ("2024-01", "credit:email"): D("-1500.00"),
        ("2024-02", "credit:email"): D("-1500.00"),
        ("2024-03", "credit:email"): D("-1500.00"),
        ("2024-04", "credit:email"): D("-3000.00"),
    }


def test_repeat_failure_doubles_the_credit(ws):
    ws.contract(pool_contract(BINARY_SL))
    volumes(ws, "100000", count=4)
    ws.kpis(
        [
            ("C1", "sl", "2024-01", "0.70"),
            ("C1", "sl", "2024-02", "0.70"),
            ("C1", "sl", "2024-03", "0.85"),
            ("C1", "sl", "2024-04", "0.70"),
        ]
    )
    ws.settle("2024-01", "2024-04")
    c = credits(ws)
    # Jan 1st failure x1 = 4,000.00; Feb 2nd consecutive x2 = 8,000.00 (within the 10,000 cap);
    # Mar met breaks the run; Apr is a 1st failure again: 4,000.00
    assert [
        (c[(m, "sl")]["consecutive_failures"], c[(m, "sl")]["multiplier"])
        for m in ("2024-01", "2024-02", "2024-04")
    ] == [(1, D(1)), (2, D(2)), (1, D(1))]
    assert credit_lines(ws) == {
        ("2024-01", "credit:sl"): D("-4000.00"),
        ("2024-02", "credit:sl"): D("-8000.00"),
        ("2024-04", "credit:sl"): D("-4000.00"),
    }
    line = ws.rows(
        "SELECT description FROM current_invoice_lines WHERE line_key = 'credit:sl' "
        "AND period = DATE '2024-02-01'"
    )[0]
    assert line["description"] == (
        "80% answered in 20 s: service credit (actual 0.7000 vs target 0.8000; "
        "consecutive failure 2, x2)"
    )


def test_excused_month_between_two_failures_counts_as_a_repeat(ws):
    ws.contract(pool_contract(BINARY_SL))
    volumes(ws, "100000", count=3)
    ws.kpis(
        [
            ("C1", "sl", "2024-01", "0.70"),
            ("C1", "sl", "2024-02", "0.50"),
            ("C1", "sl", "2024-03", "0.70"),
        ]
    )
    ws.exclusions([("C1", "sl", "2024-02", "client-caused outage")])
    ws.settle("2024-01", "2024-03")
    # Feb is excused: no credit, and March is the 2nd consecutive failure: 4,000 x 2 = 8,000.00
    assert credit_lines(ws) == {
        ("2024-01", "credit:sl"): D("-4000.00"),
        ("2024-03", "credit:sl"): D("-8000.00"),
    }
    assert credits(ws)[("2024-03", "sl")]["consecutive_failures"] == 2


def test_no_data_fail_is_a_failure_and_history_before_the_run_counts(ws):
    ws.contract(
        pool_contract("""\
        - id: sl
          target: 0.80
          allocation_pct: 0.40
          repeat_multiplier: 2.0
          no_data: fail
    """)
    )
    volumes(ws, "100000", count=2)
    ws.kpis([("C1", "sl", "2024-01", "0.70")])
    # only February is settled; January's failure (before the run) still starts the run
    ws.settle("2024-02")
    c = credits(ws)
    assert list(c) == [("2024-02", "sl")]
    # no value + no_data: fail = a 2nd consecutive failure: 10,000 x 0.40 x 1 x 2 = 8,000.00
    assert (c[("2024-02", "sl")]["consecutive_failures"], c[("2024-02", "sl")]["amount"]) == (
        2,
        D("8000.00"),
    )
    r = results(ws, "sl")["2024-02"]
    assert (r["status"], r["met"], r["value"]) == ("failed", False, None)


@pytest.mark.parametrize(("mode", "amount"), [("half_up", "100.03"), ("half_even", "100.02")])
def test_uncapped_credit_uses_the_contract_rounding(ws, mode, amount):
    ws.contract(
        pool_contract(
            """\
        - id: sl
          target: 0.80
          allocation_pct: 1.0
    """,
            rounding=mode,
            monthly_cap_pct=None,
        )
    )
    volumes(ws, "1000.25", count=1)
    ws.kpis([("C1", "sl", "2024-01", "0.70")])
    ws.settle("2024-01")
    # A = 0.10 x 1,000.25 = 100.025 x 1.0: half_up 100.03, half_even 100.02. The cap defaults
    # to at_risk_pct (100.025) and does not bind: the credit is rounded on its own
    c = credits(ws)[("2024-01", "sl")]
    assert c["uncapped_amount"] == D("100.025")
    assert c["cap_amount"] == D("100.025") and c["capped"] is False
    assert c["amount"] == D(amount)


# --------------------------------------------------------------------------- the monthly cap


THREE_EQUAL = """\
- {id: k1, target: 0.80, allocation_pct: 0.50}
- {id: k2, target: 0.80, allocation_pct: 0.50}
- {id: k3, target: 0.80, allocation_pct: 0.50}
"""


def test_cap_binds_with_three_equal_credits(ws):
    ws.contract(pool_contract(THREE_EQUAL))
    volumes(ws, "1000", count=1)
    ws.kpis([("C1", k, "2024-01", "0.70") for k in ("k1", "k2", "k3")])
    ws.settle("2024-01")
    c = credits(ws)
    # charges 1,000.00: A = 100.00, each credit 100 x 0.50 = 50.00, 150.00 in all;
    # cap = 0.10 x 1,000.00 = 100.00. 100.00 / 3 = 33.333..: cut to 33.33 each (99.99),
    # the missing cent goes to the largest remainder; all three tie, so to k1, listed first
    assert [c[("2024-01", k)]["uncapped_amount"] for k in ("k1", "k2", "k3")] == [D(50)] * 3
    assert all(c[("2024-01", k)]["capped"] for k in ("k1", "k2", "k3"))
    assert c[("2024-01", "k1")]["cap_amount"] == D("100.00")
    assert credit_lines(ws) == {
        ("2024-01", "credit:k1"): D("-33.34"),
        ("2024-01", "credit:k2"): D("-33.33"),
        ("2024-01", "credit:k3"): D("-33.33"),
    }
    assert [c[("2024-01", k)]["extra_unit"] for k in ("k1", "k2", "k3")] == [True, False, False]


def test_cap_binds_pro_rata_with_a_repeat(ws):
    ws.contract(
        pool_contract("""\
        - {id: a, target: 0.80, allocation_pct: 0.50, repeat_multiplier: 2.0}
        - {id: b, direction: lower_is_better, target: 0.05, minimum: 0.10, allocation_pct: 0.50,
           credit: {model: linear}}
        - id: c
          target: 0.95
          allocation_pct: 0.50
          credit:
            model: bands
            bands: [{worse_than: 0.93, pct: 0.5}, {worse_than: 0.90, pct: 1.0}]
    """)
    )
    volumes(ws, "100000", count=2)
    ws.kpis(
        [
            ("C1", "a", "2024-01", "0.79"),
            ("C1", "b", "2024-01", "0.04"),
            ("C1", "c", "2024-01", "0.96"),
            ("C1", "a", "2024-02", "0.79"),
            ("C1", "b", "2024-02", "0.1234"),
            ("C1", "c", "2024-02", "0.92"),
        ]
    )
    ws.settle("2024-01", "2024-02")
    c = credits(ws)
    # Feb, A = 10,000.00: a repeat 10,000 x 0.5 x 1 x 2 = 10,000; b (0.1234 - 0.05) / 0.05 > 1
    # -> 1: 5,000; c band 1: 2,500. 17,500 > cap 10,000.00 -> split in proportion 1 : 0.5 : 0.25
    # a 10,000 x 1/1.75 = 5,714.2857 -> 5,714.28 (remainder .57), b 2,857.1428 -> 2,857.14 (.28),
    # c 1,428.5714 -> 1,428.57 (.14): 9,999.99, the missing cent to a (largest remainder)
    assert [c[("2024-02", k)]["uncapped_amount"] for k in "abc"] == [D(10000), D(5000), D(2500)]
    assert credit_lines(ws) == {
        ("2024-01", "credit:a"): D("-5000.00"),
        ("2024-02", "credit:a"): D("-5714.29"),
        ("2024-02", "credit:b"): D("-2857.14"),
        ("2024-02", "credit:c"): D("-1428.57"),
    }


def test_rounding_never_lifts_the_credits_over_the_cap(ws):
    ws.contract(
        pool_contract("""\
        - {id: k1, target: 0.80, allocation_pct: 0.33335}
        - {id: k2, target: 0.80, allocation_pct: 0.33335}
        - {id: k3, target: 0.80, allocation_pct: 0.3333}
    """)
    )
    volumes(ws, "1000", count=1)
    ws.kpis([("C1", k, "2024-01", "0.70") for k in ("k1", "k2", "k3")])
    ws.settle("2024-01")
    # A = cap = 100.00; credits 33.335 + 33.335 + 33.33 = 100.00 exactly: within the cap, but
    # rounded one by one they would bill 33.34 + 33.34 + 33.33 = 100.01. So the cap binds:
    # 100.00 split 0.33335 : 0.33335 : 0.3333 -> 33.335, 33.335, 33.33 cut to 33.33 each (99.99);
    # the missing cent to the largest remainder (.5 for k1 and k2: the tie goes to k1)
    c = credits(ws)
    assert all(c[("2024-01", k)]["capped"] for k in ("k1", "k2", "k3"))
    assert credit_lines(ws) == {
        ("2024-01", "credit:k1"): D("-33.34"),
        ("2024-01", "credit:k2"): D("-33.33"),
        ("2024-01", "credit:k3"): D("-33.33"),
    }


# --------------------------------------------------------------------------- earn-back


EARN_BACK_SL = """\
- id: sl
  target: 0.80
  allocation_pct: 0.40
  repeat_multiplier: 2.0
  earn_back_months: 3
"""


def test_earn_back_completes_skipping_an_excused_month(ws):
    ws.contract(pool_contract(EARN_BACK_SL))
    volumes(ws, "100000", count=6)
    ws.kpis(
        [
            ("C1", "sl", "2024-01", "0.70"),
            ("C1", "sl", "2024-02", "0.85"),
            ("C1", "sl", "2024-03", "0.60"),
            ("C1", "sl", "2024-04", "0.85"),
            ("C1", "sl", "2024-05", "0.85"),
            ("C1", "sl", "2024-06", "0.85"),
        ]
    )
    ws.exclusions([("C1", None, "2024-03", "relief event")])
    ws.settle("2024-01", "2024-06")
    # Jan credit 4,000.00; met in Feb, (Mar excused: skipped), Apr, May -> earned back in May
    assert credit_lines(ws) == {
        ("2024-01", "credit:sl"): D("-4000.00"),
        ("2024-05", "earn_back:sl"): D("4000.00"),
    }
    c = credits(ws)[("2024-01", "sl")]
    assert (c["earn_back_status"], c["earned_back_in"]) == ("earned_back", dt.date(2024, 5, 1))
    line = ws.rows("SELECT * FROM current_invoice_lines WHERE line_key = 'earn_back:sl'")[0]
    assert line["line_type"] == "earn_back"
    assert "2024-01" in line["description"]


def test_earn_back_broken_by_a_new_failure(ws):
    ws.contract(pool_contract(EARN_BACK_SL))
    volumes(ws, "100000", count=7)
    values = ["0.70", "0.85", "0.70", "0.85", "0.85", "0.85", "0.85"]
    ws.kpis([("C1", "sl", m, v) for m, v in zip(months("2024-01", 7), values, strict=True)])
    ws.settle("2024-01", "2024-07")
    c = credits(ws)
    # Jan's credit: Feb met, Mar fails -> broken. Mar (1st failure of a new run) 4,000.00:
    # Apr, May, Jun met -> earned back in June
    assert (
        c[("2024-01", "sl")]["earn_back_status"],
        c[("2024-01", "sl")]["earned_back_in"],
        c[("2024-01", "sl")]["earn_back_broken_in"],
    ) == ("broken", None, dt.date(2024, 3, 1))
    assert c[("2024-03", "sl")]["earned_back_in"] == dt.date(2024, 6, 1)
    assert credit_lines(ws) == {
        ("2024-01", "credit:sl"): D("-4000.00"),
        ("2024-03", "credit:sl"): D("-4000.00"),
        ("2024-06", "earn_back:sl"): D("4000.00"),
    }


def test_earn_back_pending_until_enough_months(ws):
    ws.contract(pool_contract(EARN_BACK_SL))
    volumes(ws, "100000", count=3)
    ws.kpis(
        [
            ("C1", "sl", "2024-01", "0.70"),
            ("C1", "sl", "2024-02", "0.85"),
            ("C1", "sl", "2024-03", "0.85"),
        ]
    )
    ws.settle("2024-01", "2024-03")
    c = credits(ws)[("2024-01", "sl")]
    # only two of the three months so far
    assert (c["earn_back_status"], c["earned_back_in"]) == ("pending", None)
    assert ("2024-03", "earn_back:sl") not in credit_lines(ws)


# --------------------------------------------------------------------------- bonus


def test_bonus_paid_and_suppressed_by_another_kpis_failure(ws):
    ws.contract(
        pool_contract("""\
        - {id: sl, target: 0.80, allocation_pct: 0.40}
        - id: csat
          description: Customer satisfaction
          target: 0.85
          allocation_pct: 0.20
          bonus: {at_or_better: 0.90, pct_of_charges: 0.005}
    """)
    )
    volumes(ws, "100000.50", count=3)
    ws.kpis(
        [
            ("C1", "sl", "2024-01", "0.82"),
            ("C1", "csat", "2024-01", "0.90"),
            ("C1", "sl", "2024-02", "0.75"),
            ("C1", "csat", "2024-02", "0.95"),
            ("C1", "sl", "2024-03", "0.82"),
            ("C1", "csat", "2024-03", "0.8999"),
        ]
    )
    ws.settle("2024-01", "2024-03")
    assert credit_lines(ws) == {
        # Jan: csat exactly at 0.90 and nothing failed: 0.005 x 100,000.50 = 500.0025 -> 500.00
        ("2024-01", "bonus:csat"): D("500.00"),
        # Feb: csat 0.95 but sl failed: no bonus; sl credit 10,000.05 x 0.40 = 4,000.02
        ("2024-02", "credit:sl"): D("-4000.02"),
        # Mar: 0.8999 is met (>= 0.85) but below the bonus level: nothing
    }
    line = ws.rows("SELECT * FROM current_invoice_lines WHERE line_key = 'bonus:csat'")[0]
    assert line["line_type"] == "bonus"
    assert line["description"] == (
        "Customer satisfaction: performance bonus (actual 0.9000 at or better than 0.9000; "
        "0.5% of charges)"
    )


# --------------------------------------------------------------------------- points regime


def test_points_regime_with_a_repeat_and_the_cap(ws):
    ws.contract(POINTS_CONTRACT)
    volumes(ws, "100000", count=3, contract="P1", line="claims")
    ws.kpis(
        [
            ("P1", "accuracy", "2024-01", "0.97"),
            ("P1", "turnaround", "2024-01", "0.96"),
            ("P1", "accuracy", "2024-02", "0.96"),
            ("P1", "turnaround", "2024-02", "0.92"),
            ("P1", "accuracy", "2024-03", "0.96"),
            ("P1", "turnaround", "2024-03", "0.84"),
        ]
    )
    ws.settle("2024-01", "2024-03")
    c = credits(ws, "P1")
    # Jan: accuracy 0.97 < 0.98 (not < 0.965): 1 point; total 1 -> 1% of 100,000.00 = 1,000.00
    # Feb: accuracy 0.96 < 0.965: 3 points x 2 (repeat) = 6; turnaround 0.92 < 0.93: 1 point.
    #      7 points -> 3% = 3,000.00 split 6:1: 2,571.428.. -> 2,571.42 (.857),
    #      428.571.. -> 428.57 (.143); 2,999.99, the missing cent to accuracy -> 2,571.43
    # Mar: accuracy 3 x 2 = 6 (3rd in a row); turnaround 0.84 < 0.85: 4 x 2 (repeat) = 8.
    #      14 points -> 6% = 6,000.00 > cap 5% = 5,000.00 -> 5,000.00 split 6:8:
    #      2,142.857.. -> 2,142.85 (.714), 2,857.142.. -> 2,857.14 (.286); missing cent to accuracy
    assert [(m, k, c[(m, k)]["points"]) for (m, k) in c] == [
        ("2024-01", "accuracy", D(1)),
        ("2024-02", "accuracy", D(6)),
        ("2024-02", "turnaround", D(1)),
        ("2024-03", "accuracy", D(6)),
        ("2024-03", "turnaround", D(8)),
    ]
    assert c[("2024-02", "accuracy")]["multiplier"] == D(2)
    assert (
        c[("2024-02", "accuracy")]["points_total"],
        c[("2024-02", "accuracy")]["points_pct"],
        c[("2024-02", "accuracy")]["capped"],
    ) == (D(7), D("0.03"), False)
    assert (
        c[("2024-03", "turnaround")]["points_total"],
        c[("2024-03", "turnaround")]["capped"],
        c[("2024-03", "turnaround")]["split_total"],
    ) == (D(14), True, D("5000.00"))
    assert credit_lines(ws, "P1") == {
        ("2024-01", "credit:accuracy"): D("-1000.00"),
        ("2024-02", "credit:accuracy"): D("-2571.43"),
        ("2024-02", "credit:turnaround"): D("-428.57"),
        ("2024-03", "credit:accuracy"): D("-2142.86"),
        ("2024-03", "credit:turnaround"): D("-2857.14"),
    }


def test_points_below_the_first_step_credit_nothing(ws):
    ws.contract(
        POINTS_CONTRACT.replace("{from_points: 1, pct: 0.01}", "{from_points: 2, pct: 0.01}")
    )
    volumes(ws, "100000", count=1, contract="P1", line="claims")
    ws.kpis([("P1", "accuracy", "2024-01", "0.97"), ("P1", "turnaround", "2024-01", "0.99")])
    ws.settle("2024-01")
    # 1 point, below the first step (2 points): 0% of charges, no credit line
    c = credits(ws, "P1")[("2024-01", "accuracy")]
    assert (c["points"], c["points_pct"], c["amount"]) == (D(1), D(0), D(0))
    assert credit_lines(ws, "P1") == {}


# --------------------------------------------------------------------------- properties
#
# The properties run the settlement SQL (01..07) in an in-memory DuckDB over terms and inputs
# registered the way the engine registers them: hundreds of random months in a few seconds.

SCALES = st.integers(min_value=0, max_value=4)
MODES = st.sampled_from(["half_up", "half_even"])
PCTS = st.integers(min_value=1, max_value=30).map(lambda n: D(n) / 100)
MONTHS3 = [dt.date(2024, m, 1) for m in (1, 2, 3)]


def run_credit_sql(contract_yaml: str, kpis: list[tuple], units: list[tuple]):
    """sql/01..07 on an in-memory database (tests/helpers.py), 2024-01..2024-12."""
    return sql_steps([contract_yaml], {"kpis": kpis, "volumes": units}, "07", dt.date(2024, 12, 1))


def month_credits(con) -> dict[dt.date, list[dict]]:
    cur = con.execute("SELECT * FROM calc_service_credits ORDER BY period, kpi_order")
    names = [d[0] for d in cur.description]
    out: dict[dt.date, list[dict]] = {}
    for row in cur.fetchall():
        r = dict(zip(names, row, strict=True))
        out.setdefault(r["period"], []).append(r)
    return out


def check_month(rows: list[dict]) -> None:
    """Invariants of one month's credits, against Python Decimal."""
    first = rows[0]
    scale, mode = first["amount_scale"], first["rounding_mode"]
    unit = D(1).scaleb(-scale)
    amounts = [r["amount"] for r in rows]
    assert all(a >= 0 and a == round_at(a, scale, mode) for a in amounts)
    if first["cap_amount"] is not None:
        # credits never exceed the (rounded) cap
        assert sum(amounts) <= round_at(first["cap_amount"], scale, mode)
    if first["split_total"] is not None:
        # the rounded lines add up to the rounded total exactly ...
        assert sum(amounts) == first["split_total"]
        # ... and each is its exact pro rata share cut to the amount scale, or one unit more
        total_weight = sum(r["weight"] for r in rows)
        for r in rows:
            exact = first["split_total"] * r["weight"] / total_weight if total_weight else D(0)
            floor = exact.quantize(unit, rounding=decimal.ROUND_DOWN)
            assert r["amount"] in (floor, floor + unit)
        if first["capped"]:
            assert first["split_total"] == round_at(first["cap_amount"], scale, mode)
    else:
        for r in rows:
            assert r["amount"] == round_at(r["uncapped_amount"], scale, mode)


@st.composite
def pool_months(draw):
    n = draw(st.integers(min_value=1, max_value=4))
    kpis, rows = [], []
    for i in range(n):
        linear = draw(st.booleans())
        kpis.append(
            f"- {{id: k{i}, target: 0.80, minimum: 0.70, allocation_pct: "
            f"{draw(st.integers(1, 50)) / D(100)}, repeat_multiplier: "
            f"{draw(st.sampled_from(['1', '1.5', '2']))}, "
            f"credit: {{model: {'linear' if linear else 'binary'}}}}}"
        )
        for month in MONTHS3:
            fails = draw(st.booleans())
            actual = draw(st.integers(6000, 7999)) / D(10000) if fails else D("0.85")
            rows.append(("C1", f"k{i}", month, actual))
    cap = draw(st.one_of(st.none(), PCTS))
    scale, mode = draw(SCALES), draw(MODES)
    text = pool_contract(
        "\n".join(kpis),
        at_risk_pct=str(draw(PCTS)),
        monthly_cap_pct=None if cap is None else str(cap),
        rounding=mode,
    )
    text = text.replace("amount_scale: 2", f"amount_scale: {scale}")
    units = draw(st.integers(min_value=1, max_value=10**10).map(lambda n: D(n) / 1000))
    return text, rows, [("C1", "voice", m, units) for m in MONTHS3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_months())
def test_property_pool_credits_within_the_cap_and_lines_add_up(case):
    text, kpis, units = case
    con = run_credit_sql(text, kpis, units)
    for rows in month_credits(con).values():
        check_month(rows)


@st.composite
def points_months(draw):
    steps = sorted(draw(st.sets(st.integers(1, 20), min_size=1, max_size=4)))
    table = ", ".join(
        f"{{from_points: {s}, pct: {draw(st.integers(1, 10)) / D(100)}}}" for s in steps
    )
    n = draw(st.integers(min_value=1, max_value=4))
    kpis, rows = [], []
    for i in range(n):
        points = [draw(st.integers(0, 5)) for _ in range(2)]
        kpis.append(
            f"- {{id: k{i}, target: 0.95, repeat_multiplier: "
            f"{draw(st.sampled_from(['1', '2', '3']))}, points_bands: "
            f"[{{worse_than: 0.93, points: {points[0]}}}, "
            f"{{worse_than: 0.90, points: {points[1]}}}]}}"
        )
        for month in MONTHS3:
            actual = draw(st.sampled_from(["0.97", "0.94", "0.92", "0.85"]))
            rows.append(("P1", f"k{i}", month, D(actual)))
    cap = draw(st.one_of(st.none(), PCTS))
    mode, scale = draw(MODES), draw(SCALES)
    text = (
        POINTS_CONTRACT.split("  kpis:")[0]
        .replace("monthly_cap_pct: 0.05", f"monthly_cap_pct: {cap}" if cap else "")
        .replace(
            "points_to_credit_pct:\n    - {from_points: 1, pct: 0.01}\n"
            "    - {from_points: 5, pct: 0.03}\n    - {from_points: 10, pct: 0.06}\n",
            f"points_to_credit_pct: [{table}]\n",
        )
        .replace(
            "end: 2025-12\n", f"end: 2025-12\nrounding: {{mode: {mode}, amount_scale: {scale}}}\n"
        )
        + "  kpis:\n"
        + textwrap.indent("\n".join(kpis), "    ")
        + "\n"
    )
    units = draw(st.integers(min_value=1, max_value=10**10).map(lambda n: D(n) / 1000))
    return text, rows, [("P1", "claims", m, units) for m in MONTHS3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points_months())
def test_property_points_credits_within_the_cap_and_lines_add_up(case):
    text, kpis, units = case
    con = run_credit_sql(text, kpis, units)
    for rows in month_credits(con).values():
        check_month(rows)
        first = rows[0]
        # the whole stepped credit, or the cap when it binds, is what the lines add up to
        expected = first["points_pct"] * first["charges"] if first["points_pct"] else D(0)
        if first["cap_amount"] is not None:
            expected = min(expected, first["cap_amount"])
        assert sum(r["amount"] for r in rows) == round_at(
            expected, first["amount_scale"], first["rounding_mode"]
        )


# div_round and round_to against Python Decimal, on exact half-unit boundaries and just off them.
HALF_CASES = st.tuples(
    st.integers(min_value=-(10**9), max_value=10**9),  # the quotient in half-units of the scale
    st.integers(min_value=1, max_value=10**6).map(lambda n: D(n) / 1000),  # the divisor
    SCALES,
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=HALF_CASES, mode=MODES, nudge=st.sampled_from([D(0), D("1e-12"), D("-1e-12")]))
def test_property_div_round_matches_decimal_on_half_boundaries(macros, case, mode, nudge):
    halves, divisor, scale = case
    # halves/2 units of the last place (an exact half when halves is odd), times the divisor:
    # the exact quotient sits on the rounding boundary; nudge moves it a hair to either side
    dividend = D(halves) * D(1).scaleb(-scale) / 2 * divisor + nudge
    quotient, rounded = macros.execute(
        "SELECT div_round(?::DECIMAL(38, 12), ?::DECIMAL(38, 12), ?, ?), "
        "round_to(?::DECIMAL(38, 12), ?, ?)",
        [dividend, divisor, scale, mode, dividend, scale, mode],
    ).fetchone()
    assert quotient == round_at(Fraction(dividend) / Fraction(divisor), scale, mode)
    assert rounded == round_at(dividend, scale, mode)


@pytest.mark.parametrize(
    ("a", "b", "mode", "expected"),
    [
        # 0.125 / 1 -> half_up 0.13, half_even 0.12; -0.125 -> -0.13 / -0.12 (half away from zero)
        ("0.125", "1", "half_up", "0.13"),
        ("0.125", "1", "half_even", "0.12"),
        ("-0.125", "1", "half_up", "-0.13"),
        ("-0.125", "1", "half_even", "-0.12"),
        # 1 / 8 = 0.125 on the boundary through a real division; 0.135 -> 0.14 both ways
        ("1", "8", "half_even", "0.12"),
        ("0.27", "2", "half_even", "0.14"),
        # 2 / 3 = 0.666.. -> 0.67; cut toward zero (down) 0.66; -2 / 3 down -> -0.66
        ("2", "3", "half_up", "0.67"),
        ("2", "3", "down", "0.66"),
        ("-2", "3", "down", "-0.66"),
    ],
)
def test_div_round_hand_cases(macros, a, b, mode, expected):
    got = macros.execute(
        "SELECT div_round(?::DECIMAL(38, 12), ?::DECIMAL(38, 12), 2, ?)", [D(a), D(b), mode]
    ).fetchone()[0]
    assert got == D(expected)
