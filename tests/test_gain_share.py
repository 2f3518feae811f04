"""Gain-share (SPEC 5) through the whole engine: contract YAML + Parquet in, DuckDB out.

Every expected figure is worked out by hand in the comments next to it. The contracts are kept
small: one per-unit voice line (so the actual cost is units x rate, exact to the cent) and a
gain-share over it. Amounts are compared as Decimal; stored amounts carry trailing zeros, which
Decimal equality ignores.
"""

from __future__ import annotations

import copy
from decimal import Decimal as D
from typing import Any

import duckdb

from pipelines.orchestration import readback
from pipelines.periods import parse_period

GAIN_SHARE_COLUMNS = (
    "window_start, window_end, billed_period, measure, volume, baseline_cost, actual_cost, "
    "savings, threshold_amount, below_threshold, tiered_amount, provider_amount, gated, capped, "
    "tiers_applied, baseline_reason, outcome"
)


def contract(
    cid: str,
    *,
    rate: str = "2.40",
    gain_share: dict[str, Any] | None = None,
    start: str = "2024-01",
    end: str = "2024-12",
    **extra: Any,
) -> dict[str, Any]:
    """A one-line contract: voice at a flat `rate` per contact, baseline 2.50 a contact."""
    gs: dict[str, Any] = {
        "scope": ["voice"],
        "measure": "unit_cost",
        "baselines": [{"effective_from": start, "value": "2.50", "reason": "contract baseline"}],
        "settle_every": "quarter",
        "threshold_pct": "0.01",
        "tiers": [{"up_to": "10000", "provider_share": "0.50"}, {"provider_share": "0.30"}],
    }
    gs.update(gain_share or {})
    return {
        "contract_id": cid,
        "currency": "GBP",
        "start": start,
        "end": end,
        "service_lines": [
            {
                "id": "voice",
                "unit": "contact",
                "pricing": [
                    {"effective_from": start, "model": "per_unit", "bands": [{"rate": rate}]}
                ],
            }
        ],
        "gain_share": gs,
        **extra,
    }


def with_gate(terms: dict[str, Any]) -> dict[str, Any]:
    """Add a service-level KPI `sl` (target 0.80) and make it the gain-share gate."""
    terms = copy.deepcopy(terms)
    terms["service_credits"] = {
        "regime": "at_risk_pool",
        "at_risk_pct": "0.10",
        "kpis": [
            {
                "id": "sl",
                "direction": "higher_is_better",
                "target": [{"effective_from": terms["start"], "value": "0.80"}],
                "allocation_pct": "1.0",
                "credit": {"model": "binary"},
            }
        ],
    }
    terms["gain_share"]["gates"] = ["sl"]
    return terms


def windows(ws, cid: str) -> list[dict[str, Any]]:
    return ws.rows(
        f"SELECT {GAIN_SHARE_COLUMNS} FROM current_gain_share WHERE contract_id = ? "
        "ORDER BY window_start",
        [cid],
    )


def gain_share_lines(ws, cid: str) -> dict[str, D]:
    """YYYY-MM -> amount of the `gain_share` invoice lines of a contract."""
    rows = ws.rows(
        "SELECT period, amount FROM current_invoice_lines "
        "WHERE contract_id = ? AND line_key = 'gain_share' ORDER BY period",
        [cid],
    )
    return {r["period"].strftime("%Y-%m"): r["amount"] for r in rows}


def months(cid: str, units: dict[str, str]) -> list[tuple]:
    return [(cid, "voice", period, u) for period, u in units.items()]


# --------------------------------------------------------------------------- windows and tiers


def test_quarterly_gain_is_billed_once_on_the_quarters_last_month(ws):
    ws.contract(contract("QTR", rate="2.40"))
    ws.volumes(months("QTR", {"2024-01": "10000", "2024-02": "12000", "2024-03": "8000"}))
    ws.settle("2024-01", "2024-03")

    [w] = windows(ws, "QTR")
    assert w["window_start"] == parse_period("2024-01")
    assert w["window_end"] == parse_period("2024-03")
    assert w["billed_period"] == parse_period("2024-03")
    # V = 10,000 + 12,000 + 8,000 = 30,000 contacts
    assert w["volume"] == D("30000")
    # B = 2.50 x 30,000 = 75,000.00; C = 2.40 x 30,000 = 72,000.00; S = 3,000.00
    assert w["baseline_cost"] == D("75000")
    assert w["actual_cost"] == D("72000")
    assert w["savings"] == D("3000")
    # threshold 0.01 x 75,000 = 750.00: 3,000 is above it
    assert w["threshold_amount"] == D("750")
    assert w["below_threshold"] is False
    # all of 3,000 falls in tier 1 (up to 10,000 at 0.50): 1,500.00
    assert w["tiers_applied"] == "3,000.00 x 0.50"
    assert w["provider_amount"] == D("1500.00")
    assert w["outcome"] == "gain"
    # one line, on March's invoice only
    assert gain_share_lines(ws, "QTR") == {"2024-03": D("1500.00")}


def test_gain_crossing_a_tier_is_shared_marginally(ws):
    ws.contract(contract("TIER", rate="2.00"))
    ws.volumes(months("TIER", {"2024-01": "10000", "2024-02": "12000", "2024-03": "8000"}))
    ws.settle("2024-01", "2024-03")

    [w] = windows(ws, "TIER")
    # B = 2.50 x 30,000 = 75,000; C = 2.00 x 30,000 = 60,000; S = 15,000
    assert w["savings"] == D("15000")
    # 10,000 x 0.50 = 5,000 + (15,000 - 10,000) x 0.30 = 1,500 -> 6,500.00
    assert w["tiers_applied"] == "10,000.00 x 0.50 + 5,000.00 x 0.30"
    assert w["tiered_amount"] == D("6500")
    assert w["provider_amount"] == D("6500.00")
    assert w["capped"] is False


def test_cap_limits_the_provider_amount(ws):
    ws.contract(contract("CAP", rate="2.00", gain_share={"cap": "6000"}))
    ws.volumes(months("CAP", {"2024-01": "10000", "2024-02": "12000", "2024-03": "8000"}))
    ws.settle("2024-01", "2024-03")

    [w] = windows(ws, "CAP")
    # as in the tier test: tiered share 6,500.00, above the cap of 6,000 -> 6,000.00
    assert w["tiered_amount"] == D("6500")
    assert w["capped"] is True
    assert w["provider_amount"] == D("6000.00")
    assert gain_share_lines(ws, "CAP") == {"2024-03": D("6000.00")}


def test_window_is_settled_only_when_its_last_month_in_the_term_is(ws):
    # Term Feb..May 2024, quarterly: Q1 is Feb + Mar (billed Mar), Q2 is Apr + May (billed May,
    # the contract end, not June). Each month: B = 2.50 x 10,000 = 25,000, C = 24,000, S = 1,000.
    ws.contract(contract("TERM", start="2024-02", end="2024-05"))
    ws.volumes(
        months(
            "TERM", {"2024-02": "10000", "2024-03": "10000", "2024-04": "10000", "2024-05": "10000"}
        )
    )
    ws.settle("2024-02", "2024-04")
    # April is not Q2's last month: only Q1 is settled
    [q1] = windows(ws, "TERM")
    assert q1["window_start"] == parse_period("2024-01")  # the calendar quarter
    assert q1["billed_period"] == parse_period("2024-03")
    # Q1 has two months in the term: S = 2 x 1,000 = 2,000 -> 2,000 x 0.50 = 1,000.00
    assert q1["volume"] == D("20000")
    assert q1["provider_amount"] == D("1000.00")

    ws.settle("2024-05")
    q1, q2 = windows(ws, "TERM")
    assert q2["window_end"] == parse_period("2024-06")
    assert q2["billed_period"] == parse_period("2024-05")
    assert q2["provider_amount"] == D("1000.00")
    assert gain_share_lines(ws, "TERM") == {"2024-03": D("1000.00"), "2024-05": D("1000.00")}


# --------------------------------------------------------------------------- pain, gates, cliff


def test_pain_month_uses_the_pain_tiers_and_is_credited_to_the_client(ws):
    pain = {
        "settle_every": "month",
        "pain_share": True,
        "pain_tiers": [{"up_to": "2000", "provider_share": "0.50"}, {"provider_share": "0.25"}],
    }
    ws.contract(contract("PAIN", rate="2.80", gain_share=pain))
    # the same overrun without pain_share: nothing is credited
    ws.contract(contract("NOPAIN", rate="2.80", gain_share={"settle_every": "month"}))
    ws.volumes(months("PAIN", {"2024-01": "10000"}) + months("NOPAIN", {"2024-01": "10000"}))
    ws.settle("2024-01")

    [w] = windows(ws, "PAIN")
    # B = 2.50 x 10,000 = 25,000; C = 2.80 x 10,000 = 28,000; S = -3,000 (an overrun)
    assert w["savings"] == D("-3000")
    # pain tiers: 2,000 x 0.50 = 1,000 + 1,000 x 0.25 = 250 -> -1,250.00
    # (the gain tiers would have given 3,000 x 0.50 = 1,500)
    assert w["tiers_applied"] == "2,000.00 x 0.50 + 1,000.00 x 0.25"
    assert w["tiered_amount"] == D("-1250")
    assert w["provider_amount"] == D("-1250.00")
    assert w["outcome"] == "pain"
    assert gain_share_lines(ws, "PAIN") == {"2024-01": D("-1250.00")}

    [n] = windows(ws, "NOPAIN")
    assert n["savings"] == D("-3000")
    assert n["provider_amount"] == D("0")
    assert n["outcome"] == "pain_not_shared"
    assert gain_share_lines(ws, "NOPAIN") == {}


def test_failed_gate_withholds_a_gain_but_not_a_pain(ws):
    terms = contract(
        "GATE",
        gain_share={
            "settle_every": "month",
            "pain_share": True,
            "baselines": [
                {"effective_from": "2024-01", "value": "2.50", "reason": "contract baseline"},
                {"effective_from": "2024-02", "value": "2.30", "reason": "rebased"},
            ],
        },
    )
    ws.contract(with_gate(terms))
    ws.volumes(months("GATE", {"2024-01": "10000", "2024-02": "10000"}))
    # 0.70 is below the 0.80 target: the gate KPI fails in both months
    ws.kpis([("GATE", "sl", "2024-01", "0.70"), ("GATE", "sl", "2024-02", "0.70")])
    ws.settle("2024-01", "2024-02")

    jan, feb = windows(ws, "GATE")
    # Jan: B = 2.50 x 10,000 = 25,000, C = 24,000, S = +1,000 -> 500.00 earned, but gated to 0
    assert jan["savings"] == D("1000")
    assert jan["tiered_amount"] == D("500")
    assert jan["gated"] is True
    assert jan["provider_amount"] == D("0")
    assert jan["outcome"] == "gated"
    # Feb: B = 2.30 x 10,000 = 23,000, C = 24,000, S = -1,000 -> pain (gain tiers by default)
    # 1,000 x 0.50 = -500.00, credited although the gate failed
    assert feb["savings"] == D("-1000")
    assert feb["gated"] is False
    assert feb["provider_amount"] == D("-500.00")
    assert feb["baseline_reason"] == "rebased"
    assert gain_share_lines(ws, "GATE") == {"2024-02": D("-500.00")}


def test_gate_met_lets_the_gain_through(ws):
    ws.contract(with_gate(contract("GATEOK", gain_share={"settle_every": "month"})))
    ws.volumes(months("GATEOK", {"2024-01": "10000"}))
    ws.kpis([("GATEOK", "sl", "2024-01", "0.80")])  # exactly on target: met
    ws.settle("2024-01")
    # S = 25,000 - 24,000 = 1,000 -> 500.00
    assert gain_share_lines(ws, "GATEOK") == {"2024-01": D("500.00")}


def test_threshold_is_a_cliff_shared_from_exactly_the_threshold(ws):
    # threshold 4% of B. Every contract: 10,000 contacts, B = 2.50 x 10,000 = 25,000,
    # threshold = 0.04 x 25,000 = 1,000.00; only the rate differs.
    cliff = {"settle_every": "month", "threshold_pct": "0.04"}
    ws.contract(contract("BELOW", rate="2.4001", gain_share=cliff))  # C = 24,001.00, S = 999.00
    ws.contract(contract("AT", rate="2.40", gain_share=cliff))  # C = 24,000.00, S = 1,000.00
    ws.contract(contract("ABOVE", rate="2.3999", gain_share=cliff))  # C = 23,999.00, S = 1,001.00
    ws.volumes(
        months("BELOW", {"2024-01": "10000"})
        + months("AT", {"2024-01": "10000"})
        + months("ABOVE", {"2024-01": "10000"})
    )
    ws.settle("2024-01")

    [below] = windows(ws, "BELOW")
    assert below["threshold_amount"] == D("1000")
    assert below["savings"] == D("999")
    assert below["below_threshold"] is True
    # a cliff: nothing at all, not the part above a franchise
    assert below["tiered_amount"] == D("0")
    assert below["provider_amount"] == D("0")
    assert below["outcome"] == "below_threshold"

    [at] = windows(ws, "AT")
    assert at["below_threshold"] is False
    assert at["provider_amount"] == D("500.00")  # 1,000 x 0.50, the whole savings shared

    [above] = windows(ws, "ABOVE")
    assert above["provider_amount"] == D("500.50")  # 1,001 x 0.50

    assert gain_share_lines(ws, "BELOW") == {}
    assert gain_share_lines(ws, "AT") == {"2024-01": D("500.00")}
    assert gain_share_lines(ws, "ABOVE") == {"2024-01": D("500.50")}


# --------------------------------------------------------------------------- baselines, measures


def test_indexed_baseline_moves_with_the_contract_factor(ws):
    # CPI 2023-12 = 100, 2024-01 = 104. The review in 2024-02 (lag 1) reads 2024-01 against the
    # base 2023-12: change 4%, indexed share 1 -> factor 1.040000 from February.
    indexation = {
        "index_id": "CPI",
        "base_period": "2023-12",
        "first_review": "2024-02",
        "review_every_months": 12,
        "lag_months": 1,
        "applies_to": ["voice"],
    }
    for cid, indexed in (("IDX", True), ("NOIDX", False)):
        ws.contract(
            contract(
                cid,
                rate="2.40",
                gain_share={"baseline_indexed": indexed},
                indexation=indexation,
            )
        )
    ws.index_values([("CPI", "2023-12", "100"), ("CPI", "2024-01", "104")])
    units = {"2024-01": "10000", "2024-02": "10000", "2024-03": "10000"}
    ws.volumes(months("IDX", units) + months("NOIDX", units))
    ws.settle("2024-01", "2024-03")

    [w] = windows(ws, "IDX")
    # C: Jan 2.40 x 10,000 = 24,000.00; Feb and Mar at round(2.40 x 1.04, 4) = 2.4960:
    # 24,960.00 each -> C = 73,920.00
    assert w["actual_cost"] == D("73920")
    # B: Jan 2.50 x 10,000 x 1 = 25,000; Feb, Mar 2.50 x 10,000 x 1.04 = 26,000 -> 77,000
    assert w["baseline_cost"] == D("77000")
    # S = 77,000 - 73,920 = 3,080 -> 3,080 x 0.50 = 1,540.00
    assert w["savings"] == D("3080")
    assert w["provider_amount"] == D("1540.00")

    [n] = windows(ws, "NOIDX")
    # not indexed: B = 2.50 x 30,000 = 75,000; S = 75,000 - 73,920 = 1,080 -> 540.00
    assert n["baseline_cost"] == D("75000")
    assert n["provider_amount"] == D("540.00")


def settle_indexed_exact(ws) -> None:
    # CPI 2023-09 = 100, 2023-10 = 103.123457: the review in 2024-01 (lag 3) gives the change
    # 103.123457 / 100 - 1 = 0.03123457 and, at factor_scale 10, the factor 1.03123457.
    indexation = {
        "index_id": "CPI",
        "base_period": "2023-09",
        "first_review": "2024-01",
        "review_every_months": 12,
        "lag_months": 3,
        "factor_scale": 10,
        "applies_to": ["voice"],
    }
    total = {
        "measure": "total_cost",
        "settle_every": "month",
        "baseline_indexed": True,
        "threshold_pct": "0",
        "baselines": [{"effective_from": "2024-01", "value": "106065.940943"}],
        "tiers": [{"provider_share": "1.0"}],
    }
    ws.contract(contract("EXACT", rate="50.00", gain_share=total, indexation=indexation))
    ws.index_values([("CPI", "2023-09", "100"), ("CPI", "2023-10", "103.123457")])
    ws.volumes(months("EXACT", {"2024-01": "1000"}))
    ws.settle("2024-01")


def test_indexed_baseline_is_not_cut_before_the_line(ws):
    settle_indexed_exact(ws)
    [w] = windows(ws, "EXACT")
    # B = 106,065.940943 x 1.03123457 = 109,378.86499999999951 (6 + 8 places, all kept)
    assert w["baseline_cost"] == D("109378.86499999999951")
    # C = 1,000 x round(50.00 x 1.03123457, 4) = 1,000 x 51.5617 = 51,561.70
    assert w["actual_cost"] == D("51561.70")
    # S = 57,817.16499999999951; the provider's 100% rounds once, half up: 57,817.16. Cut to 12
    # places first, S would read 57,817.165000000000 and bill 57,817.17.
    assert w["savings"] == D("57817.16499999999951")
    assert w["provider_amount"] == D("57817.16")
    assert gain_share_lines(ws, "EXACT") == {"2024-01": D("57817.16")}


def test_dagster_metadata_shows_the_stored_gain_share_figures_unrounded(ws):
    # the readback rounded B, C and S to 2 places: 109,378.86 would hide the 0.00499999999951
    # that makes S bill 57,817.16 rather than 57,817.17 (test above)
    settle_indexed_exact(ws)
    with duckdb.connect(str(ws.db), read_only=True) as con:
        text = readback.md(con, readback.SUMMARIES["gain_share"]["windows"], 1).value
    assert "| 109,378.86499999999951 | 51,561.70 | 57,817.16499999999951 | 57,817.16 |" in text


def test_volume_measure_values_avoided_contacts(ws):
    volume = {
        "measure": "volume",
        "settle_every": "month",
        "value_per_unit": "2.50",
        "threshold_pct": "0.02",
        "baselines": [{"effective_from": "2024-01", "value": "105000", "reason": "calls/month"}],
        "tiers": [{"up_to": "20000", "provider_share": "0.40"}, {"provider_share": "0.20"}],
    }
    ws.contract(contract("VOL", rate="3.00", gain_share=volume))
    ws.volumes(months("VOL", {"2024-01": "95000", "2024-02": "104000"}))
    ws.settle("2024-01", "2024-02")

    jan, feb = windows(ws, "VOL")
    # Jan: S = (105,000 - 95,000) x 2.50 = 25,000.00; B = 105,000 x 2.50 = 262,500.00,
    # actual = 95,000 x 2.50 = 237,500.00 (the charges at 3.00 do not enter a volume measure)
    assert jan["measure"] == "volume"
    assert jan["baseline_cost"] == D("262500")
    assert jan["actual_cost"] == D("237500")
    assert jan["savings"] == D("25000")
    # threshold 0.02 x 262,500 = 5,250.00 < 25,000
    assert jan["threshold_amount"] == D("5250")
    # 20,000 x 0.40 = 8,000 + 5,000 x 0.20 = 1,000 -> 9,000.00
    assert jan["provider_amount"] == D("9000.00")
    # Feb: S = (105,000 - 104,000) x 2.50 = 2,500.00 < 5,250.00 -> below the threshold
    assert feb["savings"] == D("2500")
    assert feb["below_threshold"] is True
    assert feb["provider_amount"] == D("0")
    assert gain_share_lines(ws, "VOL") == {"2024-01": D("9000.00")}


def test_total_cost_measure_and_fixed_fee_in_scope(ws):
    # total_cost: B = the baseline per month; C = the scope's charges, here the voice line and
    # the fixed fee `platform`, which is in scope (a fee outside scope, `other`, is not counted).
    terms = contract(
        "TOTAL",
        rate="2.00",
        gain_share={
            "measure": "total_cost",
            "settle_every": "month",
            "scope": ["voice", "platform"],
            "baselines": [{"effective_from": "2024-01", "value": "30000", "reason": "run cost"}],
        },
        fixed_fees=[
            {"id": "platform", "amount": "5000.00"},
            {"id": "other", "amount": "777.00"},
        ],
    )
    ws.contract(terms)
    ws.volumes(months("TOTAL", {"2024-01": "10000"}))
    ws.settle("2024-01")
    [w] = windows(ws, "TOTAL")
    # C = 2.00 x 10,000 + 5,000.00 = 25,000.00; B = 30,000; S = 5,000 -> 5,000 x 0.50 = 2,500.00
    assert w["actual_cost"] == D("25000")
    assert w["baseline_cost"] == D("30000")
    assert w["provider_amount"] == D("2500.00")


def test_provider_amount_is_rounded_once_with_the_contract_mode(ws):
    # 1,001 contacts at 2.49 = 2,492.49; B = 2.50 x 1,001 = 2,502.50; S = 10.01;
    # threshold 0; 10.01 x 0.50 = 5.005 -> half_up 5.01, half_even 5.00
    one_month = {"settle_every": "month", "threshold_pct": "0"}
    ws.contract(contract("HALFUP", rate="2.49", gain_share=one_month))
    ws.contract(
        contract(
            "HALFEVEN",
            rate="2.49",
            gain_share=one_month,
            rounding={"mode": "half_even", "amount_scale": 2},
        )
    )
    ws.volumes(months("HALFUP", {"2024-01": "1001"}) + months("HALFEVEN", {"2024-01": "1001"}))
    ws.settle("2024-01")
    assert windows(ws, "HALFUP")[0]["tiered_amount"] == D("5.005")
    assert gain_share_lines(ws, "HALFUP") == {"2024-01": D("5.01")}
    assert gain_share_lines(ws, "HALFEVEN") == {"2024-01": D("5.00")}


def test_rebased_baseline_counts_only_once_agreed(ws):
    # Rebased from 2024-02 to 2.45 a contact, agreed on 2024-03-10. Known at 2024-03-01 the
    # window is measured on 2.50: S = (2.50 - 2.40) x 10,000 = 1,000 -> 500.00. Known today it
    # is measured on 2.45: S = (2.45 - 2.40) x 10,000 = 500 -> 250.00.
    terms = contract(
        "REBASE",
        gain_share={
            "settle_every": "month",
            "threshold_pct": "0",
            "baselines": [
                {"effective_from": "2024-01", "value": "2.50", "reason": "contract baseline"},
                {
                    "effective_from": "2024-02",
                    "value": "2.45",
                    "reason": "rebased: IVR",
                    "agreed_on": "2024-03-10",
                },
            ],
        },
    )
    ws.contract(terms)
    ws.volumes(months("REBASE", {"2024-01": "10000", "2024-02": "10000"}))
    ws.settle("2024-01", "2024-02")
    assert gain_share_lines(ws, "REBASE") == {"2024-01": D("500.00"), "2024-02": D("250.00")}
    assert windows(ws, "REBASE")[1]["baseline_reason"] == "rebased: IVR"

    result = ws.settle("2024-02", as_known_at="2024-03-01")
    [then] = ws.rows(
        "SELECT provider_amount, baseline_reason FROM gain_share WHERE run_id = ?",
        [result.run_id],
    )
    assert then["provider_amount"] == D("500.00")
    assert then["baseline_reason"] == "contract baseline"
