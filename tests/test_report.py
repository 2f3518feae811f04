"""`settle report`: the settlement pack (Excel and HTML) read back from the database alone.

The portfolio is the one of tests/test_explain.py (see its docstring for the months). The April
figures used below, worked out by hand:

    T1 2024-04  usage:voice 1,000 x 2.00 = 2,000.00; fixed:mgmt 1,000.00 x 1.025 = 1,025.00;
                gain_share (2.20 x 1,000 - 2,000.00) x 50% = 100.00; adjustment for March
                100.00 - 50.00 = 50.00. Charges 3,025.00; amount due 3,175.00.
                Provider: voice 1,000 x 2.05 = 2,050.00 (+50.00, rate variance), mgmt 1,025.00,
                gain-share 100.00, adjustment not billed (-50.00): billed 3,175.00, difference
                0.00, 2 exceptions. Indexation effect: 1,025.00 - 1,000.00 = 25.00.
    T2 2024-04  usage:claims 100 x 10.00 = 1,000.00. Provider: 1,000.00 (amount only, match) and an
                unexpected fixed:admin 25.00: billed 1,025.00, difference 25.00, 1 exception.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from decimal import Decimal
from pathlib import Path

import duckdb
import openpyxl
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.errors import SettleError
from tests.conftest import Workspace
from tests.test_explain import build_portfolio, settle_samples

MONEY = "#,##0.00;[Red]-#,##0.00"
SHEETS = [
    "Summary",
    "Waterfall",
    "Invoice lines",
    "Reconciliation",
    "KPIs & credits",
    "Gain-share",
    "Adjustments",
    "Parameters",
]


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_portfolio(tmp_path_factory.mktemp("portfolio"))


def report(db: Path, period: str, out: Path | None, pack_format: str = "xlsx") -> str:
    args = ["report", "--period", period, "--format", pack_format, "--db", str(db)]
    if out is not None:
        args += ["--out", str(out)]
    result = CliRunner().invoke(main, args)
    if result.exception:
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def records(sheet) -> list[dict]:
    """The sheet's Excel tables (one per contract on the contract sheets) as dicts keyed by
    header: the data rows inside each table's range, without its header and totals rows."""
    found = []
    for table in sorted(sheet.tables.values(), key=lambda t: sheet[t.ref][0][0].row):
        cells = list(sheet[table.ref])
        headers = [c.value for c in cells[0]]
        body = cells[1 : len(cells) - (table.totalsRowCount or 0)]
        found += [dict(zip(headers, (c.value for c in row), strict=True)) for row in body]
    return found


@pytest.fixture(scope="module")
def april(portfolio, tmp_path_factory) -> openpyxl.Workbook:
    out = tmp_path_factory.mktemp("packs") / "april.xlsx"
    report(portfolio.db, "2024-04", out)
    return openpyxl.load_workbook(out)


def test_sheets_are_tables_with_frozen_headers(april):
    assert april.sheetnames == SHEETS
    for sheet in april.worksheets:
        assert len(sheet.tables) >= 1, sheet.title
        assert sheet.freeze_panes == "A2", sheet.title


def test_summary_totals_are_the_sum_of_the_invoice_lines(april, portfolio):
    summary = {r["Contract"]: r for r in records(april["Summary"])}
    assert list(summary) == ["T1", "T2"]
    stored = {
        r["contract_id"]: r["total"]
        for r in portfolio.rows(
            "SELECT contract_id, sum(amount) AS total FROM current_invoice_lines "
            "WHERE period = DATE '2024-04-01' GROUP BY contract_id"
        )
    }
    # 3,175.00 and 1,000.00 (module docstring)
    assert stored == {"T1": Decimal("3175.00"), "T2": Decimal("1000.00")}
    for contract, total in stored.items():
        assert summary[contract]["Amount due"] == float(total)
    t1 = summary["T1"]
    assert t1["Currency"] == "GBP"
    assert t1["Charges"] == 3025.00
    assert t1["Indexation effect"] == 25.00
    assert t1["Credits"] == 0
    assert t1["Gain-share"] == 100.00
    assert t1["Adjustments"] == 50.00
    assert t1["Billed"] == 3175.00
    assert t1["Difference"] == 0
    assert t1["Exceptions"] == 2
    t2 = summary["T2"]
    assert (t2["Currency"], t2["Billed"], t2["Difference"], t2["Exceptions"]) == (
        "EUR",
        1025.00,
        25.00,
        1,
    )
    # the invoice sheet adds up to the same totals
    lines = records(april["Invoice lines"])
    assert sum(r["Amount"] for r in lines if r["Contract"] == "T1") == 3175.00


def test_money_columns_carry_the_money_format(april):
    sheet = april["Summary"]
    headers = [c.value for c in sheet[1]]
    for name in ("Charges", "Credits", "Amount due", "Billed", "Difference"):
        cell = sheet.cell(row=2, column=headers.index(name) + 1)
        assert cell.number_format == MONEY, name
    invoice = april["Invoice lines"]
    headers = [c.value for c in invoice[1]]
    assert invoice.cell(row=2, column=headers.index("Amount") + 1).number_format == MONEY


def test_a_credit_is_a_negative_number(portfolio, tmp_path):
    out = tmp_path / "january.xlsx"
    report(portfolio.db, "2024-01", out)
    book = openpyxl.load_workbook(out)
    lines = {(r["Contract"], r["Line"]): r for r in records(book["Invoice lines"])}
    # 10% x 4,020.00 = 402.00, credited to the client
    assert lines[("T1", "credit:sl")]["Amount"] == -402.00
    summary = {r["Contract"]: r for r in records(book["Summary"])}
    assert summary["T1"]["Credits"] == -402.00
    # 4,020.00 - 402.00 + 65.00 gain-share = 3,683.00; nothing billed in January
    assert summary["T1"]["Amount due"] == 3683.00
    assert summary["T1"]["Billed"] is None
    kpis = {(r["Contract"], r["KPI"]): r for r in records(book["KPIs & credits"])}
    sl = kpis[("T1", "sl")]
    assert (sl["Actual"], sl["Target"], sl["Status"], sl["Credit"]) == (0.75, 0.8, "failed", -402.0)
    assert sl["At risk"] == 402.00
    assert sl["Earn-back status"] == "earned_back"


def test_reconciliation_shows_the_remainder(april):
    rows = {(r["Contract"], r["Line"]): r for r in records(april["Reconciliation"])}
    voice = rows[("T1", "usage:voice")]
    # (2.05 - 2.00) x 1,000 = 50.00 rate variance; no volume or other variance
    assert (voice["Difference"], voice["Status"]) == (50.00, "over_billed")
    assert (voice["Rate variance"], voice["Volume variance"], voice["Other variance"]) == (
        50.00,
        0,
        0,
    )
    assert voice["Variance basis"] == "quantity x rate"
    # no quantity or rate on the provider's side: the whole difference is other variance
    admin = rows[("T2", "fixed:admin")]
    assert (admin["Status"], admin["Difference"], admin["Other variance"]) == (
        "unexpected",
        25.00,
        25.00,
    )
    assert admin["Rate variance"] is None
    assert admin["Variance basis"] == "amount only"
    adjustment = rows[("T1", "adjustment:gain_share:2024-03")]
    assert (adjustment["Status"], adjustment["Other variance"]) == ("not_billed", -50.00)


def test_gain_share_and_adjustments(april):
    windows = [r for r in records(april["Gain-share"]) if r["Contract"] == "T1"]
    # the monthly windows billed in the twelve months to April, as they stand: January
    # (3,150.00 - 3,020.00) x 50% = 65.00; February 2.10 x 600 - (1,200.00 + 400.00) = -340.00,
    # an overrun the contract does not share: 0; March as closed (2,100.00 - 2,000.00) x 50% =
    # 50.00 (its restatement is the adjustment); April 100.00
    assert [(w["Window from"], w["Outcome"], w["Provider amount"]) for w in windows] == [
        (dt.datetime(2024, 1, 1), "gain", 65.00),
        (dt.datetime(2024, 2, 1), "pain_not_shared", 0),
        (dt.datetime(2024, 3, 1), "gain", 50.00),
        (dt.datetime(2024, 4, 1), "gain", 100.00),
    ]
    assert [w["On this invoice"] for w in windows] == [False, False, False, True]
    (adjustment,) = records(april["Adjustments"])
    assert adjustment["Restated month"] == dt.datetime(2024, 3, 1)
    assert (adjustment["Closed"], adjustment["Restated"], adjustment["Delta"]) == (
        50.0,
        100.0,
        50.0,
    )


def test_parameters_name_the_run_and_hashes(april, portfolio):
    params = records(april["Parameters"])
    values = {(r["Kind"], r["Name"]): r["Value"] for r in params}
    assert {r["Run"] for r in params} == {2}
    assert values[("run", "mode")] == "settle"
    assert values[("run", "as_known_at")] == "(latest terms)"
    assert values[("run", "code_version")].startswith("0.")
    t1_yaml = (portfolio.contracts_dir / "t1.yaml").read_bytes()
    assert values[("config_sha256", "T1")] == hashlib.sha256(t1_yaml).hexdigest()
    volumes = (portfolio.data_dir / "volumes" / "part.parquet").read_bytes()
    assert values[("input_sha256", "volumes/part.parquet")] == hashlib.sha256(volumes).hexdigest()


def test_html_is_one_self_contained_page_with_charts(portfolio, tmp_path):
    out = tmp_path / "april.html"
    report(portfolio.db, "2024-04", out, "html")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # nothing fetched: no script, stylesheet link, image or address anywhere
    for banned in ("<script", "<link", "<img", "http://", "https://", "url("):
        assert banned not in page
    assert page.count('<svg class="waterfall"') == 2
    # T1 has one KPI; T2 none
    assert page.count('<svg class="kpi-chart"') == 1
    assert 'aria-label="sl: actual against target"' in page
    # the engine's totals: summary and waterfall
    assert ">3,175.00<" in page
    assert ">1,000.00<" in page
    waterfall = page[page.index('<svg class="waterfall"') :]
    waterfall = waterfall[: waterfall.index("</svg>")]
    labels = re.findall(r'text-anchor="middle" fill="#1f2933">([^<]+)<', waterfall)
    # charges, credits, earn-back, bonus, gain-share, adjustments, amount due
    assert labels == ["3,025.00", "0.00", "0.00", "0.00", "100.00", "50.00", "3,175.00"]


def test_kpi_chart_covers_the_last_twelve_months(portfolio, tmp_path):
    out = tmp_path / "april.html"
    report(portfolio.db, "2024-04", out, "html")
    page = out.read_text()
    chart = page[page.index('<svg class="kpi-chart"') :]
    chart = chart[: chart.index("</svg>")]
    # T1 starts in 2024-01: four months, January failed (0.75), the others met; sl is a share
    # (every target in [0, 1]), so it reads in per cent
    tips = re.findall(r"<title>([^<]+)</title>", chart)
    assert tips == [
        "2024-01: actual 75%, target 80%, failed",
        "2024-02: actual 92%, target 80%, met",
        "2024-03: actual 85%, target 80%, met",
        "2024-04: actual 85%, target 80%, met",
    ]
    # the target line is labelled, and the axis ticks are percentages
    assert "target 80%</text>" in chart
    ticks = re.findall(r'class="tick">([^<]+)<', chart)
    assert ticks and all(t.endswith("%") for t in ticks)


def test_same_database_same_pack(portfolio, tmp_path):
    for fmt in ("xlsx", "html"):
        report(portfolio.db, "2024-04", tmp_path / f"a.{fmt}", fmt)
        report(portfolio.db, "2024-04", tmp_path / f"b.{fmt}", fmt)
        assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()


def test_default_path(portfolio, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = report(portfolio.db, "2024-04", None)
    assert (tmp_path / "reports" / "settlement_pack_2024-04.xlsx").exists()
    assert "reports/settlement_pack_2024-04.xlsx" in output


def test_no_figures_for_the_period(portfolio, tmp_path):
    with pytest.raises(SettleError, match=r"no settled figures for 2024-09.*2024-01\.\.2024-04"):
        report(portfolio.db, "2024-09", tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


# --------------------------------------------------------------------------- the sample portfolio


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory) -> Path:
    """The demo flow (Makefile `demo`) on the bundled samples, into a temporary database."""
    db = tmp_path_factory.mktemp("sample") / "settlement.duckdb"
    settle_samples(db)
    return db


def test_sample_portfolio_pack_totals_are_the_engine_figures(sample_db, tmp_path):
    out = tmp_path / "pack.xlsx"
    report(sample_db, "2025-12", out)
    summary = records(openpyxl.load_workbook(out)["Summary"])
    with duckdb.connect(str(sample_db), read_only=True) as con:
        stored = dict(
            con.execute(
                "SELECT contract_id, sum(amount) FROM current_invoice_lines "
                "WHERE period = DATE '2025-12-01' GROUP BY ALL"
            ).fetchall()
        )
    assert {r["Contract"]: r["Amount due"] for r in summary} == {
        k: float(v) for k, v in stored.items()
    }
    html = tmp_path / "pack.html"
    report(sample_db, "2025-12", html, "html")
    page = html.read_text()
    assert page.count('<svg class="waterfall"') == len(stored)
    for total in stored.values():
        assert f">{total:,.2f}<" in page


INDEXED_ZERO_PLACES = """\
contract_id: J1
currency: JPY
start: 2024-01
end: 2024-12
rounding: {mode: half_up, amount_scale: 0, rate_scale: 4}
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 2.45}]}
fixed_fees:
  - {id: mgmt, description: Account management, amount: 1000, indexed: true}
indexation:
  index_id: CPI
  base_period: 2023-10
  first_review: 2024-01
  review_every_months: 12
  lag_months: 2
  cap: 0.05
  floor: 0.0
  indexed_share: 1.0
  applies_to: [voice, mgmt]
"""


def test_indexation_effect_is_stored_with_the_contracts_own_rounding(ws, tmp_path):
    """0 places, half_up. Review 2024-01 reads 2023-11 = 101.25 against 2023-10 = 100: +1.25%,
    factor 1 x (1 + 1.0 x 0.0125) = 1.0125.

    voice: rate round(2.45 x 1.0125 = 2.480625, 4) = 2.4806; 10 x 2.4806 = 24.806 -> 25; at base
    prices 10 x 2.45 = 24.5 -> 25: indexation adds 0 to the line (units x rate difference would say
    0.306, 0.31 at a fixed 2 places). mgmt: 1,000 x 1.0125 = 1,012.5 -> 1,013 against 1,000: 13.
    The month's effect is 0 + 13 = 13, and charges 25 + 1,013 = 1,038 = 1,025 at base prices + 13.
    """
    ws.contract(INDEXED_ZERO_PLACES)
    ws.volumes([("J1", "voice", "2024-01", "10")])
    ws.index_values([("CPI", "2023-10", "100"), ("CPI", "2023-11", "101.25")])
    ws.settle("2024-01")
    stored = {
        r["line_key"]: (r["amount"], r["base_amount"], r["indexation_effect"])
        for r in ws.rows("SELECT * FROM current_charge_lines")
    }
    assert stored == {
        "usage:voice": (Decimal("25"), Decimal("25"), Decimal("0")),
        "fixed:mgmt": (Decimal("1013"), Decimal("1000"), Decimal("13")),
    }
    out = tmp_path / "pack.xlsx"
    report(ws.db, "2024-01", out)
    summary = records(openpyxl.load_workbook(out)["Summary"])[0]
    assert (summary["Charges"], summary["Indexation effect"]) == (1038.0, 13.0)


def test_other_variance_is_stored_not_filled_in(portfolio):
    # T2 fixed:admin is billed (25.00) with no quantity or rate and not expected: the stored row
    # carries the whole difference as other variance, basis 'amount only'
    row = portfolio.rows(
        "SELECT * FROM current_invoice_reconciliation WHERE contract_id = 'T2' "
        "AND period = DATE '2024-04-01' AND line_key = 'fixed:admin'"
    )[0]
    assert (row["difference"], row["other_variance"], row["variance_basis"]) == (
        Decimal("25.00"),
        Decimal("25.00"),
        "amount only",
    )
    assert row["rate_variance"] is None and row["volume_variance"] is None


CAPPED = """\
contract_id: C2
currency: GBP
start: 2024-01
end: 2024-12
service_lines:
  - id: voice
    pricing:
      - effective_from: 2024-01
        model: graduated
        bands:
          - {up_to: 100, rate: 2.00}
          - {rate: 1.00}
        maximum_charge: 250.00
indexation:
  index_id: CPI
  base_period: 2023-10
  first_review: 2024-01
  lag_months: 2
  cap: 0.10
  floor: 0.0
  indexed_share: 1.0
  applies_to: [voice]
"""


def test_indexation_effect_of_a_line_capped_at_its_maximum_charge(ws, tmp_path):
    """Review 2024-01: 2023-11 = 110 against 2023-10 = 100, +10% (at the cap): factor 1.10.

    200 units. Indexed: 100 x round(2.00 x 1.10) + 100 x 1.10 = 220.00 + 110.00 = 330.00, above
    the indexed maximum 250.00 x 1.10 = 275.00: 275.00. At base prices 200.00 + 100.00 = 300.00,
    above 250.00: 250.00. Indexation adds 275.00 - 250.00 = 25.00 (units x rate difference would
    say 30.00, ignoring the cap).
    """
    ws.contract(CAPPED)
    ws.volumes([("C2", "voice", "2024-01", "200")])
    ws.index_values([("CPI", "2023-10", "100"), ("CPI", "2023-11", "110")])
    ws.settle("2024-01")
    stored = {
        r["line_key"]: (r["amount"], r["base_amount"], r["indexation_effect"], r["capped"])
        for r in ws.rows("SELECT * FROM current_charge_lines")
    }
    assert stored == {"usage:voice": (Decimal("275.00"), Decimal("250.00"), Decimal("25.00"), True)}
    out = tmp_path / "pack.xlsx"
    report(ws.db, "2024-01", out)
    summary = records(openpyxl.load_workbook(out)["Summary"])[0]
    assert (summary["Charges"], summary["Indexation effect"]) == (275.0, 25.0)
