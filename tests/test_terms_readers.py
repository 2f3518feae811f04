"""The pack shows the terms beyond the month: their invoice lines and their place in the summary.

The figures are those of X1 in tests/test_explain.py (worked there by hand): April 2024 bills
usage 3,000.00, true-up 333.33, credit -333.33, annual cap refund 400.00, the third instalment
333.33 and an FX share of -116.67.
"""

from __future__ import annotations

import openpyxl

from tests.test_explain import terms  # noqa: F401 (the settled X1 portfolio, a fixture)
from tests.test_report import records, report


def test_the_pack_lists_the_terms_lines_and_sums_them_in_other_terms(terms, tmp_path):  # noqa: F811
    out = tmp_path / "april.xlsx"
    report(terms.db, "2024-04", out)
    book = openpyxl.load_workbook(out)
    lines = {r["Line"]: (r["Type"], r["Amount"]) for r in records(book["Invoice lines"])}
    assert lines == {
        "usage:voice": ("usage", 3000.00),
        "true_up:voice": ("true_up", 333.33),
        "credit:sl": ("credit", -333.33),
        "credit_cap_refund": ("credit_cap_refund", 400.00),
        "one_off:transition": ("one_off", 333.33),
        "fx_share": ("fx_share", -116.67),
    }
    (summary,) = records(book["Summary"])
    # charges 3,000.00 + 333.33 = 3,333.33 (the true-up is a charge); other terms
    # 400.00 + 333.33 - 116.67 = 616.66; due 3,333.33 - 333.33 + 616.66 = 3,616.66
    assert summary["Charges"] == 3333.33
    assert summary["Credits"] == -333.33
    assert summary["Other terms"] == 616.66
    assert summary["Amount due"] == 3616.66
    html = tmp_path / "april.html"
    report(terms.db, "2024-04", html, "html")
    page = html.read_text()
    for key in ("true_up:voice", "credit_cap_refund", "one_off:transition", "fx_share"):
        assert key in page
