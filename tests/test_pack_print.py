"""The HTML pack printed by a real browser: headless Chromium prints it to PDF, poppler reads the
PDF's text back, and the assertions are about what lands on paper.

The database is the demo flow on the bundled samples (tests/test_explain.py settle_samples), then,
as month-end would: FABRIKAM-TELCO-01's 2025-12 invoice approved, and a line of
ACME-CONTOSO-01's disputed. The figures the page must print are read from the stored figures
(this checks printing, not settling; the settling tests work them out by hand).

Skips only when the browser or poppler is missing AND SETTLE_REQUIRE_BROWSER is unset; CI sets it
(`.ci/run`), so there a missing browser fails. `make browser` installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipelines import workflow
from pipelines.cli import main
from pipelines.pack_data import (
    GAIN_SHARE_COLUMNS,
    INVOICE_COLUMNS,
    KPI_COLUMNS,
    RECONCILIATION_COLUMNS,
    SUMMARY_COLUMNS,
)
from pipelines.periods import parse_period
from tests.test_explain import settle_samples

PERIOD = "2025-12"
APPROVER = "Dana Approver"
DISPUTED = ("ACME-CONTOSO-01", "usage:email")
DISPUTE_REASON = "email rate above the contract"


def _tools() -> dict[str, str] | None:
    found = {t: shutil.which(t) for t in ("chromium", "pdftotext", "pdfinfo")}
    if all(found.values()):
        return found  # type: ignore[return-value]
    missing = ", ".join(t for t, p in found.items() if not p)
    if os.environ.get("SETTLE_REQUIRE_BROWSER"):
        pytest.fail(f"SETTLE_REQUIRE_BROWSER is set but {missing} is missing: run `make browser`")
    pytest.skip(f"{missing} not installed (`make browser` installs it)")
    return None


def _money(value: Decimal) -> str:
    # the stored figures are rounded to the samples' 2 places: this only adds the separators
    assert value == value.quantize(Decimal("0.01")), value
    return f"{value:,.2f}"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("print") / "settlement.duckdb"
    settle_samples(db)
    month = parse_period(PERIOD)
    workflow.approve(db, month, contract_ids={"FABRIKAM-TELCO-01"}, by=APPROVER)
    workflow.dispute(db, month, DISPUTED[0], DISPUTED[1], DISPUTE_REASON, by="Sam Reviewer")
    return db


@pytest.fixture(scope="module")
def html(sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "pack.html"
    args = ["report", "--period", PERIOD, "--format", "html", "--db", str(sample)]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def printed(html, tmp_path_factory) -> tuple[list[str], str]:
    """(the PDF's pages as text, pdfinfo's report)."""
    tools = _tools()
    assert tools
    work = tmp_path_factory.mktemp("chromium")
    pdf = work / "pack.pdf"
    subprocess.run(
        [
            tools["chromium"],
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",  # its own profile: other browsers may be running
            f"--print-to-pdf={pdf}",
            "--no-pdf-header-footer",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert pdf.exists() and pdf.stat().st_size > 0
    text = subprocess.run(
        [tools["pdftotext"], "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    info = subprocess.run(
        [tools["pdfinfo"], str(pdf)], check=True, capture_output=True, text=True
    ).stdout
    return text.split("\f"), info


def _stored(db: Path, sql: str) -> list[dict]:
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute(sql, [parse_period(PERIOD)])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _contract_pages(pages: list[str], contract_ids: list[str]) -> dict[str, str]:
    """Each contract's printed text: from the page its section starts on to the next's."""
    starts = {}
    for cid in contract_ids:
        heading = re.compile(rf"^\s*{re.escape(cid)} \w{{3}} · {PERIOD}", re.M)
        starts[cid] = next(n for n, p in enumerate(pages) if heading.search(p))
    order = sorted(starts, key=starts.get)
    ends = {cid: starts[nxt] for cid, nxt in zip(order, order[1:], strict=False)}
    return {cid: "\f".join(pages[starts[cid] : ends.get(cid, len(pages))]) for cid in order}


def test_printed_on_a4_landscape(printed):
    _, info = printed
    size = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert size, info
    width, height = float(size[1]), float(size[2])
    # A4 is 210 x 297 mm = 595.28 x 841.89 pt; landscape puts the long side across
    assert abs(width - 841.89) < 1 and abs(height - 595.28) < 1, info


def test_summary_prints_every_column_on_page_one(printed, sample):
    pages, _ = printed
    first = pages[0]
    assert "Settlement pack 2025-12" in first
    header = next(line for line in first.splitlines() if "Contract" in line and "Charges" in line)
    # every column, in order, on the summary's one header line
    positions = [header.find(c.header) for c in SUMMARY_COLUMNS]
    assert -1 not in positions, [c.header for c in SUMMARY_COLUMNS if c.header not in header]
    assert positions == sorted(positions)
    summary = _stored(
        sample,
        "SELECT contract_id, amount_due, billed, difference, exceptions "
        "FROM current_invoice_summary WHERE period = ? ORDER BY contract_id",
    )
    assert len(summary) == 3
    for s in summary:
        # each contract's row: amount due, billed, difference and exceptions, in that order
        row = re.compile(
            re.escape(s["contract_id"])
            + r"\s.*\s"
            + r"\s+".join(
                re.escape(t)
                for t in (
                    _money(s["amount_due"]),
                    _money(s["billed"]),
                    _money(s["difference"]),
                    str(s["exceptions"]),
                )
            )
            + r"\b",
            re.M,
        )
        assert row.search(first), (s, first)
    # the month's state per contract: ACME disputed, FABRIKAM approved, NORTHWIND open
    for cid, state in (
        ("ACME-CONTOSO-01", "disputed"),
        ("FABRIKAM-TELCO-01", "approved"),
        ("NORTHWIND-BACKOFFICE-01", "open"),
    ):
        assert re.search(rf"^\s*{cid}\s+\w{{3}}\s+\d+\s+{state}\s", first, re.M), cid
    # the summary stands alone on its page: the first contract starts on the next
    assert "FROM CHARGES TO THE AMOUNT DUE" not in first.upper()


def test_no_table_is_cut(printed, sample):
    """Every header of the wide tables prints, and so do the values of their last columns."""
    pages, _ = printed
    cids = [
        r["contract_id"]
        for r in _stored(
            sample,
            "SELECT DISTINCT contract_id FROM current_invoice_lines WHERE period = ? ORDER BY 1",
        )
    ]
    by_contract = _contract_pages(pages, cids)
    with_gain_share = {
        r["contract_id"]
        for r in _stored(
            sample,
            "SELECT DISTINCT contract_id FROM current_gain_share "
            "WHERE billed_period > ? - INTERVAL 12 MONTH",
        )
    }
    assert with_gain_share == set(cids)
    for cid, text in by_contract.items():
        flat = re.sub(r"\s+", " ", text)
        for columns in (INVOICE_COLUMNS, RECONCILIATION_COLUMNS, KPI_COLUMNS, GAIN_SHARE_COLUMNS):
            for c in columns:
                if c.key != "contract_id":
                    assert c.header in flat, (cid, c.header)
    for r in _stored(
        sample,
        "SELECT contract_id, line_key, amount FROM current_invoice_lines WHERE period = ?",
    ):
        # the invoice's last column: each line's amount, on the line's own row
        text = by_contract[r["contract_id"]]
        assert re.search(
            rf"{re.escape(r['line_key'])}\s.*{re.escape(_money(r['amount']))}\s*$", text, re.M
        ), r
    for r in _stored(
        sample,
        "SELECT contract_id, window_start, provider_amount FROM current_gain_share "
        "WHERE billed_period > ? - INTERVAL 12 MONTH",
    ):
        # the gain-share's amount billed (its second part): on the window's own row
        text = by_contract[r["contract_id"]]
        month = r["window_start"].strftime("%Y-%m")
        amount = re.escape(_money(r["provider_amount"]))
        assert re.search(rf"^\s*{month}\s.*\s{amount}\b", text, re.M), r
    recon = _stored(
        sample,
        "SELECT contract_id, line_key, status, variance_basis "
        "FROM current_invoice_reconciliation WHERE period = ?",
    )
    assert recon
    for r in recon:
        # the reconciliation's status and its last column, the variance basis, each on a row
        # of the line (a part of the split table repeats the line key)
        text = by_contract[r["contract_id"]]
        key = re.escape(r["line_key"])
        assert re.search(rf"^\s*{key}\s.*\s{r['status']}\b", text, re.M), r
        assert re.search(rf"^\s*{key}\s.*\s{r['variance_basis']}\s*$", text, re.M), r


def test_figures_print_at_the_contracts_scale_and_unit(printed):
    pages, _ = printed
    text = "\f".join(pages)
    # gain-share of Q1 2025 for ACME-CONTOSO-01: the tiered share 38,475.6025 x 0.50 = 19,237.80125
    # is printed as stored rounded to the contract's 2 places (half_up), never with all 5
    assert "19,237.80125" not in text
    assert "19,237.80" in text
    # tiers with thousands separators: FABRIKAM's first tier (contract: savings up to 20,000.00
    # shared at 0.40) in its January 2025 window
    assert "20,000.00 x 0.40 + 20,750.00 x 0.20" in text
    # NORTHWIND's package line (contract: packs of 1,000 documents at 1,450.00 base, indexed to
    # 1,520.82): 180,640 documents = ceil(180.64) = 181 packs; 181 x 1,520.82 = 275,268.42
    assert re.search(r"181 packs of 1,000\s+1,520.82 per pack\s+275,268.42", text)
    # NORTHWIND's stepped MI reporting fee: 88 hours reach the step from 80 hours, 14,500.00 flat
    assert re.search(r"\s88\s+14,500.00 flat \(step 3: 80\+\)\s+14,500.00", text)
    # KPI shares in per cent: ACME's sl_80_20 target 0.82 (contract), its chart labelled with it
    assert "target 82%" in text
    assert re.search(r"sl_80_20\s+input\s+higher_is_better\s+[\d.]+%\s+82%\s+(met|failed)", text)


def test_month_state_dispute_notice_and_sign_off_print(printed, sample):
    pages, _ = printed
    by_contract = _contract_pages(
        pages, ["ACME-CONTOSO-01", "FABRIKAM-TELCO-01", "NORTHWIND-BACKOFFICE-01"]
    )
    acme, fabrikam, northwind = (
        by_contract[c] for c in ("ACME-CONTOSO-01", "FABRIKAM-TELCO-01", "NORTHWIND-BACKOFFICE-01")
    )
    assert "Month disputed" in acme and "1 open dispute(s)" in acme
    notice = acme[acme.index("DISPUTE NOTICE") :]
    assert DISPUTE_REASON in notice and DISPUTED[1] in notice
    assert "DISPUTE NOTICE" not in fabrikam + northwind
    assert f"Month approved    Approved by {APPROVER}" in re.sub(r" {2,}", "    ", fabrikam)
    for text in (acme, fabrikam, northwind):
        sign_off = text[text.index("SIGN-OFF") :]
        for role in ("Prepared by", "Reviewed by", "Approved by", "Date"):
            assert role in sign_off
    # only the approved month names its approver on the approval line
    assert APPROVER in fabrikam[fabrikam.index("SIGN-OFF") :]
    assert APPROVER not in acme + northwind


def test_restated_closed_month_is_marked_with_where_its_adjustment_went(printed, sample):
    pages, _ = printed
    acme = _contract_pages(pages, ["ACME-CONTOSO-01"])["ACME-CONTOSO-01"]
    flat = re.sub(r"\s+", " ", acme)
    (adj,) = _stored(
        sample,
        "SELECT period, billed_in_period, delta FROM current_adjustments "
        "WHERE contract_id = 'ACME-CONTOSO-01' AND period > ? - INTERVAL 12 MONTH",
    )
    # the rebasing restated the closed 2025-06 gain-share; the difference went on 2025-07
    assert (
        f"restated: {_money(adj['delta'])} billed in 2025-07 as adjustment:gain_share:2025-06"
        in flat
    )


def test_the_page_reads_the_stored_state(html):
    """Without a browser too: the markers the CLI recognises, no scrolling box, and the
    difference card coloured by the stored exceptions, not by its sign."""
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Settlement pack 2025-12</title>" in page[:8192]
    assert "overflow-x: auto" not in page and "overflow: auto" not in page
    assert "@page { size: A4 landscape" in page
    assert "thead { display: table-header-group; }" in page
    fabrikam = page[page.index('id="FABRIKAM-TELCO-01"') :]
    # FABRIKAM-TELCO-01: billed 0.50 more than due, every line within tolerance (0 exceptions)
    card = re.search(r'<div class="card ([a-z]*)"><div class="label">Difference', fabrikam)
    assert card and card[1] == "ok"
    acme = page[page.index('id="ACME-CONTOSO-01"') :]
    card = re.search(r'<div class="card ([a-z]*)"><div class="label">Difference', acme)
    assert card and card[1] == "alert"
