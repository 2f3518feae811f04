"""Reconciliation of the provider's invoice against the expected one (SPEC 7, issue 6)."""

from __future__ import annotations

from decimal import Decimal

D = Decimal

# tolerance: a line matches within 1.00 OR within 0.1% of the expected amount
C1 = """
contract_id: C1
currency: GBP
start: 2024-01
reconciliation: {tolerance_abs: 1.00, tolerance_pct: 0.001}
service_lines:
  - id: voice
    pricing: [{effective_from: 2024-01, model: per_unit, bands: [{rate: 2.00}]}]
  - id: email
    pricing: [{effective_from: 2024-01, model: per_unit, bands: [{rate: 1.50}]}]
  - id: chat
    pricing: [{effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}]
  - id: sms
    pricing: [{effective_from: 2024-01, model: per_unit, bands: [{rate: 0.10}]}]
fixed_fees:
  - {id: mgmt, amount: 500.00}
"""

# tolerance: only relative, 1% of the expected amount
C2 = """
contract_id: C2
currency: GBP
start: 2024-01
reconciliation: {tolerance_pct: 0.01}
service_lines:
  - id: voice
    pricing: [{effective_from: 2024-01, model: per_unit, bands: [{rate: 2.00}]}]
"""


def _status(ws, contract: str, period: str) -> dict[str, dict]:
    rows = ws.rows(
        "SELECT * FROM current_invoice_reconciliation WHERE contract_id = ? AND period = ?",
        [contract, f"{period}-01"],
    )
    return {r["line_key"]: r for r in rows}


def test_every_status_tolerance_and_variance_split(ws):
    ws.contract(C1)
    ws.volumes(
        [
            ("C1", "voice", "2024-01", "1000"),  # 1000 x 2.00 = 2000.00
            ("C1", "email", "2024-01", "200"),  # 200 x 1.50 = 300.00
            ("C1", "chat", "2024-01", "100"),  # 100 x 1.00 = 100.00
            ("C1", "sms", "2024-01", "1000"),  # 1000 x 0.10 = 100.00
        ]
    )
    inv = "INV-1"
    ws.vendor_invoices(
        [
            ("C1", "2024-01", inv, "usage:voice", "Voice", "1010", "2.05", "2070.50"),
            ("C1", "2024-01", inv, "usage:email", "Email", None, None, "300.90"),
            ("C1", "2024-01", inv, "fixed:mgmt", "Management", None, None, "499.00"),
            ("C1", "2024-01", inv, "usage:chat", "Chat", "100", "0.95", "95.00"),
            ("C1", "2024-01", inv, "expenses:travel", "Travel", None, None, "842.60"),
        ]
    )
    ws.settle("2024-01")
    rec = _status(ws, "C1", "2024-01")

    voice = rec["usage:voice"]
    # 2070.50 - 2000.00 = +70.50, above 1.00 and above 0.1% x 2000 = 2.00: over-billed.
    # rate variance = (2.05 - 2.00) x 1010 = 50.50; volume = (1010 - 1000) x 2.00 = 20.00;
    # other = 70.50 - 50.50 - 20.00 = 0.00
    assert voice["status"] == "over_billed"
    assert (voice["difference"], voice["rate_variance"], voice["volume_variance"]) == (
        D("70.50"),
        D("50.50"),
        D("20.00"),
    )
    assert voice["other_variance"] == D("0.00")
    # 300.90 - 300.00 = 0.90 <= 1.00: matches on the absolute tolerance; no quantity on the
    # provider's line, so no variance split
    assert rec["usage:email"]["status"] == "match"
    assert rec["usage:email"]["rate_variance"] is None
    # 499.00 - 500.00 = -1.00: exactly the absolute tolerance still matches
    assert (rec["fixed:mgmt"]["status"], rec["fixed:mgmt"]["difference"]) == ("match", D("-1.00"))
    chat = rec["usage:chat"]
    # 95.00 - 100.00 = -5.00: above 1.00 and above 0.1% x 100 = 0.10: under-billed, all of it
    # rate: (0.95 - 1.00) x 100 = -5.00
    assert (chat["status"], chat["rate_variance"], chat["volume_variance"]) == (
        "under_billed",
        D("-5.00"),
        D("0.00"),
    )
    # sms 100.00 expected, not on the provider's invoice
    assert (rec["usage:sms"]["status"], rec["usage:sms"]["difference"]) == (
        "not_billed",
        D("-100.00"),
    )
    # travel billed, no contract line for it
    assert (rec["expenses:travel"]["status"], rec["expenses:travel"]["difference"]) == (
        "unexpected",
        D("842.60"),
    )
    # totals reconcile to the cent: expected 2000 + 300 + 100 + 100 + 500 = 3000.00;
    # billed 2070.50 + 300.90 + 499.00 + 95.00 + 842.60 = 3808.00; difference 808.00
    totals = ws.rows(
        "SELECT sum(expected_amount) AS e, sum(billed_amount) AS b, sum(difference) AS d "
        "FROM current_invoice_reconciliation WHERE contract_id = 'C1'"
    )[0]
    assert (totals["e"], totals["b"], totals["d"]) == (D("3000.00"), D("3808.00"), D("808.00"))
    assert ws.one("SELECT amount_due FROM current_invoice_totals WHERE contract_id = 'C1'") == D(
        "3000.00"
    )


def test_relative_tolerance_and_rounding_remainder(ws):
    ws.contract(C2)
    ws.volumes([("C2", "voice", f"2024-0{m}", "1000") for m in (1, 2, 3)])  # 2000.00 a month
    ws.vendor_invoices(
        [
            # +19.00 <= 1% x 2000.00 = 20.00: match
            ("C2", "2024-01", "A", "usage:voice", "Voice", None, None, "2019.00"),
            # +21.00 > 20.00: over-billed
            ("C2", "2024-02", "B", "usage:voice", "Voice", None, None, "2021.00"),
            # quantity and rate agree; the 0.40 is neither rate nor volume: other variance
            ("C2", "2024-03", "C", "usage:voice", "Voice", "1000", "2.00", "2000.40"),
        ]
    )
    ws.settle("2024-01", to="2024-03")
    assert _status(ws, "C2", "2024-01")["usage:voice"]["status"] == "match"
    assert _status(ws, "C2", "2024-02")["usage:voice"]["status"] == "over_billed"
    march = _status(ws, "C2", "2024-03")["usage:voice"]
    assert march["status"] == "match"
    assert (march["rate_variance"], march["volume_variance"], march["other_variance"]) == (
        D("0.00"),
        D("0.00"),
        D("0.40"),
    )


# a package line: 1,000 documents a pack at 1,500.00 a pack
C3 = """
contract_id: C3
currency: GBP
start: 2024-01
reconciliation: {tolerance_abs: 1.00}
service_lines:
  - id: docs
    pricing:
      - {effective_from: 2024-01, model: package, package_size: 1000, package_price: 1500.00}
"""


def test_a_package_line_reconciles_packs_at_the_pack_price(ws):
    ws.contract(C3)
    ws.volumes([("C3", "docs", "2024-01", "180640")])
    # the provider bills one pack more than the 181 the documents fill
    ws.vendor_invoices(
        [("C3", "2024-01", "INV-3", "usage:docs", "Documents", "182", "1500.00", "273000.00")]
    )
    ws.settle("2024-01")
    rec = _status(ws, "C3", "2024-01")["usage:docs"]
    # 180,640 documents / 1,000 = 180.64 -> 181 packs (rounded up); 181 x 1,500.00 = 271,500.00.
    # The invoice's quantity is in the rate's unit, packs: 181 x 1,500.00 is the amount.
    assert (rec["expected_quantity"], rec["expected_rate"], rec["expected_amount"]) == (
        D("181"),
        D("1500.00"),
        D("271500.00"),
    )
    # 273,000.00 - 271,500.00 = 1,500.00: one pack, all volume: (182 - 181) x 1,500.00;
    # rate variance (1,500.00 - 1,500.00) x 182 = 0; nothing left over
    assert (
        rec["difference"],
        rec["rate_variance"],
        rec["volume_variance"],
        rec["other_variance"],
    ) == (D("1500.00"), D("0.00"), D("1500.00"), D("0.00"))
    assert rec["status"] == "over_billed"
