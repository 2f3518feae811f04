"""Contract configuration (SPEC 2): the samples load, numbers stay exact, dated entries resolve.

Loading is tested on `pipelines.config` directly; the effective-dated resolution is tested through
a settlement, because the engine resolves the entry in force per month in SQL.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_contract, load_contracts
from pipelines.errors import SettleError

REPO = Path(__file__).resolve().parent.parent


def test_the_three_sample_contracts_load():
    contracts = load_contracts(REPO / "contracts_config")
    assert [c.contract_id for c in contracts] == [
        "ACME-CONTOSO-01",
        "FABRIKAM-TELCO-01",
        "NORTHWIND-BACKOFFICE-01",
    ]
    assert [c.file for c in contracts] == [
        "contracts_config/acme_contoso_01.yaml",
        "contracts_config/fabrikam_telco_01.yaml",
        "contracts_config/northwind_backoffice_01.yaml",
    ]
    acme, fabrikam, northwind = (c.terms for c in contracts)
    assert [s.id for s in acme.service_lines] == ["voice", "email", "chat"]
    assert acme.service_lines[0].pricing[0].model == "graduated"
    assert fabrikam.rounding.mode == "half_even"
    # no rounding section: the defaults
    assert (northwind.rounding.mode, northwind.rounding.amount_scale) == ("half_up", 2)
    assert northwind.rounding.rate_scale == 4
    assert len(set(c.sha256 for c in contracts)) == 3


def test_load_contracts_can_select_by_id():
    [only] = load_contracts(REPO / "contracts_config", only={"FABRIKAM-TELCO-01"})
    assert only.contract_id == "FABRIKAM-TELCO-01"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


MINIMAL = """\
contract_id: C1
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - effective_from: 2024-01
        model: graduated
        bands:
          - {up_to: 50000, rate: 2.40}
          - {up_to: 80000.5, rate: 2.125, flat_fee: 1_000.00}
          - {rate: 0.1}
"""


def test_yaml_numbers_are_decimals_read_from_their_text(tmp_path):
    terms = load_contract(write(tmp_path, MINIMAL)).terms
    bands = terms.service_lines[0].pricing[0].bands
    rates = [b.rate for b in bands]
    # 2.40 keeps its two places; 0.1 is exactly one tenth, not the float 0.1000000000000000055...
    assert [str(r) for r in rates] == ["2.40", "2.125", "0.1"]
    assert all(type(r) is D for r in rates)
    assert rates[2] * 3 == D("0.3")
    assert bands[0].up_to == D(50000)
    assert str(bands[1].up_to) == "80000.5"
    assert str(bands[1].flat_fee) == "1000.00"  # YAML's 1_000.00, underscores dropped


def test_only_the_required_keys_are_required_and_the_rest_default(tmp_path):
    terms = load_contract(write(tmp_path, MINIMAL)).terms
    assert terms.start == dt.date(2024, 1, 1)
    assert terms.end is None
    assert (terms.rounding.mode, terms.rounding.amount_scale, terms.rounding.rate_scale) == (
        "half_up",
        2,
        4,
    )
    assert terms.fixed_fees == []
    assert terms.indexation is None
    assert terms.service_credits is None
    assert terms.gain_share is None


def test_a_number_with_more_places_than_kept_is_refused(tmp_path):
    text = MINIMAL.replace("rate: 2.40", "rate: 2.4000001")
    with pytest.raises(ConfigError) as err:
        load_contract(write(tmp_path, text), tmp_path)
    # seven places: CONFIG_SCALE keeps six
    assert str(err.value) == (
        "c.yaml: service_lines[0].pricing[0].bands[0].rate: "
        "2.4000001 has more than 6 decimal places"
    )


# --------------------------------------------------------------------------- effective dating

REPRICED = """\
contract_id: EF
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - effective_from: 2024-01
        model: per_unit
        bands: [{rate: 2.00}]
      - effective_from: 2024-03
        agreed_on: 2024-02-10
        reason: rate card review
        model: per_unit
        bands: [{rate: 1.80}]
fixed_fees:
  - {id: licence, amount: 500.00}
  - {id: licence, amount: 650.00, effective_from: 2024-04, agreed_on: 2024-03-20}
"""


def volumes(ws) -> None:
    ws.volumes([("EF", "voice", f"2024-{m:02d}", "100") for m in range(1, 5)])


def test_a_pricing_change_applies_from_its_month(ws):
    ws.contract(REPRICED)
    volumes(ws)
    ws.settle("2024-01", "2024-04")
    # 100 x 2.00 = 200.00 until February; 100 x 1.80 = 180.00 from March;
    # the licence moves from 500.00 to 650.00 in April
    assert ws.lines("2024-01") == {"usage:voice": D("200.00"), "fixed:licence": D("500.00")}
    assert ws.lines("2024-02") == {"usage:voice": D("200.00"), "fixed:licence": D("500.00")}
    assert ws.lines("2024-03") == {"usage:voice": D("180.00"), "fixed:licence": D("500.00")}
    assert ws.lines("2024-04") == {"usage:voice": D("180.00"), "fixed:licence": D("650.00")}
    pricing_from = ws.rows(
        "SELECT strftime(period, '%Y-%m') AS month, strftime(pricing_from, '%Y-%m') AS since "
        "FROM current_charge_lines WHERE charge_type = 'usage' ORDER BY period"
    )
    assert [(p["month"], p["since"]) for p in pricing_from] == [
        ("2024-01", "2024-01"),
        ("2024-02", "2024-01"),
        ("2024-03", "2024-03"),
        ("2024-04", "2024-03"),
    ]


@pytest.mark.parametrize(
    ("known_at", "march_rate_amount", "april_licence"),
    [
        # before the review was agreed (2024-02-10): the old 2.00 rate all along, 100 x 2.00
        ("2024-02-09", "200.00", "500.00"),
        # on the day it was agreed: known; 100 x 1.80 = 180.00. The licence (agreed 2024-03-20) not
        ("2024-02-10", "180.00", "500.00"),
        # after both were agreed
        ("2024-03-20", "180.00", "650.00"),
    ],
)
def test_entries_agreed_after_as_known_at_are_ignored(
    ws, known_at, march_rate_amount, april_licence
):
    ws.contract(REPRICED)
    volumes(ws)
    ws.settle("2024-01", "2024-04", as_known_at=known_at)
    assert ws.lines("2024-03") == {
        "usage:voice": D(march_rate_amount),
        "fixed:licence": D("500.00"),
    }
    assert ws.lines("2024-04") == {
        "usage:voice": D(march_rate_amount),
        "fixed:licence": D(april_licence),
    }
    assert ws.one("SELECT as_known_at FROM settlement_runs") == dt.date.fromisoformat(known_at)


def test_a_price_not_yet_agreed_at_the_as_known_at_date_stops_the_run(ws):
    ws.contract(
        """
        contract_id: C1
        currency: GBP
        start: 2024-01
        service_lines:
          - id: voice
            pricing:
              - {effective_from: 2024-01, agreed_on: 2024-02-10, model: per_unit,
                 bands: [{rate: 2.00}]}
        """
    )
    ws.volumes([("C1", "voice", "2024-01", "10")])
    with pytest.raises(
        SettleError,
        match=r"column pricing: 1 row\(s\) break the rule 'each service line has a price in force "
        r"every month of the term'; first: "
        r"\(contract_id=C1, service_line_id=voice, period=2024-01\)",
    ):
        ws.settle("2024-01", as_known_at="2024-02-01")
    # once agreed, 10 x 2.00 = 20.00
    ws.settle("2024-01", as_known_at="2024-02-10")
    assert ws.lines("2024-01") == {"usage:voice": D("20.00")}
