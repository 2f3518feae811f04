"""The month-end cycle with a rebasing in arrears (SPEC 5): close, restate, adjust."""

from __future__ import annotations

from decimal import Decimal

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from pipelines.errors import SettleError

D = Decimal

# One service line at 2.00 a contact and a quarterly unit-cost gain-share: the provider keeps half
# of what it saves against a baseline cost per contact.
CONTRACT = """
contract_id: C1
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: 2.00}}]}}
{extra_pricing}
{commitments}
gain_share:
  scope: [voice]
  measure: unit_cost
  settle_every: quarter
  baselines:
    - {{effective_from: 2024-01, value: 2.50, reason: contract baseline}}
{extra_baselines}
  tiers: [{{provider_share: 0.50}}]
{beyond}
"""

# Terms beyond the month (SPEC 10) for the property test, so that its invariants cover their
# lines too: a quarterly commitment (a true-up when a quarter falls short), instalments, FX
# sharing on a moving rate, a pass-through cost and an annual credit cap. Contract years start in
# July, so the first one (2024-01..06 in the term) is settled on 2024-06, a month the test can
# close and restate: its credits (10% of the charges in the three failed months) exceed 2% of the
# half-year's charges, and the excess is returned.
BEYOND_LINE = """\
    commitments:
      - {effective_from: 2024-01, over: quarter, minimum_units: 2950}"""
BEYOND = """\
one_off_charges:
  - {id: transition, amount: 1000.00, first_period: 2024-02, instalments: 3}
pass_through:
  - {id: telco, margin_pct: 0.05}
fx_sharing: {delivery_currency: INR, base_rate: 0.0100, band_pct: 0.02, client_share: 0.50}
contract_year_start: 2024-07
service_credits:
  at_risk_pct: 0.10
  annual_cap_pct: 0.02
  kpis:
    - {id: sl, target: 0.80, allocation_pct: 1.0}"""


def beyond_inputs(ws) -> None:
    # 0.0098 .. 0.0109: inside the 2% band at first, then above it
    ws.fx_rates([("INR", f"2024-{m:02d}", str(D("0.0097") + D(m) / 10000)) for m in range(1, 13)])
    ws.pass_through([("C1", f"2024-{m:02d}", "telco", None, f"{100 + m}.00", None) for m in (2, 5)])
    ws.kpis(
        [("C1", "sl", f"2024-{m:02d}", "0.70" if m in (2, 3, 5) else "0.85") for m in range(1, 13)]
    )


REBASED_BASELINE = (
    "    - {effective_from: 2024-02, value: 2.20, reason: 'rebased: IVR in scope', "
    "agreed_on: 2024-05-02}"
)
REPRICED_MARCH = (
    "      - {effective_from: 2024-03, model: per_unit, bands: [{rate: 1.90}], "
    "reason: 'rate card correction', agreed_on: 2024-05-03}"
)


def write_contract(
    ws, extra_baselines: str = "", extra_pricing: str = "", beyond: bool = False
) -> None:
    ws.contract(
        CONTRACT.format(
            extra_baselines=extra_baselines,
            extra_pricing=extra_pricing,
            commitments=BEYOND_LINE if beyond else "",
            beyond=BEYOND if beyond else "",
        ),
        name="c1.yaml",
    )


def test_month_end_cycle_with_rebasing_in_arrears(ws):
    write_contract(ws)
    ws.volumes([("C1", "voice", f"2024-{m:02d}", "1000") for m in range(1, 8)])

    # Q1 settled and closed under the original baseline.
    first = ws.settle("2024-01", to="2024-03")
    ws.close("2024-01")
    ws.close("2024-02")
    ws.close("2024-03")
    # Q1: V = 3 x 1000 = 3000; C = 3000 x 2.00 = 6000.00; B = 3000 x 2.50 = 7500.00;
    # S = 1500.00; provider share 50% -> gain_share 750.00 on the March invoice.
    assert ws.lines("2024-03") == {"usage:voice": D("2000.00"), "gain_share": D("750.00")}
    closed_rows = ws.rows(
        "SELECT * FROM invoice_lines WHERE run_id = ? ORDER BY period, line_key", [first.run_id]
    )

    # The baseline is rebased from February, agreed after Q1 was closed; April is settled.
    write_contract(ws, extra_baselines=REBASED_BASELINE)
    second = ws.settle("2024-04")
    # Restated Q1: B = 1000 x 2.50 + 2 x 1000 x 2.20 = 6900.00; S = 6900 - 6000 = 900.00;
    # provider 450.00. Closed 750.00, so the April invoice carries 450 - 750 = -300.00.
    assert ws.lines("2024-04") == {
        "usage:voice": D("2000.00"),
        "adjustment:gain_share:2024-03": D("-300.00"),
    }
    adjustment = ws.rows("SELECT * FROM current_adjustments")
    assert len(adjustment) == 1
    row = adjustment[0]
    assert (row["period"].isoformat(), row["billed_in_period"].isoformat()) == (
        "2024-03-01",
        "2024-04-01",
    )
    assert (row["closed_amount"], row["restated_amount"], row["delta"]) == (
        D("750.00"),
        D("450.00"),
        D("-300.00"),
    )
    assert row["reason"] == "rebased: IVR in scope"
    assert row["run_id"] == second.run_id

    # The closed months are untouched, byte for byte, and stay current.
    assert (
        ws.rows(
            "SELECT * FROM invoice_lines WHERE run_id = ? ORDER BY period, line_key",
            [first.run_id],
        )
        == closed_rows
    )
    assert ws.lines("2024-03") == {"usage:voice": D("2000.00"), "gain_share": D("750.00")}

    # Rerunning April bills the same difference once, not twice.
    ws.settle("2024-04")
    assert ws.lines("2024-04")["adjustment:gain_share:2024-03"] == D("-300.00")

    # April is closed with its adjustment; a March price correction then arrives.
    ws.close("2024-04")
    write_contract(ws, extra_baselines=REBASED_BASELINE, extra_pricing=REPRICED_MARCH)
    ws.settle("2024-05")
    # March usage restated: 1000 x 1.90 = 1900.00 against 2000.00 closed -> -100.00.
    # Q1 again: C = 2000 + 2000 + 1900 = 5900.00; B = 6900.00; S = 1000.00; provider 500.00.
    # Billed so far: 750.00 closed - 300.00 (April, closed) = 450.00 -> +50.00 more.
    # April's own usage is restated too: 1000 x 1.90 = 1900.00 vs 2000.00 closed -> -100.00.
    assert ws.lines("2024-05") == {
        "usage:voice": D("1900.00"),
        "adjustment:usage:voice:2024-03": D("-100.00"),
        "adjustment:gain_share:2024-03": D("50.00"),
        "adjustment:usage:voice:2024-04": D("-100.00"),
    }


def test_a_run_over_closed_months_bills_on_the_next_open_month(ws):
    write_contract(ws)
    ws.volumes([("C1", "voice", f"2024-{m:02d}", "1000") for m in range(1, 5)])
    ws.settle("2024-01", to="2024-03")
    ws.close("2024-01", None)
    ws.close("2024-02")
    ws.close("2024-03")
    write_contract(ws, extra_baselines=REBASED_BASELINE)
    # Asking for Q1 alone restates it and settles April, the next open month, to carry it.
    result = ws.settle("2024-01", to="2024-03")
    assert result.written_months == 1
    assert ws.lines("2024-04")["adjustment:gain_share:2024-03"] == D("-300.00")


def test_as_known_at_rebuilds_the_closed_figures(ws):
    write_contract(ws, extra_baselines=REBASED_BASELINE)
    ws.volumes([("C1", "voice", f"2024-{m:02d}", "1000") for m in range(1, 5)])
    # Known on 2024-04-15 the rebasing (agreed 2024-05-02) did not exist: Q1 pays 750.00.
    ws.settle("2024-01", to="2024-03", as_known_at="2024-04-15")
    assert ws.lines("2024-03")["gain_share"] == D("750.00")
    ws.close("2024-01")
    ws.close("2024-02")
    ws.close("2024-03")
    # Rebuilt as known then: nothing to adjust. A dry run writes nothing.
    before = ws.db_bytes()
    rebuilt = ws.settle("2024-04", as_known_at="2024-04-15", dry_run=True)
    assert rebuilt.adjustments == []
    # Previewed as known now: the -300.00 that the next run will bill.
    preview = ws.settle("2024-04", dry_run=True)
    assert [(a["line_key"], a["delta"]) for a in preview.adjustments] == [
        ("gain_share", D("-300.00"))
    ]
    assert ws.db_bytes() == before


# --------------------------------------------------------------------------- property

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("settle"), st.integers(0, 2)),  # settle the next month(s)
        st.tuples(st.just("close"), st.just(0)),  # close the earliest open month
        st.tuples(st.just("rebase"), st.integers(2, 6)),  # a baseline change from month k
        st.tuples(st.just("reprice"), st.integers(2, 6)),  # a rate change from month k
    ),
    min_size=3,
    max_size=7,
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS, baseline=st.sampled_from(["2.10", "2.35", "2.80"]))
def test_closed_rows_never_change_and_adjustments_add_up(tmp_path_factory, operations, baseline):
    from tests.conftest import Workspace

    ws = Workspace(tmp_path_factory.mktemp("prop"))
    ws.volumes([("C1", "voice", f"2024-{m:02d}", str(900 + 37 * m)) for m in range(1, 13)])
    beyond_inputs(ws)
    extra_baselines, extra_pricing = "", ""
    write_contract(ws, beyond=True)
    settled, closed = 0, 0
    closed_snapshots: dict[int, list] = {}
    for op, arg in operations:
        if op == "settle" and settled < 9:
            last = min(settled + 1 + arg, 9)
            ws.settle(f"2024-{settled + 1:02d}", to=f"2024-{last:02d}")
            settled = last
        elif op == "settle":
            continue
        elif op == "close" and closed < settled:
            closed += 1
            ws.close(f"2024-{closed:02d}")
        elif op == "rebase":
            extra_baselines = (
                f"    - {{effective_from: 2024-{arg:02d}, value: {baseline}, reason: rebase}}"
            )
            write_contract(ws, extra_baselines, extra_pricing, beyond=True)
        elif op == "reprice":
            extra_pricing = (
                f"      - {{effective_from: 2024-{arg:02d}, model: per_unit, "
                "bands: [{rate: 1.95}]}"
            )
            write_contract(ws, extra_baselines, extra_pricing, beyond=True)
        # closed rows never change
        for run_id, rows in closed_snapshots.items():
            assert (
                ws.rows(
                    "SELECT * FROM invoice_lines WHERE run_id = ? "
                    "ORDER BY contract_id, period, line_key",
                    [run_id],
                )
                == rows
            )
        if ws.db.exists():
            for (run_id,) in [
                tuple(r.values())
                for r in ws.rows(
                    "SELECT DISTINCT closed_run_id FROM period_status WHERE status = 'closed'"
                )
            ]:
                closed_snapshots.setdefault(
                    run_id,
                    ws.rows(
                        "SELECT * FROM invoice_lines WHERE run_id = ? "
                        "ORDER BY contract_id, period, line_key",
                        [run_id],
                    ),
                )
    if closed == 0 or settled == closed:
        return
    # One more run of the next open month brings every closed line up to date.
    ws.settle(f"2024-{closed + 1:02d}")
    # Independent reference: the same final terms settled from scratch, nothing closed.
    fresh = Workspace(tmp_path_factory.mktemp("fresh"))
    fresh.volumes([("C1", "voice", f"2024-{m:02d}", str(900 + 37 * m)) for m in range(1, 13)])
    beyond_inputs(fresh)
    write_contract(fresh, extra_baselines, extra_pricing, beyond=True)
    fresh.settle("2024-01", to=f"2024-{closed:02d}")
    restated = {
        (r["period"], r["line_key"]): r["amount"]
        for r in fresh.rows("SELECT period, line_key, amount FROM current_invoice_lines")
    }
    billed = {
        (r["period"], r["line_key"]): r["amount"]
        for r in ws.rows(
            """
            SELECT period, line_key, sum(amount) AS amount FROM (
                SELECT period, line_key, amount FROM current_invoice_lines
                WHERE line_type <> 'adjustment' AND period <= ?
                UNION ALL
                SELECT a.period, a.line_key, a.delta FROM adjustments a
                JOIN current_run_periods c
                  ON c.run_id = a.run_id AND c.contract_id = a.contract_id
                 AND c.period = a.billed_in_period
            ) GROUP BY ALL HAVING sum(amount) <> 0
            """,
            [f"2024-{closed:02d}-01"],
        )
    }
    # closed amount + every adjustment billed for it = the restated amount, line by line
    assert billed == {k: v for k, v in restated.items() if v != 0}


def test_closing_an_unsettled_month_is_refused(ws):
    write_contract(ws)
    ws.volumes([("C1", "voice", "2024-01", "1000")])
    ws.settle("2024-01")
    try:
        ws.close("2024-02")
    except SettleError as exc:
        assert "has not been settled" in str(exc)
    else:
        raise AssertionError("closing an unsettled month must fail")
