"""The Excel settlement pack as finance prints and signs it, read back with openpyxl.

The portfolio is the one of tests/test_explain.py (January to March closed, April open), with two
month-end decisions added to April: T1's invoice approved by alice, T2's unexpected admin fee
disputed by bob. The figures, worked out by hand (see also tests/test_report.py's docstring):

    T1 2024-04 (GBP)  usage:voice 2,000.00 + fixed:mgmt 1,025.00 + gain_share 100.00 +
                      adjustment:gain_share:2024-03 50.00 = 3,175.00 due. Provider: 2,050.00 +
                      1,025.00 + 100.00 = 3,175.00 billed; difference +50.00 - 50.00 = 0.00.
    T2 2024-04 (EUR)  usage:claims 1,000.00 due; billed 1,000.00 + 25.00 = 1,025.00, difference
                      25.00.
    T1 2024-01        charges 4,020.00, credit -402.00 (10% of 4,020.00), gain-share 65.00:
                      3,683.00 due.
    T1 2024-03        closed with gain-share 50.00; restated in April to 100.00, so April's
                      invoice carries the difference 100.00 - 50.00 = 50.00.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import zipfile
from decimal import Decimal
from pathlib import Path

import duckdb
import openpyxl
import pytest
from openpyxl.chart import BarChart
from openpyxl.utils.cell import range_boundaries

from pipelines import workflow
from pipelines.pack_data import WATERFALL_SQL
from pipelines.periods import parse_period
from pipelines.report import is_pack, write_pack
from tests.conftest import Workspace
from tests.test_explain import build_portfolio, settle_samples
from tests.test_report import INDEXED_ZERO_PLACES, records

APRIL = parse_period("2024-04")


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = build_portfolio(tmp_path_factory.mktemp("portfolio"))
    workflow.approve(ws.db, APRIL, contract_ids={"T1"}, by="alice")
    workflow.dispute(ws.db, APRIL, "T2", "fixed:admin", "not in the contract", by="bob")
    return ws


@pytest.fixture(scope="module")
def packs(portfolio, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("packs")
    return {
        month: write_pack(portfolio.db, parse_period(month), "xlsx", out / f"{month}.xlsx")
        for month in ("2024-01", "2024-03", "2024-04")
    }


@pytest.fixture(scope="module")
def april(packs) -> openpyxl.Workbook:
    return openpyxl.load_workbook(packs["2024-04"])


@pytest.fixture(scope="module")
def april_cached(packs) -> openpyxl.Workbook:
    """The same file's cached formula results (what a viewer that does not recalculate shows)."""
    return openpyxl.load_workbook(packs["2024-04"], data_only=True)


def stored_totals(ws: Workspace, period: str) -> dict[str, Decimal]:
    return {
        r["contract_id"]: r["total"]
        for r in ws.rows(
            "SELECT contract_id, sum(amount) AS total FROM current_invoice_lines "
            "WHERE period = ? GROUP BY contract_id",
            [parse_period(period)],
        )
    }


def tables(sheet) -> list:
    """The sheet's Excel tables, top to bottom."""
    return sorted(sheet.tables.values(), key=lambda t: sheet[t.ref][0][0].row)


def table_cells(sheet, table) -> tuple[list[str], list, list | None]:
    """(headers, data rows, totals row or None) of one table, as cells."""
    cells = [list(r) for r in sheet[table.ref]]
    headers = [c.value for c in cells[0]]
    if table.totalsRowCount:
        return headers, cells[1:-1], cells[-1]
    return headers, cells[1:], None


def exact(value: float) -> Decimal:
    # a money cell holds a double; its shortest repr is the stored decimal at these magnitudes
    return Decimal(repr(value))


SUBTOTAL = re.compile(r"^=SUBTOTAL\(109,([A-Z]+)(\d+):([A-Z]+)(\d+)\)$")


def test_invoice_totals_rows_are_formulas_over_exactly_the_data_rows(
    april, april_cached, portfolio
):
    sheet = april["Invoice lines"]
    cached = april_cached["Invoice lines"]
    stored = stored_totals(portfolio, "2024-04")
    assert stored == {"T1": Decimal("3175.00"), "T2": Decimal("1000.00")}  # module docstring
    seen = {}
    for table in tables(sheet):
        headers, body, totals = table_cells(sheet, table)
        assert totals is not None, table.name
        amount = headers.index("Amount")
        (contract,) = {row[0].value for row in body}
        assert totals[0].value == f"Total {contract}"
        formula = totals[amount].value
        match = SUBTOTAL.match(formula)
        assert match, formula
        column, first, column_to, last = match.groups()
        # the range is the table's Amount column, from its first data row to its last
        assert column == column_to == body[0][amount].column_letter
        assert (int(first), int(last)) == (body[0][amount].row, body[-1][amount].row)
        # independently: the data cells add up to the stored invoice total, and the formula's
        # cached result is that total
        assert sum(exact(row[amount].value) for row in body) == stored[contract]
        assert exact(cached[totals[amount].coordinate].value) == stored[contract]
        assert totals[amount].number_format == "#,##0.00;[Red]-#,##0.00"
        seen[contract] = table.name
    assert seen == {"T1": "InvoiceLines_1", "T2": "InvoiceLines_2"}


def test_reconciliation_totals_rows(april, april_cached):
    sheet = april["Reconciliation"]
    cached = april_cached["Reconciliation"]
    # billed and difference per contract (module docstring)
    expected = {
        "T1": (Decimal("3175.00"), Decimal("0.00")),
        "T2": (Decimal("1025.00"), Decimal("25.00")),
    }
    for table in tables(sheet):
        headers, body, totals = table_cells(sheet, table)
        contract = body[0][0].value
        for name, want in zip(("Billed", "Difference"), expected[contract], strict=True):
            col = headers.index(name)
            first, last = body[0][col], body[-1][col]
            assert totals[col].value == (
                f"=SUBTOTAL(109,{first.column_letter}{first.row}:{last.column_letter}{last.row})"
            )
            assert sum(exact(r[col].value) for r in body if r[col].value is not None) == want
            assert exact(cached[totals[col].coordinate].value) == want


def test_summary_totals_per_currency_are_sumifs_over_the_table(april, april_cached):
    sheet, cached = april["Summary"], april_cached["Summary"]
    (table,) = sheet.tables.values()
    headers, body, totals = table_cells(sheet, table)
    assert totals is None  # a total across GBP and EUR would mean nothing
    first, last = body[0][0].row, body[-1][0].row
    currency = body[0][headers.index("Currency")].column_letter
    due = headers.index("Amount due")
    letter = body[0][due].column_letter
    found = {}
    for row in sheet.iter_rows(min_row=last + 1):
        if isinstance(row[0].value, str) and row[0].value.startswith("Total "):
            code = row[0].value.removeprefix("Total ")
            assert row[due].value == (
                f'=SUMIFS({letter}{first}:{letter}{last},{currency}{first}:{currency}{last},"{code}")'
            )
            found[code] = exact(cached[row[due].coordinate].value)
    assert found == {"GBP": Decimal("3175.00"), "EUR": Decimal("1000.00")}


def test_periods_are_dates_and_flags_are_booleans(april):
    windows = [r for r in records(april["Gain-share"]) if r["Contract"] == "T1"]
    assert [w["Window from"] for w in windows] == [dt.datetime(2024, m, 1) for m in (1, 2, 3, 4)]
    assert [w["On this invoice"] for w in windows] == [False, False, False, True]
    assert all(type(w["Capped"]) is bool and type(w["Gated"]) is bool for w in windows)
    sheet = april["Gain-share"]
    headers = [c.value for c in sheet[1]]
    assert sheet.cell(row=2, column=headers.index("Window from") + 1).number_format == "yyyy-mm"
    (adjustment,) = records(april["Adjustments"])
    assert adjustment["Restated month"] == dt.datetime(2024, 3, 1)
    (kpi,) = records(april["KPIs & credits"])
    assert kpi["Critical"] is False


def test_month_end_state_and_sign_off(april, portfolio):
    summary = {r["Contract"]: r for r in records(april["Summary"])}
    t1, t2 = summary["T1"], summary["T2"]
    assert (t1["Month-end state"], t1["Approved by"], t1["Open disputes"]) == (
        "approved",
        "alice",
        0,
    )
    approved_at = portfolio.one(
        "SELECT approved_at FROM current_approvals WHERE contract_id = 'T1' AND period = ?", [APRIL]
    )
    assert isinstance(t1["Approved at (UTC)"], dt.datetime)
    assert abs(t1["Approved at (UTC)"] - approved_at) < dt.timedelta(milliseconds=1)
    assert (t2["Month-end state"], t2["Approved by"], t2["Open disputes"]) == ("disputed", None, 1)
    # April's invoice carries March's restatement
    assert (t1["Restates"], t2["Restates"]) == ("2024-03", None)
    cells = {
        row[0].value: row[1].value
        for row in april["Summary"].iter_rows(min_row=len(summary) + 2)
        if row[0].value in ("Prepared by", "Reviewed by", "Approved by", "Date")
    }
    assert cells == {
        "Prepared by": None,
        "Reviewed by": None,
        "Approved by": "alice (T1)",
        "Date": None,
    }


def test_a_restated_closed_month_is_marked_with_where_its_adjustment_went(packs):
    march = {r["Contract"]: r for r in records(openpyxl.load_workbook(packs["2024-03"])["Summary"])}
    t1 = march["T1"]
    assert t1["Month"] == "closed"
    # the closed figure stays (gain-share 50.00); the mark says April carries 100.00 - 50.00
    assert t1["Gain-share"] == 50.00
    assert (t1["Restated on invoice of"], t1["Restatement delta"]) == ("2024-04", 50.00)
    assert march["T2"]["Restated on invoice of"] is None


def test_every_sheet_prints_landscape_a4_one_page_wide_with_its_header_repeated(april):
    for sheet in april.worksheets:
        setup = sheet.page_setup
        assert setup.orientation == "landscape", sheet.title
        assert setup.paperSize == 9, sheet.title  # A4
        assert sheet.sheet_properties.pageSetUpPr.fitToPage is True, sheet.title
        # fitToWidth and fitToHeight default to 1 in the file format (absent means 1)
        assert (setup.fitToWidth or 1) == 1, sheet.title
        expected_height = 1 if sheet.title == "Summary" else 0  # the summary on one page
        assert (1 if setup.fitToHeight is None else setup.fitToHeight) == expected_height
        assert sheet.print_title_rows == "$1:$1", sheet.title
        (area,) = sheet.print_area if isinstance(sheet.print_area, list) else [sheet.print_area]
        first, last = area.split("!")[1].replace("$", "").split(":")
        assert first == "A1"
        assert int(re.sub(r"[A-Z]", "", last)) >= sheet.max_row, sheet.title
        assert sheet.freeze_panes == "A2", sheet.title


def series_values(book: openpyxl.Workbook, ref: str) -> list:
    sheet_name, cells = ref.split("!")
    sheet = book[sheet_name.strip("'")]
    low_col, low_row, high_col, high_row = range_boundaries(cells.replace("$", ""))
    assert low_col == high_col, ref
    return [sheet.cell(row=r, column=low_col).value for r in range(low_row, high_row + 1)]


def waterfall(book: openpyxl.Workbook, contract_index: int) -> dict[str, list]:
    chart = book["Waterfall"]._charts[contract_index]
    assert isinstance(chart, BarChart)
    assert (chart.type, chart.grouping) == ("col", "stacked")
    names = [series_values(book, s.tx.strRef.f)[0] for s in chart.series]
    assert names == ["Base above zero", "Base below zero", "Bar above zero", "Bar below zero"]
    # the bases are invisible
    for base in chart.series[:2]:
        assert base.graphicalProperties.noFill is True
    steps = series_values(book, chart.series[0].cat.strRef.f)
    return {
        "steps": steps,
        **{
            name: [Decimal(repr(v)) for v in series_values(book, s.val.numRef.f)]
            for name, s in zip(names, chart.series, strict=True)
        },
    }


def test_one_native_waterfall_chart_per_contract(april):
    assert len(april["Waterfall"]._charts) == 2
    t1 = waterfall(april, 0)
    assert t1["steps"] == [
        "Charges",
        "Credits",
        "Earn-back",
        "Bonus",
        "Gain-share",
        "Adjustments",
        "Amount due",
    ]
    d = Decimal
    # charges 3,025.00 from zero; nothing until gain-share 100.00 from 3,025.00 to 3,125.00;
    # adjustments 50.00 up to 3,175.00; amount due 3,175.00 from zero
    assert t1["Base above zero"] == [d(0), d(3025), d(3025), d(3025), d(3025), d(3125), d(0)]
    assert t1["Bar above zero"] == [d(3025), d(0), d(0), d(0), d(100), d(50), d(3175)]
    assert set(t1["Base below zero"]) == set(t1["Bar below zero"]) == {d(0)}
    t2 = waterfall(april, 1)
    assert t2["Bar above zero"] == [d(1000), d(0), d(0), d(0), d(0), d(0), d(1000)]


def test_a_credit_steps_the_waterfall_down(packs):
    book = openpyxl.load_workbook(packs["2024-01"])
    t1 = waterfall(book, 0)
    d = Decimal
    # charges 4,020.00; credit -402.00: a bar from 3,618.00 up to 4,020.00; gain-share 65.00 from
    # 3,618.00 to 3,683.00; amount due 3,683.00
    bars = zip(t1["Base above zero"], t1["Bar above zero"], strict=True)
    steps = dict(zip(t1["steps"], bars, strict=True))
    assert steps["Charges"] == (d(0), d(4020))
    assert steps["Credits"] == (d(3618), d(402))
    assert steps["Gain-share"] == (d(3618), d(65))
    assert steps["Amount due"] == (d(0), d(3683))
    chart = book["Waterfall"]._charts[0]
    colours = [p.graphicalProperties.solidFill.srgbClr for p in chart.series[2].dPt]
    # totals blue, a decrease red, an increase green
    assert colours[0] == colours[-1] == "2F6FB0"
    assert colours[t1["steps"].index("Credits")] == "C0392B"
    assert colours[t1["steps"].index("Gain-share")] == "2E8540"


def test_a_waterfall_below_zero_splits_each_bar_at_zero():
    """Charges 100.00, credits -150.00, amount due -50.00: the credit runs from 100.00 down to
    -50.00, drawn as 100.00 above zero and -50.00 below it on invisible bases of zero; the amount
    due is -50.00 below zero."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE current_invoice_summary AS SELECT 'N1' AS contract_id, 'GBP' AS currency, "
        "DATE '2024-01-01' AS period, 100.00::DECIMAL(38,4) AS charges, "
        "-150.00::DECIMAL(38,4) AS credits, 0::DECIMAL(38,4) AS earn_back, "
        "0::DECIMAL(38,4) AS bonus, 0::DECIMAL(38,4) AS gain_share, "
        "0::DECIMAL(38,4) AS adjustments, 0::DECIMAL(38,4) AS other, "
        "-50.00::DECIMAL(38,4) AS amount_due"
    )
    cur = con.execute(WATERFALL_SQL, {"period": dt.date(2024, 1, 1)})
    names = [c[0] for c in cur.description]
    bars = {r[names.index("step")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    assert "Other" not in bars
    credit, due = bars["Credits"], bars["Amount due"]
    assert (credit["level_from"], credit["level_to"]) == (Decimal(100), Decimal(-50))
    assert (credit["base_above"], credit["bar_above"]) == (0, Decimal(100))
    assert (credit["base_below"], credit["bar_below"]) == (0, Decimal(-50))
    assert (due["bar_above"], due["base_below"], due["bar_below"]) == (0, 0, Decimal(-50))


def test_money_is_written_as_its_exact_decimal_text(packs):
    with zipfile.ZipFile(packs["2024-04"]) as archive:
        names = archive.read("xl/workbook.xml").decode()
        sheets = re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="rId(\d+)"', names)
        number = dict(sheets)["Invoice lines"]
        xml = archive.read(f"xl/worksheets/sheet{number}.xml").decode()
    # the stored DECIMAL(38, 4) text, not a float's repr; the total's cached value likewise
    assert "<v>2000.0000</v>" in xml
    assert "<f>SUBTOTAL(109,H2:H5)</f><v>3175.0000</v>" in xml


def test_the_pack_is_recognised_as_one(packs, april):
    assert april.properties.creator == "Settle"
    assert "Settlement pack 2024-04" in april.properties.title
    assert is_pack(packs["2024-04"])


def test_money_at_the_contracts_scale(ws: Workspace, tmp_path):
    """J1 rounds to 0 places (JPY): its money cells and totals carry a format without decimals."""
    ws.contract(INDEXED_ZERO_PLACES)
    ws.volumes([("J1", "voice", "2024-01", "10")])
    ws.index_values([("CPI", "2023-10", "100"), ("CPI", "2023-11", "101.25")])
    ws.settle("2024-01")
    out = write_pack(ws.db, parse_period("2024-01"), "xlsx", tmp_path / "pack.xlsx")
    book = openpyxl.load_workbook(out)
    summary = book["Summary"]
    headers = [c.value for c in summary[1]]
    assert summary.cell(row=2, column=headers.index("Charges") + 1).number_format == (
        "#,##0;[Red]-#,##0"
    )
    sheet = book["Invoice lines"]
    (table,) = sheet.tables.values()
    headers, body, totals = table_cells(sheet, table)
    amount = headers.index("Amount")
    assert {row[amount].number_format for row in body} == {"#,##0;[Red]-#,##0"}
    assert totals[amount].number_format == "#,##0;[Red]-#,##0"
    # voice 25 + mgmt 1,013 = 1,038 (tests/test_report.py, 0 places)
    assert sum(exact(row[amount].value) for row in body) == Decimal(1038)


def test_sample_portfolio_pack(tmp_path):
    """The bundled samples' December: one chart per contract, each invoice table adding up to the
    stored total."""
    db = tmp_path / "settlement.duckdb"
    settle_samples(db)
    out = write_pack(db, parse_period("2025-12"), "xlsx", tmp_path / "pack.xlsx")
    book = openpyxl.load_workbook(out)
    with duckdb.connect(str(db), read_only=True) as con:
        stored = dict(
            con.execute(
                "SELECT contract_id, sum(amount) FROM current_invoice_lines "
                "WHERE period = DATE '2025-12-01' GROUP BY ALL"
            ).fetchall()
        )
    assert len(stored) == 3
    assert len(book["Waterfall"]._charts) == len(stored)
    sheet = book["Invoice lines"]
    found = {}
    for table in tables(sheet):
        headers, body, totals = table_cells(sheet, table)
        amount = headers.index("Amount")
        found[body[0][0].value] = sum(exact(r[amount].value) for r in body)
        assert SUBTOTAL.match(totals[amount].value)
    assert found == stored
    for sheet in book.worksheets:
        assert sheet.page_setup.orientation == "landscape", sheet.title


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_opens_the_pack_and_recomputes_the_totals(packs, tmp_path):
    subprocess.run(
        [
            "soffice",
            "--headless",
            "--convert-to",
            "csv",
            "--outdir",
            str(tmp_path),
            str(packs["2024-04"]),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    text = (tmp_path / "2024-04.csv").read_text()
    assert "Total GBP" in text and "3,175.00" in text


def test_the_runs_start_and_finish_are_date_times(april, portfolio):
    params = {(r["Kind"], r["Name"]): r["Value"] for r in records(april["Parameters"])}
    run = portfolio.rows("SELECT started_at, finished_at FROM settlement_runs WHERE run_id = 2")[0]
    for name in ("started_at", "finished_at"):
        cell = params[("run", name)]
        assert isinstance(cell, dt.datetime), name
        # Excel keeps a date-time as a day count in a double: microseconds survive to about 1 ms
        assert abs(cell - run[name]) < dt.timedelta(milliseconds=1), name
    assert params[("run", "mode")] == "settle"
