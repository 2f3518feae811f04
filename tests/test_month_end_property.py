"""Month-end correctness under change (issue 13, SPEC 5 and 12): random sequences of runs,
closes, changed inputs of closed months (interactions of a `period=` folder, volumes, KPIs) and
changed terms (a rate or a baseline from a past month). After every run, what the incremental
month-end stores is compared with a from-scratch settlement of the same final inputs and terms in
a fresh database:

- every stored table's current figures of the open months are the fresh ones (the adjustment
  lines aside: a fresh database has nothing closed to adjust);
- a closed month's rows never change, in any stored table;
- a closed month's lines plus every adjustment billed for them are the fresh figures;
- every adjustment names what changed: the term entries its closing run lacked, and each month
  up to it whose inputs differ from those its billed figures were computed from.

The expected reasons come from the test's own record of what it changed and which run saw what,
not from the stored digests.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, given, settings

from pipelines import engine, store, workflow
from pipelines.periods import parse_period
from tests.conftest import Workspace

CONTRACTS = ("P1", "P2")
LAST = 6  # 2024-01..2024-06; month 6 always stays open
SLA = "{metric: service_level, service_line: voice, threshold_s: 20, abandons: ignore}"

# A rate of 2.00 a contact, two KPIs on an at-risk pool (one reported in kpis/, one measured from
# interactions/, both with a repeat multiplier so that a month's result reaches into the next)
# and a quarterly unit-cost gain-share (a quarter's lines reach back over three months).
CONTRACT = """\
contract_id: {cid}
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: 2.00}}]}}
{pricing}
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  pool_pct: 2.0
  kpis:
    - {{id: quality, target: 0.80, allocation_pct: 0.50, repeat_multiplier: 2.0}}
    - {{id: sl, target: 0.80, allocation_pct: 0.50, repeat_multiplier: 2.0,
        measure: {sla}}}
gain_share:
  scope: [voice]
  measure: unit_cost
  settle_every: quarter
  baselines:
    - {{effective_from: 2024-01, value: 2.50, reason: contract baseline}}
{baselines}
  tiers: [{{provider_share: 0.50}}]
"""


def month(m: int) -> str:
    return f"2024-{m:02d}"


@dataclass
class State:
    """The inputs and terms on disk: what the test changed, independently of the engine."""

    units: dict = field(default_factory=dict)  # (contract, month) -> units
    quality: dict = field(default_factory=dict)  # (contract, month) -> KPI value
    slow: dict = field(default_factory=dict)  # (contract, month) -> calls answered after 30 s
    rate: dict = field(default_factory=dict)  # contract -> (from month, rate)
    baseline: dict = field(default_factory=dict)  # contract -> (from month, value)

    def interactions_of(self, m: int) -> tuple:
        # one folder per month holds both contracts' calls: a change to either changes its files
        return tuple(self.slow[(c, m)] for c in CONTRACTS)

    def inputs_of(self, c: str, m: int) -> dict[str, object]:
        return {
            "volumes": self.units[(c, m)],
            "kpis": self.quality[(c, m)],
            "interactions": self.interactions_of(m),
        }

    def term_reason(self, kind: str, c: str) -> str | None:
        entry = (self.rate if kind == "rate" else self.baseline).get(c)
        return None if entry is None else f"{kind} {entry[1]} from {month(entry[0])}"


def write_contracts(ws: Workspace, s: State) -> None:
    for c in CONTRACTS:
        pricing = baselines = ""
        if c in s.rate:
            m, rate = s.rate[c]
            pricing = (
                f"      - {{effective_from: {month(m)}, model: per_unit, "
                f"bands: [{{rate: {rate}}}], reason: '{s.term_reason('rate', c)}'}}"
            )
        if c in s.baseline:
            m, value = s.baseline[c]
            baselines = (
                f"    - {{effective_from: {month(m)}, value: {value}, "
                f"reason: '{s.term_reason('baseline', c)}'}}"
            )
        ws.contract(
            CONTRACT.format(cid=c, pricing=pricing, baselines=baselines, sla=SLA),
            name=f"{c.lower()}.yaml",
        )


def write_volumes(ws: Workspace, s: State) -> None:
    ws.volumes([(c, "voice", month(m), s.units[(c, m)]) for (c, m) in sorted(s.units)])


def write_kpis(ws: Workspace, s: State) -> None:
    ws.kpis([(c, "quality", month(m), s.quality[(c, m)]) for (c, m) in sorted(s.quality)])


def write_interactions(ws: Workspace, s: State, m: int) -> None:
    rows = []
    for c in CONTRACTS:
        arrived = dt.datetime(2024, m, 10, 9, 0, 0)
        wait = dt.timedelta(seconds=30 if s.slow[(c, m)] else 5)
        rows += [(c, "voice", arrived, arrived + wait, None, 100, True, 9)] * 2
    ws.interactions(rows, f"period={month(m)}/part.parquet")


def write_all(ws: Workspace, s: State) -> None:
    write_contracts(ws, s)
    write_volumes(ws, s)
    write_kpis(ws, s)
    for m in range(1, LAST + 1):
        write_interactions(ws, s, m)


def initial_state() -> State:
    s = State()
    for i, c in enumerate(CONTRACTS):
        for m in range(1, LAST + 1):
            s.units[(c, m)] = str(1000 + 100 * i + 10 * m)
            s.quality[(c, m)] = "0.85"
            s.slow[(c, m)] = False
    return s


def current_rows(ws: Workspace) -> dict[str, dict[tuple, list]]:
    """table -> (contract, month) -> its current rows (run_id left out), sorted."""
    out: dict[str, dict[tuple, list]] = {}
    for t in store.RESULT_TABLES:
        by_month: dict[tuple, list] = {}
        for r in ws.rows(f"SELECT * EXCLUDE (run_id) FROM current_{t.name}"):
            by_month.setdefault((r["contract_id"], r[t.period]), []).append(r)
        out[t.name] = {k: sorted(v, key=repr) for k, v in by_month.items()}
    return out


def closed_rows(ws: Workspace, closed: set[tuple]) -> dict[tuple, dict[str, list]]:
    """(contract, month) -> table -> the closing run's rows, run_id included."""
    out: dict[tuple, dict[str, list]] = {k: {} for k in closed}
    for t in store.RESULT_TABLES:
        for r in ws.rows(f"SELECT * FROM current_{t.name}"):
            key = (r["contract_id"], r[t.period])
            if key in out:
                out[key].setdefault(t.name, []).append(r)
    return {k: {t: sorted(v, key=repr) for t, v in tables.items()} for k, tables in out.items()}


def status(ws: Workspace) -> dict[str, dict[int, str]]:
    """contract -> month number -> open | closed, for every month settled."""
    out: dict[str, dict[int, str]] = {c: {} for c in CONTRACTS}
    if ws.db.exists():
        for r in ws.rows("SELECT contract_id, period, status FROM period_status"):
            out[r["contract_id"]][r["period"].month] = r["status"]
    return out


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.integers(0, 2), st.just(0)),
        # close: which contracts (0 both, 1 P1, 2 P2) and how many months
        st.tuples(st.just("close"), st.integers(0, 2), st.integers(1, 2)),
        # changes mostly to the early months, which are the closed ones
        st.tuples(
            st.sampled_from(["volumes", "kpis", "interactions"]),
            st.integers(1, 4),
            st.integers(0, 1),
        ),  # fmt: skip
        st.tuples(st.sampled_from(["rate", "baseline"]), st.integers(2, 5), st.integers(0, 1)),
    ),
    min_size=5,
    max_size=7,
)

UNITS = ["900", "1234", "1500"]
RATES = ["1.90", "2.10"]
BASELINES = ["2.20", "2.80"]


class MonthEnd:
    """The incremental month-end under test, with the test's record of what each run saw."""

    def __init__(self, factory, draw):
        self.factory = factory
        self.draw = draw
        self.ws = Workspace(factory.mktemp("incremental"))
        self.state = initial_state()
        write_all(self.ws, self.state)
        self.seen: dict[int, State] = {}  # run id -> the inputs and terms it read
        self.closing_state: dict[
            tuple, State
        ] = {}  # (contract, month) -> what its closing run read
        self.snapshots: dict[tuple, dict] = {}

    # ---- operations
    def run(self, extra: int) -> None:
        st_ = status(self.ws)
        closed = {c: sum(1 for v in st_[c].values() if v == "closed") for c in CONTRACTS}
        settled = max((max(st_[c], default=0) for c in CONTRACTS), default=0)
        lo = min(closed.values()) + 1
        hi = min(max(settled, lo) + extra, LAST)
        result = self.ws.settle(month(lo), to=month(hi))
        self.seen[result.run_id] = copy.deepcopy(self.state)
        self.check(result.run_id)

    def close(self, which: int, span: int) -> None:
        st_ = status(self.ws)
        chosen = [CONTRACTS[which - 1]] if which else list(CONTRACTS)
        for c in chosen:
            first = sum(1 for v in st_[c].values() if v == "closed") + 1
            last = min(first + span - 1, 5, max(st_[c], default=0))
            if last < first:
                continue
            workflow.approve(
                self.ws.db, parse_period(month(first)), parse_period(month(last)), {c}, by="t"
            )
            runs = {
                r["period"].month: r["run_id"]
                for r in self.ws.rows(
                    "SELECT period, run_id FROM current_run_periods WHERE contract_id = ?", [c]
                )
            }
            engine.close(self.ws.db, parse_period(month(first)), {c}, to=parse_period(month(last)))
            for m in range(first, last + 1):
                self.closing_state[(c, m)] = self.seen[runs[m]]
        closed = {(c, parse_period(month(m))) for c in CONTRACTS for m in self.closed_months(c)}
        fresh = {k: v for k, v in closed_rows(self.ws, closed).items() if k not in self.snapshots}
        self.snapshots.update(fresh)

    def change(self, kind: str, m: int, who: int) -> None:
        c = CONTRACTS[who]
        s = self.state
        if kind == "volumes":
            s.units[(c, m)] = self.draw(st.sampled_from(UNITS))
            write_volumes(self.ws, s)
        elif kind == "kpis":
            s.quality[(c, m)] = "0.70" if s.quality[(c, m)] == "0.85" else "0.85"
            write_kpis(self.ws, s)
        elif kind == "interactions":
            s.slow[(c, m)] = not s.slow[(c, m)]
            write_interactions(self.ws, s, m)
        elif kind == "rate":
            s.rate[c] = (m, self.draw(st.sampled_from(RATES)))
            write_contracts(self.ws, s)
        else:
            s.baseline[c] = (m, self.draw(st.sampled_from(BASELINES)))
            write_contracts(self.ws, s)

    def closed_months(self, c: str) -> list[int]:
        return sorted(m for m, v in status(self.ws)[c].items() if v == "closed")

    # ---- the properties
    def check(self, run_id: int) -> None:
        ws = self.ws
        st_ = status(ws)
        fresh = Workspace(self.factory.mktemp("fresh"))
        write_all(fresh, self.state)
        # each contract through its own last settled month: a month's rows may look ahead to
        # the end of the history a run computed (a gain-share window not settled yet)
        last = {c: max(st_[c]) for c in CONTRACTS}
        for m in sorted(set(last.values())):
            fresh.settle(month(1), to=month(m), contracts={c for c in CONTRACTS if last[c] == m})
        mine, theirs = current_rows(ws), current_rows(fresh)

        # the open months: every stored table as from scratch (adjustment lines aside)
        open_months = {
            (c, parse_period(month(m))) for c in CONTRACTS for m, v in st_[c].items() if v == "open"
        }
        for table in store.RESULT_TABLES:
            if table.name == "adjustments":
                continue
            for key in open_months:
                got = [r for r in mine[table.name].get(key, []) if not _adjustment(r)]
                want = [r for r in theirs[table.name].get(key, []) if not _adjustment(r)]
                assert got == want, (table.name, key)

        # the closed months: their rows never change
        now = closed_rows(ws, set(self.snapshots))
        for key, rows in self.snapshots.items():
            assert now[key] == rows, key

        # closed + adjustments = restated, line by line
        billed: dict[tuple, object] = {}
        for r in ws.rows(
            """
            SELECT contract_id, period, line_key, amount FROM current_invoice_lines
            WHERE line_type <> 'adjustment'
            UNION ALL
            SELECT a.contract_id, a.period, a.line_key, a.delta FROM adjustments a
            JOIN current_run_periods c
              ON c.run_id = a.run_id AND c.contract_id = a.contract_id
             AND c.period = a.billed_in_period
            """
        ):
            key = (r["contract_id"], r["period"], r["line_key"])
            billed[key] = billed.get(key, 0) + r["amount"]
        restated = {
            (r["contract_id"], r["period"], r["line_key"]): r["amount"]
            for r in fresh.rows("SELECT contract_id, period, line_key, amount FROM invoice_lines")
        }
        closed_keys = {k for k in self.snapshots}
        got = {k: v for k, v in billed.items() if k[:2] in closed_keys and v != 0}
        want = {k: v for k, v in restated.items() if k[:2] in closed_keys and v != 0}
        assert got == want

        # every adjustment of this run names what changed
        for a in ws.rows("SELECT * FROM adjustments WHERE run_id = ?", [run_id]):
            c, m = a["contract_id"], a["period"].month
            expected = self.expected_reasons(c, m)
            assert set(a["reason"].split("; ")) == expected, (a, expected)

    def expected_reasons(self, c: str, m: int) -> set[str]:
        """What changed for a closed month: the term entries in force for it that its closing run
        did not read, and each month up to it whose inputs differ from what the run its billed
        figures come from read (its closing run, or the latest closed invoice adjusting it)."""
        closing = self.closing_state[(c, m)]
        reasons = set()
        for kind, now_entry, then_entry in (
            ("rate", self.state.rate.get(c), closing.rate.get(c)),
            ("baseline", self.state.baseline.get(c), closing.baseline.get(c)),
        ):
            if now_entry is not None and now_entry[0] <= m and now_entry != then_entry:
                reasons.add(self.state.term_reason(kind, c))
        billed_with = self.billed_with(c, m)
        for m2 in range(1, m + 1):
            then, now = billed_with.inputs_of(c, m2), self.state.inputs_of(c, m2)
            for folder in ("interactions", "kpis", "volumes"):
                if then[folder] != now[folder]:
                    reasons.add(f"{folder} of {month(m2)} changed")
        return reasons

    def billed_with(self, c: str, m: int) -> State:
        rows = self.ws.rows(
            """
            SELECT max(a.run_id) FROM adjustments a
            JOIN period_status s
              ON s.contract_id = a.contract_id AND s.period = a.billed_in_period
             AND s.status = 'closed' AND s.closed_run_id = a.run_id
            WHERE a.contract_id = ? AND a.period = ?
            """,
            [c, parse_period(month(m))],
        )
        run = next(iter(rows[0].values()))
        return self.closing_state[(c, m)] if run is None else self.seen[run]


def _adjustment(row: dict) -> bool:
    return row.get("line_type") == "adjustment" or str(row.get("line_key", "")).startswith(
        ("adjustment:", "dispute:")
    )


@settings(
    max_examples=4,
    # no shrinking: each step settles twice (here and from scratch), and shrinking a failure
    # took over five minutes; the failing sequence is printed as drawn
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS, data=st.data())
def test_incremental_month_end_stores_what_a_fresh_settlement_stores(
    tmp_path_factory, operations, data
):
    me = MonthEnd(tmp_path_factory, data.draw)
    # January..March settled and January closed: every sequence starts with a closed month
    me.run(2)
    me.close(0, 1)
    for op, a, b in operations:
        if op == "run":
            me.run(a)
        elif op == "close":
            me.close(a, b)
        else:
            me.change(op, a, b)
    # a last run, so that every sequence ends with the properties checked after its changes
    me.run(0)
