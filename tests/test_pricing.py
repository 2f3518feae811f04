"""Pricing (SPEC 3) through the whole engine: contract YAML + Parquet in, DuckDB invoice lines out.

Each contract is minimal (contract_id, currency, start, service_lines and the term under test) and
each test settles several months at once, one case per month, so one run covers every edge of a
model. Every expected amount is worked out by hand in the comment beside it. Stored amounts carry
trailing zeros (DECIMAL(38, 4)); Decimal equality ignores them.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal as D

import pytest


def one_line(cid: str, pricing: str, *, line: str = "", top: str = "", after: str = "") -> str:
    """A contract with one service line `voice` whose single pricing entry is `pricing`."""
    pricing_block = textwrap.indent(textwrap.dedent(pricing).strip(), "        ")
    line_block = textwrap.indent(textwrap.dedent(line).strip(), "    ") if line else ""
    return (
        f"contract_id: {cid}\ncurrency: GBP\nstart: 2024-01\n{textwrap.dedent(top).strip()}\n"
        f"service_lines:\n  - id: voice\n{line_block}\n    pricing:\n"
        f"      - effective_from: 2024-01\n{pricing_block}\n{textwrap.dedent(after).strip()}\n"
    )


def monthly(cid: str, units: dict[str, str | tuple[str, str]], line: str = "voice") -> list:
    """Volume rows from {month: units} or {month: (units, forecast_units)}."""
    rows = []
    for period, value in units.items():
        u, f = value if isinstance(value, tuple) else (value, None)
        rows.append((cid, line, period, u, f))
    return rows


GRADUATED = """
    model: graduated
    bands:
      - {up_to: 100, rate: 2.00}
      - {up_to: 250, rate: 1.50, flat_fee: 10.00}
      - {rate: 1.00, flat_fee: 25.00}
"""


# --------------------------------------------------------------------------- models


def test_per_unit_is_units_times_rate(ws):
    ws.contract(one_line("PU", "model: per_unit\nbands: [{rate: 2.40}]"))
    ws.volumes(monthly("PU", {"2024-01": "1000", "2024-02": "12.5"}))
    ws.settle("2024-01", "2024-02")
    # 1,000 x 2.40 = 2,400.00
    assert ws.lines("2024-01", "PU") == {"usage:voice": D("2400.00")}
    # fractional units: 12.5 x 2.40 = 30.00
    assert ws.lines("2024-02", "PU") == {"usage:voice": D("30.00")}
    [line] = ws.rows(
        "SELECT quantity, rate, line_type FROM current_invoice_lines WHERE period = '2024-01-01'"
    )
    assert line == {"quantity": D("1000"), "rate": D("2.40"), "line_type": "usage"}


def test_graduated_prices_each_band_marginally_with_its_flat_fee(ws):
    # bands: 0..100 at 2.00; (100, 250] at 1.50 + 10.00 once; above 250 at 1.00 + 25.00 once
    ws.contract(one_line("GR", GRADUATED))
    ws.volumes(
        monthly(
            "GR",
            {
                "2024-01": "100",
                "2024-02": "101",
                "2024-03": "100.5",
                "2024-04": "250",
                "2024-05": "300.25",
            },
        )
    )
    ws.settle("2024-01", "2024-05")
    # exactly on the first up_to (inclusive): 100 x 2.00 = 200.00; band 2 untouched, no flat fee
    assert ws.lines("2024-01", "GR") == {"usage:voice": D("200.00")}
    # one unit past it: 200.00 + 1 x 1.50 + 10.00 = 211.50
    assert ws.lines("2024-02", "GR") == {"usage:voice": D("211.50")}
    # half a unit past it: 200.00 + 0.5 x 1.50 + 10.00 = 210.75
    assert ws.lines("2024-03", "GR") == {"usage:voice": D("210.75")}
    # on the second up_to: 200.00 + 150 x 1.50 + 10.00 = 435.00
    assert ws.lines("2024-04", "GR") == {"usage:voice": D("435.00")}
    # 200.00 + 225.00 + 10.00 + 50.25 x 1.00 + 25.00 = 510.25
    assert ws.lines("2024-05", "GR") == {"usage:voice": D("510.25")}

    bands = ws.rows(
        "SELECT band, units, amount_unrounded FROM current_charge_bands "
        "WHERE period = '2024-05-01' ORDER BY band"
    )
    # 100 units at 2.00 = 200.00; 150 at 1.50 + 10.00 = 235.00; 50.25 at 1.00 + 25.00 = 75.25
    assert [(b["band"], b["units"], b["amount_unrounded"]) for b in bands] == [
        (1, D("100"), D("200.00")),
        (2, D("150"), D("235.00")),
        (3, D("50.25"), D("75.25")),
    ]


def test_volume_prices_all_units_at_the_band_the_total_falls_in(ws):
    ws.contract(
        one_line(
            "VO",
            """
            model: volume
            bands:
              - {up_to: 100, rate: 2.00}
              - {up_to: 250, rate: 1.50, flat_fee: 10.00}
              - {rate: 1.20, flat_fee: 30.00}
            """,
        )
    )
    ws.volumes(
        monthly("VO", {"2024-01": "100", "2024-02": "101", "2024-03": "250", "2024-04": "250.5"})
    )
    ws.settle("2024-01", "2024-04")
    # on the edge, band 1: 100 x 2.00 = 200.00
    assert ws.lines("2024-01", "VO") == {"usage:voice": D("200.00")}
    # past it, every unit at band 2: 101 x 1.50 + 10.00 = 161.50
    assert ws.lines("2024-02", "VO") == {"usage:voice": D("161.50")}
    # on the second edge: 250 x 1.50 + 10.00 = 385.00
    assert ws.lines("2024-03", "VO") == {"usage:voice": D("385.00")}
    # fractionally past it: 250.5 x 1.20 + 30.00 = 300.60 + 30.00 = 330.60
    assert ws.lines("2024-04", "VO") == {"usage:voice": D("330.60")}


def test_stairstep_bills_the_flat_fee_of_the_band_the_total_falls_in(ws):
    ws.contract(
        one_line(
            "ST",
            """
            model: stairstep
            bands:
              - {up_to: 40, flat_fee: 6000.00}
              - {up_to: 80, flat_fee: 10500.00}
              - {flat_fee: 14500.00}
            """,
        )
    )
    ws.volumes(
        monthly(
            "ST",
            {"2024-01": "40", "2024-02": "40.5", "2024-03": "80", "2024-04": "81", "2024-05": "0"},
        )
    )
    ws.settle("2024-01", "2024-05")
    assert ws.lines("2024-01", "ST") == {"usage:voice": D("6000.00")}  # 40 <= 40: step 1
    assert ws.lines("2024-02", "ST") == {"usage:voice": D("10500.00")}  # 40.5: step 2
    assert ws.lines("2024-03", "ST") == {"usage:voice": D("10500.00")}  # 80 <= 80: step 2
    assert ws.lines("2024-04", "ST") == {"usage:voice": D("14500.00")}  # 81: open step 3
    assert ws.lines("2024-05", "ST") == {}  # zero units: no usage charge


def test_package_bills_whole_packages(ws):
    ws.contract(
        one_line("PK", "model: package\npackage_size: 1000\npackage_price: 1450.00"),
    )
    ws.volumes(
        monthly(
            "PK",
            {
                "2024-01": "2000",
                "2024-02": "2001",
                "2024-03": "0.5",
                "2024-04": "1000.25",
                "2024-05": "0",
            },
        )
    )
    ws.settle("2024-01", "2024-05")
    # ceil(2000 / 1000) = 2 packages x 1,450.00 = 2,900.00
    assert ws.lines("2024-01", "PK") == {"usage:voice": D("2900.00")}
    # ceil(2001 / 1000) = ceil(2.001) = 3 x 1,450.00 = 4,350.00
    assert ws.lines("2024-02", "PK") == {"usage:voice": D("4350.00")}
    # ceil(0.5 / 1000) = ceil(0.0005) = 1 x 1,450.00
    assert ws.lines("2024-03", "PK") == {"usage:voice": D("1450.00")}
    # ceil(1000.25 / 1000) = 2 x 1,450.00 = 2,900.00
    assert ws.lines("2024-04", "PK") == {"usage:voice": D("2900.00")}
    # zero units: no package is opened
    assert ws.lines("2024-05", "PK") == {}


# --------------------------------------------------------------------------- zero units, minimums


def test_zero_units_bill_no_usage_but_minimums_still_apply(ws):
    ws.contract(
        """\
        contract_id: ZU
        currency: GBP
        start: 2024-01
        service_lines:
          - id: voice
            pricing:
              - effective_from: 2024-01
                model: per_unit
                bands: [{rate: 2.40}]
                minimum_units: 100
          - id: email
            pricing:
              - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.65}]}
        """
    )
    # January: explicit zero rows; February: no rows at all
    ws.volumes([("ZU", "voice", "2024-01", "0"), ("ZU", "email", "2024-01", "0")])
    ws.settle("2024-01", "2024-02")
    # no usage lines; take-or-pay: (100 - 0) x 2.40 = 240.00; email has no minimum: nothing
    assert ws.lines("2024-01", "ZU") == {"minimum:voice": D("240.00")}
    assert ws.lines("2024-02", "ZU") == {"minimum:voice": D("240.00")}


def test_minimum_units_shortfall_is_billed_at_the_first_bands_rate(ws):
    ws.contract(
        one_line(
            "MU",
            """
            model: graduated
            bands:
              - {up_to: 100, rate: 2.00}
              - {rate: 1.50}
            minimum_units: 150
            """,
        )
    )
    ws.volumes(monthly("MU", {"2024-01": "120", "2024-02": "150", "2024-03": "149.5"}))
    ws.settle("2024-01", "2024-03")
    # usage 100 x 2.00 + 20 x 1.50 = 230.00; shortfall 150 - 120 = 30 x 2.00 (band 1) = 60.00
    assert ws.lines("2024-01", "MU") == {"usage:voice": D("230.00"), "minimum:voice": D("60.00")}
    # at the minimum: 200.00 + 50 x 1.50 = 275.00 and no shortfall line
    assert ws.lines("2024-02", "MU") == {"usage:voice": D("275.00")}
    # 200.00 + 49.5 x 1.50 = 274.25; shortfall 0.5 x 2.00 = 1.00
    assert ws.lines("2024-03", "MU") == {"usage:voice": D("274.25"), "minimum:voice": D("1.00")}
    [line] = ws.rows(
        "SELECT line_type, quantity, rate FROM current_invoice_lines "
        "WHERE period = '2024-01-01' AND line_key = 'minimum:voice'"
    )
    assert line == {"line_type": "minimum", "quantity": D("30"), "rate": D("2.00")}


def test_minimum_charge_tops_the_usage_charge_up_to_the_floor(ws):
    ws.contract(one_line("MC", "model: per_unit\nbands: [{rate: 2.00}]\nminimum_charge: 500.00"))
    ws.volumes(monthly("MC", {"2024-01": "200", "2024-02": "300", "2024-03": "250"}))
    ws.settle("2024-01", "2024-04")
    # 200 x 2.00 = 400.00, below the 500.00 floor: top-up 100.00
    assert ws.lines("2024-01", "MC") == {"usage:voice": D("400.00"), "minimum:voice": D("100.00")}
    # 300 x 2.00 = 600.00: above the floor, no top-up
    assert ws.lines("2024-02", "MC") == {"usage:voice": D("600.00")}
    # 250 x 2.00 = 500.00: exactly the floor is not below it
    assert ws.lines("2024-03", "MC") == {"usage:voice": D("500.00")}
    # no volumes in April: the whole floor, 500.00
    assert ws.lines("2024-04", "MC") == {"minimum:voice": D("500.00")}


def test_maximum_charge_caps_the_usage_charge(ws):
    ws.contract(one_line("MX", "model: per_unit\nbands: [{rate: 2.00}]\nmaximum_charge: 1000.00"))
    ws.volumes(monthly("MX", {"2024-01": "400", "2024-02": "600", "2024-03": "500"}))
    ws.settle("2024-01", "2024-03")
    assert ws.lines("2024-01", "MX") == {"usage:voice": D("800.00")}  # 400 x 2.00
    assert ws.lines("2024-02", "MX") == {"usage:voice": D("1000.00")}  # 1,200.00 capped
    assert ws.lines("2024-03", "MX") == {"usage:voice": D("1000.00")}  # exactly the cap
    capped = ws.rows("SELECT period, capped FROM current_charge_lines ORDER BY period")
    assert [r["capped"] for r in capped] == [False, True, False]


# --------------------------------------------------------------------------- surge, itemising


def test_surge_bills_units_above_forecast_plus_margin_at_the_surge_rate(ws):
    ws.contract(
        one_line(
            "SU",
            """
            model: graduated
            bands:
              - {up_to: 1000, rate: 2.00}
              - {rate: 1.50}
            surge: {over_forecast_pct: 0.10, rate: 3.00}
            """,
        )
    )
    ws.volumes(
        monthly(
            "SU",
            {
                "2024-01": ("1300", "1000"),
                "2024-02": "1300",
                "2024-03": ("1100", "1000"),
                "2024-04": ("1000.5", "900"),
            },
        )
    )
    ws.settle("2024-01", "2024-04")
    # threshold 1,000 x 1.10 = 1,100; surge 200 x 3.00 = 600.00;
    # banded 1,100: 1,000 x 2.00 + 100 x 1.50 = 2,150.00
    assert ws.lines("2024-01", "SU") == {"usage:voice": D("2150.00"), "surge:voice": D("600.00")}
    # no forecast, no surge: 1,000 x 2.00 + 300 x 1.50 = 2,450.00
    assert ws.lines("2024-02", "SU") == {"usage:voice": D("2450.00")}
    # exactly on the threshold: nothing above it; 2,000.00 + 100 x 1.50 = 2,150.00
    assert ws.lines("2024-03", "SU") == {"usage:voice": D("2150.00")}
    # threshold 900 x 1.10 = 990; surge 10.5 x 3.00 = 31.50; banded 990 x 2.00 = 1,980.00
    assert ws.lines("2024-04", "SU") == {"usage:voice": D("1980.00"), "surge:voice": D("31.50")}
    [surge] = ws.rows(
        "SELECT line_type, quantity, rate FROM current_invoice_lines "
        "WHERE line_key = 'surge:voice' AND period = '2024-01-01'"
    )
    assert surge == {"line_type": "surge", "quantity": D("200"), "rate": D("3.00")}


def test_itemise_bands_splits_a_graduated_line_per_band(ws):
    ws.contract(one_line("IB", GRADUATED, line="itemise_bands: true"))
    ws.volumes(monthly("IB", {"2024-01": "300", "2024-02": "80"}))
    ws.settle("2024-01", "2024-02")
    assert ws.lines("2024-01", "IB") == {
        "usage:voice:band1": D("200.00"),  # 100 x 2.00
        "usage:voice:band2": D("235.00"),  # 150 x 1.50 + 10.00
        "usage:voice:band3": D("75.00"),  # 50 x 1.00 + 25.00
    }
    # only band 1 is reached: one line, 80 x 2.00 = 160.00
    assert ws.lines("2024-02", "IB") == {"usage:voice:band1": D("160.00")}
    rates = ws.rows(
        "SELECT line_key, quantity, rate FROM current_invoice_lines "
        "WHERE period = '2024-01-01' ORDER BY line_key"
    )
    assert [(r["quantity"], r["rate"]) for r in rates] == [
        (D("100"), D("2.00")),
        (D("150"), D("1.50")),
        (D("50"), D("1.00")),
    ]


def test_one_line_per_charge_type(ws):
    ws.contract(
        one_line(
            "CT",
            """
            model: per_unit
            bands: [{rate: 2.00}]
            minimum_units: 500
            surge: {over_forecast_pct: 0.50, rate: 4.00}
            """,
        )
    )
    ws.volumes(monthly("CT", {"2024-01": ("400", "200")}))
    ws.settle("2024-01")
    # threshold 200 x 1.50 = 300: surge 100 x 4.00 = 400.00; banded 300 x 2.00 = 600.00;
    # take-or-pay counts all 400 units: (500 - 400) x 2.00 = 200.00
    assert ws.lines("2024-01", "CT") == {
        "usage:voice": D("600.00"),
        "surge:voice": D("400.00"),
        "minimum:voice": D("200.00"),
    }


# --------------------------------------------------------------------------- fixed fees


def test_fixed_fees_every_month_with_an_effective_dated_change(ws):
    ws.contract(
        one_line(
            "FF",
            "model: per_unit\nbands: [{rate: 1.00}]",
            after="""
            fixed_fees:
              - {id: management, amount: 1000.00}
              - {id: platform, amount: 500.00, effective_from: 2024-01}
              - {id: platform, amount: 650.00, effective_from: 2024-03, reason: more seats}
              - {id: reporting, amount: 75.50, effective_from: 2024-02}
            """,
        )
    )
    ws.volumes([])  # volumes/ must exist; it may hold no rows
    ws.settle("2024-01", "2024-04")
    # no volumes at all: the fees alone; platform moves to 650.00 from March;
    # reporting starts in February and is not billed before it
    assert ws.lines("2024-01", "FF") == {"fixed:management": D("1000"), "fixed:platform": D("500")}
    feb = {"fixed:management": D("1000"), "fixed:platform": D("500"), "fixed:reporting": D("75.5")}
    assert ws.lines("2024-02", "FF") == feb
    mar = {"fixed:management": D("1000"), "fixed:platform": D("650"), "fixed:reporting": D("75.5")}
    assert ws.lines("2024-03", "FF") == mar
    assert ws.lines("2024-04", "FF") == mar


# --------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("mode", "jan", "feb", "mar"),
    [
        # 5 x 0.025 = 0.125: half_up away from zero 0.13, half_even to the even cent 0.12
        # 7 x 0.025 = 0.175: both 0.18 (8 is even)
        # 5.4 x 0.025 = 0.135: both 0.14 (4 is even; half_even is not truncation)
        ("half_up", "0.13", "0.18", "0.14"),
        ("half_even", "0.12", "0.18", "0.14"),
    ],
)
def test_rounding_modes_on_a_half_cent(ws, mode, jan, feb, mar):
    ws.contract(
        one_line(
            "RD",
            "model: per_unit\nbands: [{rate: 0.025}]",
            top=f"rounding: {{mode: {mode}, amount_scale: 2}}",
        )
    )
    ws.volumes(monthly("RD", {"2024-01": "5", "2024-02": "7", "2024-03": "5.4"}))
    ws.settle("2024-01", "2024-03")
    assert ws.lines("2024-01", "RD") == {"usage:voice": D(jan)}
    assert ws.lines("2024-02", "RD") == {"usage:voice": D(feb)}
    assert ws.lines("2024-03", "RD") == {"usage:voice": D(mar)}


def test_invoice_total_is_the_sum_of_its_rounded_lines(ws):
    ws.contract(
        """\
        contract_id: TT
        currency: GBP
        start: 2024-01
        rounding: {mode: half_up}
        service_lines:
          - id: voice
            pricing:
              - {effective_from: 2024-01, model: per_unit, bands: [{rate: 0.025}]}
          - id: email
            pricing:
              - {effective_from: 2024-01, model: per_unit, bands: [{rate: 0.035}]}
        fixed_fees:
          - {id: admin, amount: 10.00}
        """
    )
    ws.volumes([("TT", "voice", "2024-01", "5"), ("TT", "email", "2024-01", "5")])
    result = ws.settle("2024-01")
    # voice 5 x 0.025 = 0.125 -> 0.13; email 5 x 0.035 = 0.175 -> 0.18; admin 10.00
    assert ws.lines("2024-01", "TT") == {
        "usage:voice": D("0.13"),
        "usage:email": D("0.18"),
        "fixed:admin": D("10.00"),
    }
    # total 0.13 + 0.18 + 10.00 = 10.31 (the unrounded 10.30 would lose the cent)
    assert ws.one("SELECT amount_due FROM current_invoice_totals") == D("10.31")
    [invoice] = result.invoices
    assert invoice["amount_due"] == D("10.31")
    assert invoice["charges"] == D("10.31")
