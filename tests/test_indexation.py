"""Indexation (SPEC 4): review factors in sql/03_indexation.sql and the prices they move in
sql/04_pricing.sql.

Each contract has an indexed voice line at 2.40 a contact (1,000 contacts a month), an email line at
1.65 that is not indexed, and an indexed management fee of 12,500.00. Index values are chosen so
every change is a round number; the factors, rates and amounts in the comments are worked by hand.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pipelines.errors import SettleError

D = Decimal


def contract(indexation: str, *, end: str = "2026-12", rounding: str = "half_up") -> str:
    return f"""\
contract_id: IX1
currency: GBP
start: 2024-01
end: {end}
rounding: {{mode: {rounding}, amount_scale: 2, rate_scale: 4}}
service_lines:
  - id: voice
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: 2.40}}]}}
  - id: email
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: 1.65}}]}}
fixed_fees:
  - {{id: management_fee, description: Account management, amount: 12500.00, indexed: true}}
indexation:
{indexation}
"""


def chained(
    *,
    cap: str | None = "0.05",
    floor: str | None = "0.0",
    share: str | None = "0.70",
    factor_scale: int = 6,
) -> str:
    """UK_CPI, base 2023-10, reviews every January from 2025 on the index of October (lag 3)."""
    lines = [
        "  index_id: UK_CPI",
        "  base_period: 2023-10",
        "  first_review: 2025-01",
        "  review_every_months: 12",
        "  lag_months: 3",
        f"  factor_scale: {factor_scale}",
        "  applies_to: [voice, management_fee]",
        "  method: chained",
    ]
    if cap is not None:
        lines.append(f"  cap: {cap}")
    if floor is not None:
        lines.append(f"  floor: {floor}")
    if share is not None:
        lines.append(f"  indexed_share: {share}")
    return "\n".join(lines)


def month_list(first: str, last: str) -> list[str]:
    y, m = map(int, first.split("-"))
    out = []
    while f"{y}-{m:02d}" <= last:
        out.append(f"{y}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def volumes(ws, last: str = "2026-01") -> None:
    ws.volumes(
        [
            ("IX1", line, m, "1000")
            for m in month_list("2024-01", last)
            for line in ("voice", "email")
        ]
    )


def factors(ws) -> list[dict]:
    return ws.rows(
        "SELECT period, index_id, reference_period, reference_value, previous_reference_value, "
        "raw_change, applied_change, factor FROM current_index_factors ORDER BY period, index_id"
    )


def charge(ws, period: str, line_key: str) -> dict:
    rows = ws.rows(
        "SELECT base_rate, index_factor, rate, amount FROM current_charge_lines "
        "WHERE period = ? AND line_key = ?",
        [dt.date.fromisoformat(period + "-01"), line_key],
    )
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize(
    ("october_2024", "raw", "applied", "factor", "rate", "fee"),
    [
        # cap not binding: c = 103 / 100 - 1 = 0.03; factor = 1 x (1 + 0.70 x 0.03) = 1.021
        # voice 2.40 x 1.021 = 2.4504 -> 2,450.40 for 1,000; fee 12,500 x 1.021 = 12,762.50
        ("103", "0.03", "0.03", "1.021", "2.4504", "12762.50"),
        # cap binding: c = 107 / 100 - 1 = 0.07, clamped to 0.05; factor = 1 + 0.70 x 0.05 = 1.035
        # voice 2.40 x 1.035 = 2.484 -> 2.4840; fee 12,500 x 1.035 = 12,937.50
        ("107", "0.07", "0.05", "1.035", "2.4840", "12937.50"),
    ],
)
def test_chained_first_review(ws, october_2024, raw, applied, factor, rate, fee):
    ws.contract(contract(chained()))
    volumes(ws, "2025-01")
    ws.index_values([("UK_CPI", "2023-10", "100"), ("UK_CPI", "2024-10", october_2024)])
    ws.settle("2024-12", "2025-01")
    assert factors(ws) == [
        {
            "period": dt.date(2025, 1, 1),
            "index_id": "UK_CPI",
            "reference_period": dt.date(2024, 10, 1),
            "reference_value": D(october_2024),
            "previous_reference_value": D(100),
            "raw_change": D(raw),
            "applied_change": D(applied),
            "factor": D(factor),
        }
    ]
    # before the first review every price is the contract price (factor 1)
    assert charge(ws, "2024-12", "usage:voice")["rate"] == D("2.40")
    assert charge(ws, "2024-12", "fixed:management_fee")["amount"] == D("12500.00")
    jan = charge(ws, "2025-01", "usage:voice")
    assert (jan["index_factor"], jan["rate"]) == (D(factor), D(rate))
    assert jan["amount"] == D(rate) * 1000
    assert charge(ws, "2025-01", "fixed:management_fee")["amount"] == D(fee)
    # email is not in applies_to: it keeps its contract rate
    assert charge(ws, "2025-01", "usage:email")["rate"] == D("1.65")


@pytest.mark.parametrize(
    ("october_2025", "applied", "factor", "rate", "fee"),
    [
        # c = 107.12 / 103 - 1 = 0.04 (against the previous review's reference, not the base);
        # factor = round(1.021 x (1 + 0.70 x 0.04), 6) = 1.021 x 1.028 = 1.049588
        # voice 2.40 x 1.049588 = 2.5190112 -> 2.5190; fee 12,500 x 1.049588 = 13,119.85
        ("107.12", "0.04", "1.049588", "2.5190", "13119.85"),
        # c = 113.30 / 103 - 1 = 0.10, capped at 0.05: 1.021 x 1.035 = 1.056735
        # voice 2.40 x 1.056735 = 2.536164 -> 2.5362; fee 12,500 x 1.056735 = 13,209.1875 -> .19
        ("113.30", "0.05", "1.056735", "2.5362", "13209.19"),
    ],
)
def test_chained_second_review_compounds_on_the_first(ws, october_2025, applied, factor, rate, fee):
    ws.contract(contract(chained()))
    volumes(ws, "2026-01")
    ws.index_values(
        [
            ("UK_CPI", "2023-10", "100"),
            ("UK_CPI", "2024-10", "103"),
            ("UK_CPI", "2025-10", october_2025),
        ]
    )
    ws.settle("2026-01")
    second = [f for f in factors(ws) if f["period"] == dt.date(2026, 1, 1)]
    assert len(second) == 1
    assert second[0]["reference_period"] == dt.date(2025, 10, 1)
    assert second[0]["previous_reference_value"] == D(103)
    assert (second[0]["applied_change"], second[0]["factor"]) == (D(applied), D(factor))
    assert charge(ws, "2026-01", "usage:voice")["rate"] == D(rate)
    assert charge(ws, "2026-01", "fixed:management_fee")["amount"] == D(fee)


def test_basket_each_index_clamped(ws):
    ws.contract(
        contract(
            "  basket:\n"
            "    - {index_id: LABOUR, weight: 0.50}\n"
            "    - {index_id: UK_CPI, weight: 0.20}\n"
            "  base_period: 2023-10\n  first_review: 2025-01\n  lag_months: 3\n"
            "  cap: 0.05\n  floor: 0.0\n  applies_to: [voice, management_fee]"
        )
    )
    volumes(ws, "2025-01")
    ws.index_values(
        [
            ("LABOUR", "2023-10", "100"),
            ("LABOUR", "2024-10", "104"),
            ("UK_CPI", "2023-10", "100"),
            ("UK_CPI", "2024-10", "107"),
        ]
    )
    ws.settle("2025-01")
    # LABOUR c = 0.04; UK_CPI c = 0.07 clamped to 0.05 (each index on its own);
    # factor = 1 + 0.50 x 0.04 + 0.20 x 0.05 = 1 + 0.02 + 0.01 = 1.03 (30% stays fixed)
    assert [(f["index_id"], f["applied_change"], f["factor"]) for f in factors(ws)] == [
        ("LABOUR", D("0.04"), D("1.03")),
        ("UK_CPI", D("0.05"), D("1.03")),
    ]
    # voice 2.40 x 1.03 = 2.472 -> 2.4720; fee 12,500 x 1.03 = 12,875.00
    assert charge(ws, "2025-01", "usage:voice")["rate"] == D("2.4720")
    assert charge(ws, "2025-01", "fixed:management_fee")["amount"] == D("12875.00")


def test_base_relative_held_within_the_cap_of_the_previous_factor(ws):
    ws.contract(
        contract(
            "  basket:\n"
            "    - {index_id: LABOUR, weight: 0.50}\n"
            "    - {index_id: UK_CPI, weight: 0.20}\n"
            "  base_period: 2023-12\n  first_review: 2024-07\n  lag_months: 2\n"
            "  cap: 0.03\n  floor: 0.0\n  method: base_relative\n"
            "  applies_to: [voice, management_fee]",
            end="2025-12",
        )
    )
    volumes(ws, "2025-07")
    ws.index_values(
        [
            ("LABOUR", "2023-12", "100"),
            ("LABOUR", "2024-05", "102"),
            ("LABOUR", "2025-05", "110"),
            ("UK_CPI", "2023-12", "100"),
            ("UK_CPI", "2024-05", "101.5"),
            ("UK_CPI", "2025-05", "104"),
        ]
    )
    ws.settle("2024-07", "2025-07")
    by_review = {(f["period"], f["index_id"]): f for f in factors(ws)}
    # 2024-07: 0.30 + 0.50 x 102/100 + 0.20 x 101.5/100 = 0.30 + 0.51 + 0.203 = 1.013, inside
    # [1 x (1 + 0.0), 1 x (1 + 0.03)]
    assert by_review[(dt.date(2024, 7, 1), "LABOUR")]["factor"] == D("1.013")
    # 2025-07, both against the base period (not the previous review):
    # 0.30 + 0.50 x 110/100 + 0.20 x 104/100 = 0.30 + 0.55 + 0.208 = 1.058, held within
    # [1.013, 1.013 x 1.03 = 1.04339] -> 1.04339
    assert by_review[(dt.date(2025, 7, 1), "UK_CPI")]["previous_reference_value"] == D(100)
    assert by_review[(dt.date(2025, 7, 1), "LABOUR")]["factor"] == D("1.04339")
    # voice 2.40 x 1.013 = 2.4312; 2.40 x 1.04339 = 2.504136 -> 2.5041
    assert charge(ws, "2024-07", "usage:voice")["rate"] == D("2.4312")
    assert charge(ws, "2025-07", "usage:voice")["rate"] == D("2.5041")
    # fee 12,500 x 1.04339 = 13,042.375 -> 13,042.38 (half up)
    assert charge(ws, "2025-07", "fixed:management_fee")["amount"] == D("13042.38")


@pytest.mark.parametrize(
    ("floor", "factor", "rate", "fee"),
    [
        # c = 97 / 100 - 1 = -0.03, floor -0.02: the price falls by 2%
        # voice 2.40 x 0.98 = 2.3520; fee 12,500 x 0.98 = 12,250.00
        ("-0.02", "0.98", "2.3520", "12250.00"),
        # floor 0: no fall
        ("0.0", "1", "2.4000", "12500.00"),
        # no floor: the fall is unbounded: 0.97 -> 2.3280, 12,125.00
        (None, "0.97", "2.3280", "12125.00"),
    ],
)
def test_floor_allows_a_fall(ws, floor, factor, rate, fee):
    ws.contract(contract(chained(floor=floor, share=None)))  # indexed_share defaults to 1
    volumes(ws, "2025-01")
    ws.index_values([("UK_CPI", "2023-10", "100"), ("UK_CPI", "2024-10", "97")])
    ws.settle("2025-01")
    [f] = factors(ws)
    assert (f["raw_change"], f["factor"]) == (D("-0.03"), D(factor))
    assert charge(ws, "2025-01", "usage:voice")["rate"] == D(rate)
    assert charge(ws, "2025-01", "fixed:management_fee")["amount"] == D(fee)


@pytest.mark.parametrize(
    ("factor_scale", "factor", "rate"),
    [
        # c = 101.234567 / 100 - 1 = 0.01234567; 1 + 0.70 x 0.01234567 = 1.008641969
        # -> 1.008642 at 6 places; voice 2.40 x 1.008642 = 2.4207408 -> 2.4207
        (6, "1.008642", "2.4207"),
        # -> 1.0086 at 4 places; voice 2.40 x 1.0086 = 2.42064 -> 2.4206
        (4, "1.0086", "2.4206"),
    ],
)
def test_factor_rounded_to_factor_scale(ws, factor_scale, factor, rate):
    ws.contract(contract(chained(factor_scale=factor_scale)))
    volumes(ws, "2025-01")
    ws.index_values([("UK_CPI", "2023-10", "100"), ("UK_CPI", "2024-10", "101.234567")])
    ws.settle("2025-01")
    [f] = factors(ws)
    assert f["factor"] == D(factor)
    assert charge(ws, "2025-01", "usage:voice")["rate"] == D(rate)


def test_a_weighted_change_is_not_cut_to_ten_places_before_the_factor_is_rounded(ws):
    # c = 10,000.999999 / 10,000 - 1 = 0.0000999999 (10 places, exact); 0.5 of it is
    # 0.00004999995 (11 places), so the factor is 1.00004999995 -> 1.0000 at 4 places, half up.
    # The step was cut to 10 places first (a CASE with the base_relative branch took its scale):
    # 1.0000500000, a tie, which rounded up to 1.0001 and billed voice at 2.4002.
    ws.contract(contract(chained(share="0.50", factor_scale=4)))
    volumes(ws, "2025-01")
    ws.index_values([("UK_CPI", "2023-10", "10000"), ("UK_CPI", "2024-10", "10000.999999")])
    ws.settle("2025-01")
    [f] = factors(ws)
    assert f["applied_change"] == D("0.0000999999")
    assert f["factor"] == D("1.0000")
    assert charge(ws, "2025-01", "usage:voice")["rate"] == D("2.4000")


def test_missing_index_value_names_the_index_and_month(ws):
    ws.contract(contract(chained()))
    volumes(ws, "2025-01")
    ws.index_values([("UK_CPI", "2023-10", "100")])
    with pytest.raises(SettleError, match=r"index_id=UK_CPI, period=2024-10"):
        ws.settle("2025-01")
