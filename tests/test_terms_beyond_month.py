"""Terms beyond the month (SPEC 10): commitments, annual credit caps, pass-through, one-off
charges and FX risk-sharing. Every figure is worked by hand from the clause, in the comment
beside its assert."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from pipelines.errors import SettleError

VOICE_AT = """\
contract_id: C1
currency: GBP
start: {start}
end: {end}
service_lines:
  - id: voice
    pricing:
      - {{effective_from: {start}, model: per_unit, bands: [{{rate: {rate}}}]}}
"""


def months(first: str, last: str) -> list[str]:
    y, m = map(int, first.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def flat_volumes(ws, first: str, last: str, units: str) -> None:
    ws.volumes([("C1", "voice", p, units) for p in months(first, last)])


def test_contract_year_shortfall_is_trued_up_in_the_years_last_month(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2025-12", rate="2.00")
        + "    commitments:\n"
        + "      - {effective_from: 2024-01, over: contract_year, minimum_units: 12000}\n"
    )
    flat_volumes(ws, "2024-01", "2024-12", "900")
    ws.settle("2024-01", "2024-12")
    # 12 x 900 = 10,800 units against 12,000: 1,200 short x 2.00 = 2,400.00 in 2024-12, the
    # contract year's last month; no true-up in any earlier month
    assert ws.lines("2024-12") == {"usage:voice": D("1800.00"), "true_up:voice": D("2400.00")}
    assert "true_up:voice" not in ws.lines("2024-11")
    window = ws.rows(
        "SELECT window_units, minimum_units_prorated, shortfall_units, months_in_term "
        "FROM commitment_windows"
    )
    assert window == [
        {
            "window_units": D("10800"),
            "minimum_units_prorated": D("12000"),
            "shortfall_units": D("1200"),
            "months_in_term": 12,
        }
    ]


def test_a_quarter_cut_short_by_a_mid_quarter_start_is_prorated_exactly(ws):
    ws.contract(
        VOICE_AT.format(start="2024-02", end="2024-12", rate="1.50")
        + "    commitments:\n"
        + "      - {effective_from: 2024-02, over: quarter, minimum_units: 1000}\n"
    )
    ws.volumes(
        [
            ("C1", "voice", "2024-02", "300"),
            ("C1", "voice", "2024-03", "300"),
            ("C1", "voice", "2024-04", "300"),
            ("C1", "voice", "2024-05", "300"),
            ("C1", "voice", "2024-06", "300"),
        ]
    )
    ws.settle("2024-02", "2024-06")
    # Q1 2024 has Feb and Mar in the term: minimum 1,000 x 2/3 = 666.666...; units 600; short
    # 66.666... x 1.50 = 100.00 exactly (a minimum rounded to 666.67 would bill 100.005 -> 100.01)
    assert ws.lines("2024-03")["true_up:voice"] == D("100.00")
    # Q2 is whole: 1,000 - 900 = 100 short x 1.50 = 150.00
    assert ws.lines("2024-06")["true_up:voice"] == D("150.00")
    assert ws.rows(
        "SELECT billed_period, months_in_term, months_in_window FROM commitment_windows "
        "ORDER BY billed_period"
    ) == [
        {"billed_period": dt.date(2024, 3, 1), "months_in_term": 2, "months_in_window": 3},
        {"billed_period": dt.date(2024, 6, 1), "months_in_term": 3, "months_in_window": 3},
    ]


def test_a_money_commitment_bills_the_difference_to_the_usage_charges(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2024-12", rate="2.00")
        + "    commitments:\n"
        + "      - {effective_from: 2024-01, over: calendar_year, minimum_charge: 30000.00}\n"
    )
    flat_volumes(ws, "2024-01", "2024-12", "1000")
    ws.settle("2024-01", "2024-12")
    # usage 12 x 1,000 x 2.00 = 24,000.00 against 30,000.00: 6,000.00 in December
    assert ws.lines("2024-12")["true_up:voice"] == D("6000.00")


def test_annual_cap_returns_the_excess_at_the_contract_years_end(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2025-12", rate="10.00")
        + """\
service_credits:
  at_risk_pct: 0.10
  annual_cap_pct: 0.05
  annual_cap_amount: 5000.00
  kpis:
    - {id: sl, target: 0.80, allocation_pct: 1.0}
"""
    )
    flat_volumes(ws, "2024-01", "2024-12", "1000")
    ws.kpis([("C1", "sl", p, "0.70") for p in months("2024-01", "2024-12")])
    ws.settle("2024-01", "2024-12")
    # charges 1,000 x 10.00 = 10,000.00 a month; the KPI fails every month: credit
    # A x 1.0 = 10% x 10,000 = -1,000.00 a month (within the monthly cap, 10% by default)
    assert ws.lines("2024-06")["credit:sl"] == D("-1000.00")
    # the year: -12,000.00 net; cap = lower of 5,000.00 and 5% x 120,000.00 = 6,000.00 -> 5,000;
    # excess 7,000.00 returned on the year's last month
    assert ws.lines("2024-12")["credit_cap_refund"] == D("7000.00")
    assert "credit_cap_refund" not in ws.lines("2024-11")
    assert ws.one("SELECT cap_amount FROM annual_credit_caps WHERE capped") == D("5000")


def test_pass_through_with_margin_stays_out_of_the_at_risk_amount(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2024-12", rate="10.00")
        + """\
pass_through:
  - {id: telco, description: Telephony at cost, margin_pct: 0.05}
  - {id: print, description: Printing, margin_pct: 0.10, in_charges: true}
service_credits:
  at_risk_pct: 0.10
  kpis:
    - {id: sl, target: 0.80, allocation_pct: 1.0}
"""
    )
    ws.volumes([("C1", "voice", "2024-01", "1000"), ("C1", "voice", "2024-02", "1000")])
    ws.kpis([("C1", "sl", "2024-01", "0.70"), ("C1", "sl", "2024-02", "0.70")])
    ws.pass_through(
        [
            ("C1", "2024-01", "telco", "January bill", "600.00", "T-1"),
            ("C1", "2024-01", "telco", "January top-up", "400.00", "T-2"),
            ("C1", "2024-02", "print", "Print run", "1000.00", "P-1"),
        ]
    )
    ws.settle("2024-01", "2024-02")
    january = ws.lines("2024-01")
    # telco: (600 + 400) x 1.05 = 1,050.00, not in the charges: the at-risk amount is 10% of the
    # usage 10,000.00 alone, so the binary credit is -1,000.00
    assert january["pass_through:telco"] == D("1050.00")
    assert january["credit:sl"] == D("-1000.00")
    february = ws.lines("2024-02")
    # print counts in the charges: 1,000 x 1.10 = 1,100.00; A = 10% x 11,100.00 = 1,110.00
    assert february["pass_through:print"] == D("1100.00")
    assert february["credit:sl"] == D("-1110.00")


def test_one_thousand_in_three_instalments(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2024-12", rate="1.00")
        + """\
one_off_charges:
  - {id: transition, description: Transition, amount: 1000.00, first_period: 2024-01,
     instalments: 3}
"""
    )
    flat_volumes(ws, "2024-01", "2024-04", "1")
    ws.settle("2024-01", "2024-04")
    # 1,000.00 / 3 = 333.33 each with 0.01 left over, to the earliest: 333.34, 333.33, 333.33
    assert [ws.lines(p).get("one_off:transition") for p in months("2024-01", "2024-04")] == [
        D("333.34"),
        D("333.33"),
        D("333.33"),
        None,
    ]


def test_instalments_after_the_end_are_billed_in_the_last_month(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2024-02", rate="1.00")
        + """\
one_off_charges:
  - {id: transition, amount: 1000.00, first_period: 2024-01, instalments: 3}
"""
    )
    flat_volumes(ws, "2024-01", "2024-02", "1")
    ws.settle("2024-01", "2024-02")
    # January 333.34; February 333.33 + the March instalment 333.33 = 666.66
    assert ws.lines("2024-01")["one_off:transition"] == D("333.34")
    assert ws.lines("2024-02")["one_off:transition"] == D("666.66")


FX = """\
fx_sharing: {delivery_currency: INR, base_rate: 0.0100, band_pct: 0.05, client_share: 0.50,
             lag_months: 1}
"""


def test_fx_movement_inside_above_and_below_the_band(ws):
    ws.contract(VOICE_AT.format(start="2024-02", end="2024-12", rate="10.00") + FX)
    flat_volumes(ws, "2024-02", "2024-04", "1000")
    # a month reads the rate of the month before (lag 1)
    ws.fx_rates(
        [("INR", "2024-01", "0.0104"), ("INR", "2024-02", "0.0110"), ("INR", "2024-03", "0.0088")]
    )
    ws.settle("2024-02", "2024-04")
    # C = 10,000.00 usage each month
    # Feb reads 0.0104: m = +4%, inside the 5% band: no line
    assert "fx_share" not in ws.lines("2024-02")
    # Mar reads 0.0110: m = +10%, e = +5%: 10,000 x 0.05 x 0.50 = 250.00 to the provider
    assert ws.lines("2024-03")["fx_share"] == D("250.00")
    # Apr reads 0.0088: m = -12%, e = -7%: 10,000 x -0.07 x 0.50 = -350.00 to the client
    assert ws.lines("2024-04")["fx_share"] == D("-350.00")
    stored = ws.rows("SELECT period, movement, shared_movement FROM fx_shares ORDER BY period")
    assert [(r["movement"], r["shared_movement"]) for r in stored] == [
        (D("0.04"), D("0")),
        (D("0.10"), D("0.05")),
        (D("-0.12"), D("-0.07")),
    ]


def test_a_missing_fx_rate_stops_the_run_naming_currency_and_month(ws):
    ws.contract(VOICE_AT.format(start="2024-02", end="2024-12", rate="10.00") + FX)
    flat_volumes(ws, "2024-02", "2024-03", "1000")
    ws.fx_rates([("INR", "2024-01", "0.0104")])
    with pytest.raises(SettleError) as err:
        ws.settle("2024-02", "2024-03")
    # March reads February's rate (lag 1), which is missing
    assert "currency=INR, rate_period=2024-02" in str(err.value)
    assert str(err.value).startswith("fx_rates/")
    # nothing was written: no database, or one without a single table
    assert ws.db_bytes() is None or ws.one("SELECT count(*) FROM duckdb_tables()") == 0


def test_a_backdated_commitment_change_after_the_year_closed_is_an_adjustment(ws):
    base = VOICE_AT.format(start="2024-01", end="2025-12", rate="2.00") + (
        "    commitments:\n"
        "      - {effective_from: 2024-01, over: contract_year, minimum_units: 12000}\n"
    )
    ws.contract(base)
    flat_volumes(ws, "2024-01", "2025-01", "900")
    ws.settle("2024-01", "2024-12")
    for p in months("2024-01", "2024-12"):
        ws.close(p)
    # agreed in 2025: from 2024-07 the commitment is 11,000 units
    ws.contract(
        base
        + "      - {effective_from: 2024-07, over: contract_year, minimum_units: 11000,\n"
        + '         agreed_on: 2025-01-15, reason: "commitment lowered"}\n',
        name="c1.yaml",
    )
    ws.settle("2025-01")
    # 2024-12 closed with 1,200 short x 2.00 = 2,400.00; restated with 11,000: 200 x 2.00 =
    # 400.00; the difference -2,000.00 is billed on 2025-01, the next open month
    adjustment = ws.rows(
        "SELECT period, billed_in_period, closed_amount, restated_amount, delta, reason "
        "FROM current_adjustments"
    )
    assert adjustment == [
        {
            "period": dt.date(2024, 12, 1),
            "billed_in_period": dt.date(2025, 1, 1),
            "closed_amount": D("2400"),
            "restated_amount": D("400"),
            "delta": D("-2000"),
            "reason": "commitment lowered",
        }
    ]
    assert ws.lines("2025-01")["adjustment:true_up:voice:2024-12"] == D("-2000.00")
    # the closed December is untouched
    assert ws.lines("2024-12")["true_up:voice"] == D("2400.00")


@pytest.mark.parametrize(
    "extra, path",
    [
        (
            "    commitments:\n      - {effective_from: 2024-01, over: quarter}\n",
            "service_lines[0].commitments[0]",
        ),
        (
            "    commitments:\n      - {effective_from: 2024-01, over: quarter,"
            " minimum_units: 1, minimum_charge: 1}\n",
            "service_lines[0].commitments[0]",
        ),
        (
            "one_off_charges:\n  - {id: t, amount: 10.00, first_period: 2026-01}\n",
            "one_off_charges[0].first_period",
        ),
        (
            "one_off_charges:\n  - {id: t, amount: 10.005, first_period: 2024-01}\n",
            "one_off_charges[0].amount",
        ),
        (
            "fx_sharing: {delivery_currency: GBP, base_rate: 1, client_share: 0.5}\n",
            "fx_sharing.delivery_currency",
        ),
        (
            "fx_sharing: {delivery_currency: INR, base_rate: 1, client_share: 0.5,"
            " applies_to: [chat]}\n",
            "fx_sharing.applies_to[0]",
        ),
        (
            "pass_through:\n  - {id: voice}\n",
            "pass_through[0].id",
        ),
    ],
)
def test_config_rules_for_terms_beyond_the_month(ws, extra, path):
    ws.contract(VOICE_AT.format(start="2024-01", end="2025-12", rate="1.00") + extra)
    flat_volumes(ws, "2024-01", "2024-01", "1")
    with pytest.raises(SettleError) as err:
        ws.settle("2024-01")
    assert path in str(err.value)
    assert ws.db_bytes() is None


def test_monthly_minimum_and_commitments_are_not_both_on_one_line(ws):
    ws.contract(
        """\
contract_id: C1
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}], minimum_units: 10}
    commitments:
      - {effective_from: 2024-01, over: quarter, minimum_units: 100}
"""
    )
    flat_volumes(ws, "2024-01", "2024-01", "1")
    with pytest.raises(SettleError, match=r"service_lines\[0\]\.pricing\[0\].*not both"):
        ws.settle("2024-01")


def test_a_pass_through_item_the_contract_does_not_name_is_refused(ws):
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2024-12", rate="1.00")
        + "pass_through:\n  - {id: telco}\n"
    )
    flat_volumes(ws, "2024-01", "2024-01", "1")
    ws.pass_through([("C1", "2024-01", "postage", None, "5.00", None)])
    with pytest.raises(SettleError, match="item_id must be a pass_through item"):
        ws.settle("2024-01")


def test_a_units_shortfall_at_an_eight_place_rate_is_divided_exactly(ws):
    # CPI 2023-09 = 100, 2023-10 = 168.406871: the factor from 2024-01 (lag 3) is 1.68406871 and
    # the voice rate 1.00 x 1.68406871 = 1.68406871 at rate_scale 8. The quarter's 999.997031
    # units fall 0.002969 short of 1,000: 0.002969 x 1.68406871 = 0.00499999999999 (14 places),
    # 0.00 at 2 places half up, so no true-up line. The shortfall x 3 months was cut to 12 places
    # (0.01499999999997 -> 0.015000000000) before the division by 3: 0.005, which billed 0.01.
    ws.contract(
        VOICE_AT.format(start="2024-01", end="2024-12", rate="1.00")
        + "    commitments:\n"
        + "      - {effective_from: 2024-01, over: quarter, minimum_units: 1000}\n"
        + "rounding: {mode: half_up, amount_scale: 2, rate_scale: 8}\n"
        + "indexation:\n"
        + "  index_id: CPI\n  base_period: 2023-09\n  first_review: 2024-01\n"
        + "  lag_months: 3\n  factor_scale: 10\n  applies_to: [voice]\n"
    )
    ws.index_values([("CPI", "2023-09", "100"), ("CPI", "2023-10", "168.406871")])
    ws.volumes(
        [
            ("C1", "voice", "2024-01", "333"),
            ("C1", "voice", "2024-02", "333"),
            ("C1", "voice", "2024-03", "333.997031"),
        ]
    )
    ws.settle("2024-01", "2024-03")
    [window] = ws.rows("SELECT first_rate, window_units, amount FROM commitment_windows")
    assert window["first_rate"] == D("1.68406871")
    assert window["window_units"] == D("999.997031")
    assert window["amount"] == 0
    assert "true_up:voice" not in ws.lines("2024-03")
