"""KPIs measured from raw interactions (SPEC 6): pipelines/interactions.py, sql/interactions.sql
and sql/05_measures.sql, through to kpi_results and the credit lines.

Each month's interactions are few enough to count with a pencil; every count and value asserted is
worked out by hand in the comments beside it. Waits are written as arrival + so many seconds.
"""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from pipelines.errors import SettleError

D = Decimal

SL = "{metric: service_level, service_line: voice, threshold_s: 20, short_abandon_s: 5"

# One contract, one service line priced at 1.00 a unit, and one measured KPI per metric and
# abandon treatment (all at threshold 20 s, short abandons 5 s). Targets do not matter here.
MEASURES = f"""\
contract_id: M1
currency: GBP
start: 2024-01
end: 2024-12
service_lines:
  - id: voice
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: 1.00}}]}}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  pool_pct: 2.0
  kpis:
    - {{id: sl_ignore, target: 0.1, allocation_pct: 0.1, measure: {SL}, abandons: ignore}}}}
    - {{id: sl_failed, target: 0.1, allocation_pct: 0.1,
        measure: {SL}, abandons: count_as_failed}}}}
    - {{id: sl_short, target: 0.1, allocation_pct: 0.1, measure: {SL}, abandons: exclude_short}}}}
    - {{id: sl_within, target: 0.1, allocation_pct: 0.1,
        measure: {SL}, abandons: exclude_within_threshold}}}}
    - {{id: sl_met, target: 0.1, allocation_pct: 0.1, measure: {SL}, abandons: count_as_met}}}}
    - {{id: abandons, direction: lower_is_better, target: 0.9, allocation_pct: 0.1,
        measure: {{metric: abandon_rate, service_line: voice}}}}
    - {{id: abandons_long, direction: lower_is_better, target: 0.9, allocation_pct: 0.1,
        measure: {{metric: abandon_rate, service_line: voice, abandons: exclude_short,
                  short_abandon_s: 5}}}}
    - {{id: asa, direction: lower_is_better, target: 60, allocation_pct: 0.1,
        measure: {{metric: asa_s, service_line: voice}}}}
    - {{id: aht, direction: lower_is_better, target: 600, allocation_pct: 0.1,
        measure: {{metric: aht_s, service_line: voice}}}}
    - {{id: fcr, target: 0.1, allocation_pct: 0.1, measure: {{metric: fcr, service_line: voice}}}}
    - {{id: csat, target: 1, allocation_pct: 0.1, measure: {{metric: csat, service_line: voice}}}}
    - {{id: csat_top, target: 0.1, allocation_pct: 0.1,
        measure: {{metric: csat, service_line: voice, csat_top_box: 4}}}}
    - {{id: sl_no_data_fails, target: 0.1, allocation_pct: 0.1, no_data: fail,
        measure: {SL}, abandons: ignore}}}}
"""

T0 = "2024-01-10 09:00:00"


def at(seconds: str, base: str = T0) -> str:
    """`base` + seconds (text with up to six decimals), as an ISO timestamp."""
    whole, _, frac = seconds.partition(".")
    moment = dt.datetime.fromisoformat(base) + dt.timedelta(
        seconds=int(whole), microseconds=int((frac + "000000")[:6])
    )
    return moment.isoformat(sep=" ")


# January 2024: (arrived, answered, abandoned, handle_s, first_contact_resolved, csat)
JANUARY = [
    # answered
    (T0, at("5"), None, 100, True, 9),  # within 20 s
    (T0, at("20"), None, 200, True, 4),  # exactly 20.000000 s: within (the boundary second)
    (T0, at("20.000001"), None, None, False, 3),  # one microsecond over: not within
    (T0, at("30"), None, 301, None, None),  # not within
    # abandoned
    (T0, None, at("3"), None, None, None),  # short (<= 5 s), within 20 s
    (T0, None, at("5"), None, None, None),  # exactly 5 s: short, within 20 s
    (T0, None, at("10"), 999, None, None),  # within 20 s, not short; handle_s: not answered
    (T0, None, at("40"), None, None, None),  # not short, not within
    # neither answered nor abandoned (e.g. still queued at the cut-off): in no count
    (T0, None, None, None, None, None),
]
# Counts by hand: A = 4, A_T = 2 (5 s, 20 s), Ab = 4, Ab_short = 2 (3 s, 5 s),
# Ab_T = 3 (3 s, 5 s, 10 s).


def interactions(rows, contract="M1", line="voice"):
    return [(contract, line, *r) for r in rows]


@pytest.fixture
def measured(ws):
    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", m, "1000") for m in ("2024-01", "2024-02", "2024-03")])
    ws.interactions(interactions(JANUARY))
    return ws


def results(ws, period: str, contract: str = "M1") -> dict[str, dict]:
    rows = ws.rows(
        "SELECT * FROM current_kpi_results WHERE contract_id = ? AND strftime(period, '%Y-%m') = ?",
        [contract, period],
    )
    return {r["kpi_id"]: r for r in rows}


def test_every_metric_and_abandon_treatment(measured):
    measured.settle("2024-01")
    r = results(measured, "2024-01")
    assert {k: r[k]["source"] for k in r} == {k: "measured" for k in r}

    def fraction(kpi):
        return r[kpi]["numerator"], r[kpi]["denominator"], r[kpi]["value"]

    # ignore: A_T / A = 2 / 4 = 0.5
    assert fraction("sl_ignore") == (D(2), D(4), D("0.5"))
    # count_as_failed: A_T / (A + Ab) = 2 / 8 = 0.25
    assert fraction("sl_failed") == (D(2), D(8), D("0.25"))
    # exclude_short: A_T / (A + Ab - Ab_short) = 2 / (4 + 4 - 2) = 2 / 6 = 0.3333333.. -> 0.333333
    assert fraction("sl_short") == (D(2), D(6), D("0.333333"))
    # exclude_within_threshold: A_T / (A + Ab - Ab_T) = 2 / (8 - 3) = 2 / 5 = 0.4
    assert fraction("sl_within") == (D(2), D(5), D("0.4"))
    # count_as_met: (A_T + Ab_T) / (A + Ab) = (2 + 3) / 8 = 0.625
    assert fraction("sl_met") == (D(5), D(8), D("0.625"))
    # abandon_rate: Ab / (A + Ab) = 4 / 8 = 0.5
    assert fraction("abandons") == (D(4), D(8), D("0.5"))
    # abandon_rate, exclude_short: (Ab - Ab_short) / (A + Ab - Ab_short) = 2 / 6 -> 0.333333
    assert fraction("abandons_long") == (D(2), D(6), D("0.333333"))
    # asa_s: (5 + 20 + 20.000001 + 30) s / 4 answered = 75.000001 / 4 = 18.75000025 -> 18.750000
    assert fraction("asa") == (D("75.000001"), D(4), D("18.75"))
    # aht_s: answered with handle_s: 100 + 200 + 301 = 601 over 3 = 200.333333..
    # (the abandoned call's 999 and the answered call without handle_s are left out)
    assert fraction("aht") == (D(601), D(3), D("200.333333"))
    # fcr: true, true, false among the three non-null -> 2 / 3 = 0.6666666.. -> 0.666667 (half up)
    assert fraction("fcr") == (D(2), D(3), D("0.666667"))
    # csat: (9 + 4 + 3) / 3 = 16 / 3 = 5.333333..
    assert fraction("csat") == (D(16), D(3), D("5.333333"))
    # csat_top_box 4: csat >= 4 is 9 and 4 -> 2 / 3 -> 0.666667
    assert fraction("csat_top") == (D(2), D(3), D("0.666667"))


def test_values_are_exact_and_round_half_up_at_six_places(measured):
    # two calls answered after 0.500000 s and 0.500001 s: numerator 1.000001 s exactly (summed in
    # microseconds), mean 0.5000005 s -> 0.500001 half up (half even would give 0.500000, a float
    # mean 0.50000049999..)
    measured.interactions(interactions([(T0, at("0.5"), None), (T0, at("0.500001"), None)]))
    measured.settle("2024-01")
    asa = results(measured, "2024-01")["asa"]
    assert (asa["numerator"], asa["denominator"], asa["value"]) == (
        D("1.000001"),
        D(2),
        D("0.500001"),
    )


def test_the_boundary_second_counts_as_within(measured):
    """Answered exactly 20.000000 s after arrival is within a 20 s threshold; 20.000001 s is not.

    "80% within 20 seconds" means the wait did not exceed 20 s, the common workforce-management
    convention; the comparison is exact, in whole microseconds.
    """
    measured.interactions(
        interactions([(T0, at("20"), None), (T0, at("20.000001"), None)], contract="M1"),
        name="part.parquet",
    )
    measured.settle("2024-01")
    # A = 2, A_T = 1 (the 20.000000 s one): 1 / 2 = 0.5
    assert results(measured, "2024-01")["sl_ignore"]["value"] == D("0.5")


def test_exclusion_windows_leave_interactions_out(measured):
    measured.exclusions([
        # every KPI, 10:00 <= arrived < 11:00 on the 5th
        ("M1", None, "2024-02", "outage", "2024-02-05 10:00:00", "2024-02-05 11:00:00"),
        # sl_ignore only, two overlapping windows on the 6th: 10:00-11:00 and 10:30-11:30
        ("M1", "sl_ignore", "2024-02", "a", "2024-02-06 10:00:00", "2024-02-06 11:00:00"),
        ("M1", "sl_ignore", "2024-02", "b", "2024-02-06 10:30:00", "2024-02-06 11:30:00"),
    ])  # fmt: skip
    feb = [
        # a: one microsecond before the window: counted; within (10 s)
        ("2024-02-05 09:59:59.999999", at("10", "2024-02-05 09:59:59.999999"), None),
        # b: at starts_at exactly: inside (starts_at is inclusive) -> left out of every KPI
        ("2024-02-05 10:00:00", at("60", "2024-02-05 10:00:00"), None),
        # c: inside -> left out of every KPI
        ("2024-02-05 10:30:00", None, at("50", "2024-02-05 10:30:00")),
        # d: at ends_at exactly: outside (ends_at is exclusive) -> counted; not within (30 s)
        ("2024-02-05 11:00:00", at("30", "2024-02-05 11:00:00"), None),
        # e: inside both overlapping windows -> out of sl_ignore only, and counted ONCE elsewhere
        ("2024-02-06 10:45:00", at("40", "2024-02-06 10:45:00"), None),
        # f: outside -> counted; within (1 s)
        ("2024-02-06 12:00:00", at("1", "2024-02-06 12:00:00"), None),
    ]
    measured.interactions(interactions(feb), name="february.parquet")
    measured.settle("2024-02")
    r = results(measured, "2024-02")
    # sl_ignore counts a, d, f: A = 3, A_T = 2 (a, f) -> 2 / 3 = 0.666667
    assert (r["sl_ignore"]["numerator"], r["sl_ignore"]["denominator"]) == (D(2), D(3))
    assert r["sl_ignore"]["value"] == D("0.666667")
    # sl_failed counts a, d, e, f: A = 4, A_T = 2, Ab = 0 (c is out) -> 2 / 4 = 0.5
    # (e counted twice would give 2 / 5; c counted would give 2 / 5 too)
    assert (r["sl_failed"]["numerator"], r["sl_failed"]["denominator"]) == (D(2), D(4))
    assert r["sl_failed"]["value"] == D("0.5")
    # a window does not excuse the month: the KPIs are assessed on what is left
    assert not r["sl_ignore"]["excused"]


def test_a_month_without_interactions_has_no_data(measured):
    measured.settle("2024-01", to="2024-03")
    march = results(measured, "2024-03")
    # nothing arrived in March: denominator 0, no value
    assert (march["sl_ignore"]["numerator"], march["sl_ignore"]["denominator"]) == (D(0), D(0))
    assert march["sl_ignore"]["value"] is None
    assert march["sl_ignore"]["status"] == "no_data"
    assert march["sl_ignore"]["met"] is None
    # the same month with `no_data: fail` is a failure
    assert march["sl_no_data_fails"]["status"] == "failed"
    assert march["sl_no_data_fails"]["met"] is False


# --------------------------------------------------------------------------- end to end: a credit

CREDIT = """\
contract_id: E1
currency: GBP
start: 2024-01
end: 2024-12
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.00}]}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  pool_pct: 1.0
  kpis:
    - id: sl_80_20
      target: 0.80
      allocation_pct: 0.50
      credit: {model: binary}
      measure: {metric: service_level, service_line: voice, threshold_s: 20,
                abandons: count_as_failed}
"""


def test_a_failing_measured_kpi_drives_a_credit(ws):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", m, "10000") for m in ("2024-01", "2024-02")])
    jan, feb = "2024-01-15 10:00:00", "2024-02-15 10:00:00"
    ws.interactions(
        interactions(
            # January: 4 answered at 5 s, 1 abandoned at 30 s -> 4 / (4 + 1) = 0.8: on target, met
            [(jan, at("5", jan), None)] * 4
            + [(jan, None, at("30", jan))]
            # February: 3 answered at 5 s, 1 at 25 s, 1 abandoned -> 3 / 5 = 0.6 < 0.80: failed
            + [(feb, at("5", feb), None)] * 3
            + [(feb, at("25", feb), None), (feb, None, at("30", feb))],
            contract="E1",
        )
    )
    ws.settle("2024-01", to="2024-02")
    jan_r, feb_r = (
        results(ws, "2024-01", "E1")["sl_80_20"],
        results(ws, "2024-02", "E1")["sl_80_20"],
    )
    assert (jan_r["value"], jan_r["status"], jan_r["source"]) == (D("0.8"), "met", "measured")
    assert (feb_r["value"], feb_r["status"], feb_r["source"]) == (D("0.6"), "failed", "measured")
    # charges 10,000 x 1.00 = 10,000.00; at risk 10% = 1,000.00; x allocation 0.50 x binary 1
    # x multiplier 1 = 500.00, credited (negative); January has no credit
    assert "credit:sl_80_20" not in ws.lines("2024-01", "E1")
    assert ws.lines("2024-02", "E1")["credit:sl_80_20"] == D("-500.00")


# --------------------------------------------------------------------------- validation


def test_answered_and_abandoned_both_set_is_refused(ws):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    t = "2024-01-15 10:00:00"
    ws.interactions(
        interactions(
            [(t, at("5", t), None), (t, at("5", t), at("6", t)), (t, None, at("7", t))],
            contract="E1",
        ),
        name="bad.parquet",
    )
    with pytest.raises(SettleError) as raised:
        ws.settle("2024-01")
    message = str(raised.value)
    # the file (as the other inputs name theirs), the column, the count, the rule, the first row
    assert message.startswith("data/interactions/bad.parquet: column answered_at, abandoned_at: ")
    assert "1 row(s) break the rule 'an interaction is answered or abandoned, not both'" in message
    assert "first: row 1 (contract_id=E1, service_line_id=voice, " in message
    # stopped before anything was computed: nothing was written
    assert not ws.db.exists() or ws.rows("SELECT table_name FROM duckdb_tables()") == []


def test_the_command_exits_1_naming_file_and_rule(ws, monkeypatch, capfd):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    t = "2024-01-15 10:00:00"
    ws.interactions(interactions([(t, at("5", t), at("6", t))], contract="E1"), name="bad.parquet")
    args = ["settle", "validate", "--contracts", str(ws.contracts_dir), "--data", str(ws.data_dir)]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exited:
        cli.entry()
    assert exited.value.code == 1
    err = capfd.readouterr().err
    assert "data/interactions/bad.parquet" in err
    assert "an interaction is answered or abandoned, not both" in err
    assert "Traceback" not in err


T = "2024-01-15 10:00:00"
LATER = at("5", T)


def _write(ws, columns: dict[str, pa.Array]) -> None:
    folder = ws.data_dir / "interactions"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "bad.parquet")


def _ts(*values):
    return pa.array(
        [dt.datetime.fromisoformat(v) if v else None for v in values], pa.timestamp("us")
    )


BAD_ROWS = [
    # (case, rows (arrived, answered, abandoned, handle_s, fcr, csat), column, rule)
    ("answered_before_arrival", [(LATER, T, None)], "answered_at",
     "answered_at must not be before arrived_at"),
    ("abandoned_before_arrival", [(LATER, None, T)], "abandoned_at",
     "abandoned_at must not be before arrived_at"),
    ("negative_handle", [(T, LATER, None, -1)], "handle_s", "handle_s must be >= 0"),
    ("csat_11", [(T, LATER, None, 100, True, 11)], "csat", "csat must be between 1 and 10"),
    ("csat_0", [(T, LATER, None, 100, True, 0)], "csat", "csat must be between 1 and 10"),
    ("before_the_term", [("2023-12-31 23:59:59", None, None)], "arrived_at",
     "arrived_at must fall inside the contract term (start..end)"),
]  # fmt: skip


@pytest.mark.parametrize("case, rows, column, rule", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_row_rules(ws, case, rows, column, rule):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    ws.interactions(interactions([(T, LATER, None)] + rows, contract="E1"), name="bad.parquet")
    with pytest.raises(SettleError) as raised:
        ws.settle("2024-01")
    message = str(raised.value)
    assert message.startswith(f"data/interactions/bad.parquet: column {column}: 1 row(s) ")
    assert f"break the rule '{rule}'; first: row 1 (" in message


def test_value_rules_hold_without_parquet_statistics(ws):
    """handle_s and csat are checked from the footers' min/max when the writer kept statistics,
    row by row when it did not: a bad value is caught either way."""
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    folder = ws.data_dir / "interactions"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "contract_id": pa.array(["E1", "E1"]),
        "service_line_id": pa.array(["voice", "voice"]),
        "arrived_at": _ts(T, T),
        "answered_at": _ts(LATER, LATER),
        "csat": pa.array([5, 11], pa.int8()),
    })  # fmt: skip
    pq.write_table(table, folder / "bad.parquet", write_statistics=False)
    with pytest.raises(
        SettleError,
        match=r"bad.parquet: column csat: 1 row\(s\) break the rule "
        r"'csat must be between 1 and 10'; first: row 1 \(",
    ):
        ws.settle("2024-01")


def test_hive_period_folders_hold_their_month_only(ws):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", m, "10000") for m in ("2024-01", "2024-02")])
    feb = "2024-02-01 00:00:00"
    # a whole month per folder, as providers deliver them: accepted (proven from the footers)
    ws.interactions([("E1", "voice", T, LATER)], name="period=2024-01/part.parquet")
    ws.interactions([("E1", "voice", feb, at("5", feb))], name="period=2024-02/part.parquet")
    ws.settle("2024-01", to="2024-02")
    # a January call filed under February is refused, naming the file and the row
    ws.interactions(
        [("E1", "voice", feb, at("5", feb)), ("E1", "voice", "2024-01-31 23:59:59.999999")],
        name="period=2024-02/part.parquet",
    )
    with pytest.raises(SettleError) as raised:
        ws.settle("2024-02")
    assert str(raised.value) == (
        "data/interactions/period=2024-02/part.parquet: column arrived_at: 1 row(s) break the "
        "rule 'arrived_at must fall in the month of its folder period=2024-02'; first: row 1 "
        "(arrived_at=2024-01-31 23:59:59.999999)."
    )


def test_unknown_contract_and_service_line(ws):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    ws.interactions([("E1", "voice", T, LATER), ("E1", "chat", T, LATER), ("E1", "chat", T)])
    with pytest.raises(
        SettleError,
        match=r"column service_line_id: 2 row\(s\) break the rule "
        r"'service_line_id must be a service line of its contract'; "
        r"first: row 1 \(contract_id=E1, service_line_id=chat",
    ):
        ws.settle("2024-01")
    ws.interactions([("E1", "voice", T, LATER), ("X9", "voice", T, LATER)])
    with pytest.raises(
        SettleError,
        match=r"column contract_id: 1 row\(s\) break the rule "
        r"'contract_id must be a contract in the contracts folder'",
    ):
        ws.settle("2024-01")


def test_uncastable_values_and_lossy_types(ws):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    # arrived_at given as text: parsed row by row; "yesterday" does not parse
    _write(ws, {
        "contract_id": pa.array(["E1", "E1"]),
        "service_line_id": pa.array(["voice", "voice"]),
        "arrived_at": pa.array([T, "yesterday"]),
    })  # fmt: skip
    with pytest.raises(SettleError) as raised:
        ws.settle("2024-01")
    assert str(raised.value) == (
        "data/interactions/bad.parquet: column arrived_at: 1 row(s) break the rule "
        "'values must cast to the column's type'; first: row 1 (arrived_at 'yesterday' does "
        "not cast to TIMESTAMP)."
    )
    # a float for whole seconds is refused from the file's schema, before any row is read
    _write(ws, {
        "contract_id": pa.array(["E1"]),
        "service_line_id": pa.array(["voice"]),
        "arrived_at": _ts(T),
        "handle_s": pa.array([12.5]),
    })  # fmt: skip
    with pytest.raises(
        SettleError,
        match=r"bad.parquet: column handle_s is DOUBLE; handle_s "
        r"takes whole numbers \(rule: column type\)",
    ):
        ws.settle("2024-01")
    # an unknown column
    _write(ws, {
        "contract_id": pa.array(["E1"]),
        "service_line_id": pa.array(["voice"]),
        "arrived_at": _ts(T),
        "queue": pa.array(["q1"]),
    })  # fmt: skip
    with pytest.raises(SettleError, match=r"unknown column\(s\) queue"):
        ws.settle("2024-01")


def test_text_and_narrow_types_that_cast_exactly_are_accepted(ws):
    ws.contract(CREDIT)
    ws.volumes([("E1", "voice", "2024-01", "10000")])
    # timestamps as text, handle_s as BIGINT, csat as text: every value casts
    _write(ws, {
        "contract_id": pa.array(["E1", "E1"]),
        "service_line_id": pa.array(["voice", "voice"]),
        "arrived_at": pa.array([T, T]),
        "answered_at": pa.array([at("20", T), at("21", T)]),
        "handle_s": pa.array([60, 120], pa.int64()),
        "csat": pa.array(["5", None]),
    })  # fmt: skip
    ws.settle("2024-01")
    # A = 2, A_T = 1 (20 s) -> 1 / 2 = 0.5
    assert results(ws, "2024-01", "E1")["sl_80_20"]["value"] == D("0.5")
