"""Runs (SPEC 9): reruns are idempotent and kept in the history, every run records what it read,
a range is one run, closed months are never rewritten, a second writer fails clearly and a killed
run leaves the database as it was.

The contract is one per-unit line at 2.00 a contact, so every amount is units x 2.00.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from decimal import Decimal as D
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines import cli, engine
from tests.conftest import Workspace

SETTLE = Path(sys.executable).parent / "settle"

CONTRACT = """\
contract_id: C1
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 2.00}]}
fixed_fees:
  - {id: admin, amount: 100.00}
"""

SECOND = """\
contract_id: C2
currency: EUR
start: 2024-01
service_lines:
  - id: chat
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.50}]}
"""

# Every per-run result table, with an order that makes its rows comparable between runs.
RESULT_TABLES = {
    "invoice_lines": "contract_id, period, sort_order, line_key",
    "charge_lines": "contract_id, period, sort_order, line_key",
    "charge_bands": "contract_id, period, service_line_id, band",
    "invoice_reconciliation": "contract_id, period, line_key",
}


def setup(ws: Workspace) -> None:
    ws.contract(CONTRACT)
    ws.contract(SECOND)
    ws.volumes(
        [
            ("C1", "voice", "2024-01", "100"),
            ("C1", "voice", "2024-02", "150"),
            ("C2", "chat", "2024-01", "40"),
        ]
    )


def run_rows(ws: Workspace, table: str, run_id: int) -> list[tuple]:
    """A run's rows of a result table without the run id, as exact Python values."""
    with duckdb.connect(str(ws.db), read_only=True) as con:
        return con.execute(
            f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = ? "
            f"ORDER BY {RESULT_TABLES.get(table, 'ALL')}",
            [run_id],
        ).fetchall()


def cli_run(monkeypatch, ws: Workspace, *args: str) -> int:
    """`settle run ...` through the console script's entry point; returns the exit code."""
    common = ["--contracts", str(ws.contracts_dir), "--data", str(ws.data_dir), "--db", str(ws.db)]
    monkeypatch.setattr(sys, "argv", ["settle", "run", *common, *args])
    try:
        cli.entry()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# --------------------------------------------------------------------------- reruns


def test_a_rerun_gives_identical_lines_and_both_runs_stay_in_the_history(ws):
    setup(ws)
    first = ws.settle("2024-01")
    second = ws.settle("2024-01")
    assert (first.run_id, second.run_id) == (1, 2)

    for table in RESULT_TABLES:
        assert run_rows(ws, table, 2) == run_rows(ws, table, 1), table
    assert ws.one("SELECT count(*) FROM settlement_runs") == 2
    # C1: usage 100 x 2.00 = 200.00 and admin 100.00; C2: 40 x 1.50 = 60.00 -> 3 lines a run
    assert ws.rows(
        "SELECT run_id, count(*) AS n FROM invoice_lines GROUP BY run_id ORDER BY run_id"
    ) == [{"run_id": 1, "n": 3}, {"run_id": 2, "n": 3}]
    assert ws.rows("SELECT DISTINCT run_id FROM current_invoice_lines") == [{"run_id": 2}]
    assert ws.lines("2024-01", "C1") == {"usage:voice": D("200.00"), "fixed:admin": D("100.00")}
    assert ws.lines("2024-01", "C2") == {"usage:chat": D("60.00")}


def test_each_run_records_the_hash_of_every_config_and_input_file(ws):
    setup(ws)
    ws.kpis([])
    ws.settle("2024-01", contracts={"C1"})
    [run] = ws.rows("SELECT contracts, config_sha256, input_sha256 FROM settlement_runs")

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert run["contracts"] == ["C1"]
    assert run["config_sha256"] == {"C1": sha(ws.contracts_dir / "c1.yaml")}
    assert run["input_sha256"] == {
        "kpis/part.parquet": sha(ws.data_dir / "kpis/part.parquet"),
        "volumes/part.parquet": sha(ws.data_dir / "volumes/part.parquet"),
    }

    # a changed input file is a changed hash on the next run
    ws.volumes([("C1", "voice", "2024-01", "101")])
    ws.settle("2024-01", contracts={"C1"})
    hashes = ws.rows("SELECT input_sha256 FROM settlement_runs ORDER BY run_id")
    before, after = (h["input_sha256"]["volumes/part.parquet"] for h in hashes)
    assert before != after


def test_a_range_is_one_run(ws, monkeypatch, capsys):
    setup(ws)
    assert cli_run(monkeypatch, ws, "--period", "2024-01", "--to", "2024-03") == 0
    assert "run 1 (settle)" in capsys.readouterr().out
    [run] = ws.rows("SELECT run_id, periods, period_from, period_to FROM settlement_runs")
    assert run["periods"] == "2024-01..2024-03"
    months = ws.rows(
        "SELECT run_id, contract_id, strftime(period, '%Y-%m') AS month FROM run_periods "
        "ORDER BY contract_id, period"
    )
    assert [(m["run_id"], m["contract_id"], m["month"]) for m in months] == [
        (1, "C1", "2024-01"),
        (1, "C1", "2024-02"),
        (1, "C1", "2024-03"),
        (1, "C2", "2024-01"),
        (1, "C2", "2024-02"),
        (1, "C2", "2024-03"),
    ]
    # February: 150 x 2.00 = 300.00; March has no volumes: the fee alone
    assert ws.lines("2024-02", "C1") == {"usage:voice": D("300.00"), "fixed:admin": D("100.00")}
    assert ws.lines("2024-03", "C1") == {"fixed:admin": D("100.00")}


# --------------------------------------------------------------------------- closed months


def test_the_run_table_prints_four_place_amounts_as_stored(ws, monkeypatch, capsys):
    # amount_scale 4: 1,001 contacts x 1.2345 = 1,235.7345 (exact, one line). The table printed
    # it with `:,.2f` as 1,235.73.
    ws.contract(
        """\
contract_id: C4
currency: GBP
start: 2024-01
rounding: {mode: half_up, amount_scale: 4, rate_scale: 4}
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 1.2345}]}
"""
    )
    ws.volumes([("C4", "voice", "2024-01", "1001")])
    assert cli_run(monkeypatch, ws, "--period", "2024-01") == 0
    out = capsys.readouterr().out
    assert "1,235.7345" in out and "1,235.73 " not in out


def test_a_run_of_many_invoices_prints_its_totals_per_month(ws, monkeypatch, capsys):
    # two contracts x two months = 4 invoices, over a limit of 3: the run prints totals per month
    # and currency. C1: 1,000 and 1,500 voice at 2.00 = 2,000.00 and 3,000.00; C2: 400 and 600
    # chat at 1.50 = 600.00 and 900.00 (both GBP): 2024-01 2,600.00, 2024-02 3,900.00
    for cid, line, rate in (("C1", "voice", "2.00"), ("C2", "chat", "1.50")):
        ws.contract(
            f"contract_id: {cid}\ncurrency: GBP\nstart: 2024-01\nservice_lines:\n"
            f"  - id: {line}\n    pricing:\n"
            f"      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: {rate}}}]}}\n"
        )
    ws.volumes(
        [
            ("C1", "voice", "2024-01", "1000"),
            ("C1", "voice", "2024-02", "1500"),
            ("C2", "chat", "2024-01", "400"),
            ("C2", "chat", "2024-02", "600"),
        ]
    )
    monkeypatch.setattr(engine, "SUMMARY_INVOICES", 3)
    assert cli_run(monkeypatch, ws, "--period", "2024-01", "--to", "2024-02", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["invoice_count"] == 4 and not document["invoices_listed"]
    assert document["invoices"] == []
    assert [(t["period"], t["currency"], t["invoices"], t["amount_due"]) for t in
            document["totals"]] == [
        ("2024-01", "GBP", 2, "2600.0000"),
        ("2024-02", "GBP", 2, "3900.0000"),
    ]  # fmt: skip
    assert cli_run(monkeypatch, ws, "--period", "2024-01", "--to", "2024-02") == 0
    out = capsys.readouterr().out
    assert "2,600.00" in out and "3,900.00" in out
    assert "4 invoices over 4 contract-months, totalled per month above" in out
    # the stored invoices are all there
    assert ws.rows("SELECT count(*) AS n FROM current_invoice_summary") == [{"n": 4}]


def test_a_closed_month_is_never_rewritten_by_a_rerun(ws):
    setup(ws)
    ws.settle("2024-01", "2024-02")
    ws.close("2024-01")
    closed = {table: run_rows(ws, table, 1) for table in RESULT_TABLES}
    status = ws.rows("SELECT * FROM period_status ORDER BY contract_id, period")

    # January's volume is corrected from 100 to 110 after the close, and January is rerun
    ws.volumes(
        [
            ("C1", "voice", "2024-01", "110"),
            ("C1", "voice", "2024-02", "150"),
            ("C2", "chat", "2024-01", "40"),
        ]
    )
    rerun = ws.settle("2024-01")
    assert rerun.run_id == 2

    assert {table: run_rows(ws, table, 1) for table in RESULT_TABLES} == closed
    assert ws.rows("SELECT * FROM period_status ORDER BY contract_id, period") == status
    # the current January invoice keeps the closing figures: 100 x 2.00 = 200.00
    assert ws.lines("2024-01", "C1") == {"usage:voice": D("200.00"), "fixed:admin": D("100.00")}
    assert ws.rows(
        "SELECT DISTINCT run_id FROM current_invoice_lines WHERE period = '2024-01-01'"
    ) == [{"run_id": 1}]
    # the restatement (110 x 2.00 = 220.00, 20.00 more) is billed on the next open month
    assert ws.lines("2024-02", "C1") == {
        "usage:voice": D("300.00"),
        "fixed:admin": D("100.00"),
        "adjustment:usage:voice:2024-01": D("20.00"),
    }
    # run 2 stored no January rows of its own
    assert (
        ws.one("SELECT count(*) FROM invoice_lines WHERE run_id = 2 AND period = '2024-01-01'") == 0
    )


# --------------------------------------------------------------------------- concurrency, kills

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
con.close()
"""


def test_a_second_writer_fails_clearly_and_changes_nothing(ws, monkeypatch, capfd):
    setup(ws)
    ws.settle("2024-01")
    before = ws.db_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ws.db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("SETTLE_LOCK_WAIT_S", "1")
        assert cli_run(monkeypatch, ws, "--period", "2024-02") == 1
    finally:
        holder.stdin.close()
        holder.wait()
    out, err = capfd.readouterr()
    [error] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "database is in use by another Settle run" in error
    assert f"(process {holder.pid})" in error
    assert "Nothing was written" in error
    assert "Traceback" not in out + err
    assert ws.db_bytes() == before


def test_a_killed_run_leaves_the_database_as_it_was(ws):
    setup(ws)
    ws.settle("2024-01")
    before = ws.db_bytes()
    lines = []
    with subprocess.Popen(
        [
            str(SETTLE), "run",
            "--contracts", str(ws.contracts_dir), "--data", str(ws.data_dir), "--db", str(ws.db),
            "--period", "2024-02", "--to", "2030-12",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as run:  # fmt: skip
        # kill -9 mid-transaction: the pricing SQL has run, nothing is stored or committed yet
        for line in run.stderr:
            lines.append(line)
            if line.strip().startswith("04_pricing"):
                run.kill()
                break
        run.wait()
    assert run.returncode == -9, "".join(lines)

    assert ws.db_bytes() == before
    assert ws.rows("SELECT run_id FROM settlement_runs") == [{"run_id": 1}]
    assert ws.rows("SELECT DISTINCT run_id FROM invoice_lines") == [{"run_id": 1}]
    # and the next run carries on from there
    assert ws.settle("2024-02").run_id == 2


# --------------------------------------------------------------------------- property


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    units=st.lists(
        st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=3,
    ),
    rate=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
)
# found by the property: charges x share x FX move passed 10^14, div_round's input limit
@example(units=[D("47444.633")], rate=D("99.9996"))
def test_rerunning_the_same_request_stores_byte_identical_lines(units, rate):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        ws.contract(
            "contract_id: P1\ncurrency: GBP\nstart: 2024-01\nservice_lines:\n  - id: voice\n"
            "    pricing:\n      - effective_from: 2024-01\n        model: graduated\n"
            f"        bands: [{{up_to: 1000, rate: {rate}}}, {{rate: 0.5}}]\n"
            "        minimum_units: 10\n"
        )
        # the terms beyond the month too (SPEC 10): a commitment, instalments, pass-through,
        # FX sharing and an annual credit cap
        ws.contract(
            "contract_id: P2\ncurrency: GBP\nstart: 2024-01\nend: 2024-03\n"
            "service_lines:\n  - id: voice\n    pricing:\n"
            f"      - {{effective_from: 2024-01, model: per_unit, bands: [{{rate: {rate}}}]}}\n"
            "    commitments:\n"
            "      - {effective_from: 2024-01, over: quarter, minimum_charge: 1000.00}\n"
            "one_off_charges:\n"
            "  - {id: setup, amount: 100.00, first_period: 2024-01, instalments: 7}\n"
            "pass_through:\n  - {id: telco, margin_pct: 0.07}\n"
            "fx_sharing: {delivery_currency: INR, base_rate: 0.0100, band_pct: 0.01, "
            "client_share: 0.50}\n"
            "service_credits:\n  at_risk_pct: 0.10\n  annual_cap_pct: 0.03\n"
            "  kpis:\n    - {id: sl, target: 0.80, allocation_pct: 1.0}\n"
        )
        months = [f"2024-{m:02d}" for m in range(1, len(units) + 1)]
        ws.volumes(
            [("P1", "voice", m, str(u)) for m, u in zip(months, units, strict=True)]
            + [("P2", "voice", m, str(u)) for m, u in zip(months, units, strict=True)]
        )
        ws.kpis([("P2", "sl", m, "0.5") for m in months])
        ws.fx_rates([("INR", m, "0.0113") for m in months])
        ws.pass_through([("P2", m, "telco", None, "333.33", None) for m in months])
        ws.settle(months[0], months[-1])
        ws.settle(months[0], months[-1])
        with duckdb.connect(str(ws.db), read_only=True) as con:
            # the stored values as text, so that scale and trailing zeros count too
            def stored(run_id: int) -> list[tuple]:
                return con.execute(
                    "SELECT CAST(COLUMNS(* EXCLUDE (run_id)) AS VARCHAR) FROM invoice_lines "
                    "WHERE run_id = ? ORDER BY contract_id, period, sort_order, line_key",
                    [run_id],
                ).fetchall()

            assert stored(1) == stored(2)
            assert len(stored(1)) >= len(units)
