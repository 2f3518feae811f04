"""An adjustment names what changed in a closed month's inputs (SPEC 5 and 12): "volumes of
YYYY-MM changed", "kpis of YYYY-MM changed", also for a line of a later month that reaches back
to the changed one (a gain-share quarter), and never again once the change has been billed on a
closed invoice. The names come from input_digests, stored by each run; readers only read them.
"""

from __future__ import annotations

from decimal import Decimal

from .test_credits import BINARY_SL, pool_contract
from .test_rebasing import REPRICED_MARCH, write_contract

D = Decimal


def reasons(result) -> dict[str, tuple[Decimal, str]]:
    return {
        f"{a['line_key']}:{a['period']:%Y-%m}": (a["delta"], a["reason"])
        for a in result.adjustments
    }


def test_changed_volumes_of_a_closed_month_are_named_and_reach_its_quarter(ws):
    # one line at 2.00 a contact; quarterly unit-cost gain-share, baseline 2.50, provider 50%
    write_contract(ws)
    ws.volumes([("C1", "voice", f"2024-{m:02d}", "1000") for m in range(1, 7)])
    ws.settle("2024-01", to="2024-03")
    for m in ("2024-01", "2024-02", "2024-03"):
        ws.close(m)

    # January's volumes are corrected from 1,000 to 1,300 after Q1 closed
    ws.volumes([("C1", "voice", "2024-01", "1300")] + [
        ("C1", "voice", f"2024-{m:02d}", "1000") for m in range(2, 7)
    ])  # fmt: skip
    result = ws.settle("2024-04")
    # January usage: 1,300 x 2.00 = 2,600.00 against 2,000.00 closed -> +600.00.
    # Q1 on the March invoice: V = 3,300, C = 6,600.00, B = 3,300 x 2.50 = 8,250.00,
    # S = 1,650.00, provider 825.00 against 750.00 closed -> +75.00, caused by January.
    assert reasons(result) == {
        "usage:voice:2024-01": (D("600.00"), "volumes of 2024-01 changed"),
        "gain_share:2024-03": (D("75.00"), "volumes of 2024-01 changed"),
    }
    stored = ws.rows(
        "SELECT folder, digest, run_id FROM input_digests "
        "WHERE contract_id = 'C1' AND period = DATE '2024-01-01' AND folder = 'volumes' "
        "ORDER BY run_id"
    )
    # one digest per change, not per run: run 1 saw 1,000, run 2 saw 1,300
    assert [r["run_id"] for r in stored] == [1, 2]
    assert stored[0]["digest"] != stored[1]["digest"]

    # April closes with those adjustments; then March is repriced at 1.90 (agreed 2024-05-03).
    # The January correction is billed already: only the rate card is named now.
    ws.close("2024-04")
    write_contract(ws, extra_pricing=REPRICED_MARCH)
    result = ws.settle("2024-05")
    # March usage 1,000 x 1.90 = 1,900.00 against 2,000.00 -> -100.00; April the same.
    # Q1: C = 2,600 + 2,000 + 1,900 = 6,500.00, B = 8,250.00, S = 1,750.00, provider 875.00;
    # billed 750.00 + 75.00 = 825.00 -> +50.00.
    assert reasons(result) == {
        "usage:voice:2024-03": (D("-100.00"), "rate card correction"),
        "gain_share:2024-03": (D("50.00"), "rate card correction"),
        "usage:voice:2024-04": (D("-100.00"), "rate card correction"),
    }


def test_a_changed_kpi_of_a_closed_month_is_named(ws):
    # one line at 1.00 a unit; one binary KPI, 40% of the pool, target 0.80
    ws.contract(pool_contract(BINARY_SL))
    ws.volumes([("C1", "voice", m, "100000") for m in ("2024-01", "2024-02")])
    ws.kpis([("C1", "sl", "2024-01", "0.8500"), ("C1", "sl", "2024-02", "0.8500")])
    ws.settle("2024-01")
    ws.close("2024-01")
    # January's reported service level is corrected to 0.7650: failed
    ws.kpis([("C1", "sl", "2024-01", "0.7650"), ("C1", "sl", "2024-02", "0.8500")])
    result = ws.settle("2024-02")
    # charges 100,000.00; A = 0.10 x 100,000.00 = 10,000.00; 10,000 x 0.40 = 4,000.00 credit
    assert reasons(result) == {"credit:sl:2024-01": (D("-4000.00"), "kpis of 2024-01 changed")}
