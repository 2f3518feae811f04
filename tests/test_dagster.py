"""The Dagster code location over the engine (SPEC 8): it loads, a month and a range settle to the
same tables as `settle run`, a failing input check blocks the settlement and writes nothing, and
another process holding the database fails the run with the engine's message.

Runs are real: `dg.materialize` in process on an ephemeral Dagster instance, real Parquet inputs
and a real DuckDB file under tmp_path. Figures asserted here are worked out by hand beside them.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from pipelines import cli, store
from pipelines.definitions import defs, settle, validated_inputs
from pipelines.errors import SettleError
from pipelines.orchestration import readback
from pipelines.orchestration.partitions import monthly_partitions
from pipelines.orchestration.resources import SettleFiles

REPO = Path(__file__).resolve().parent.parent
TABLE_ASSETS = [t.name for t in store.RESULT_TABLES]
# What `settle run` leaves in the database, compared without run ids and clock times.
COMPARED = {
    **{f"current_{t}": "run_id" for t in TABLE_ASSETS},
    **{t: "run_id" for t in TABLE_ASSETS},
    "current_invoice_totals": "",
    "current_invoice_summary": "run_id",
    "run_periods": "run_id",
    "period_status": "closed_at",
    "settlement_runs": "run_id, started_at, finished_at",
}

ONE_LINE = """\
contract_id: C1
currency: GBP
start: 2024-01
end: 2024-12
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 2.40}]}
"""

CAPPED = """\
contract_id: C1
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
  monthly_cap_pct: 0.05
  kpis:
    - {id: sl, target: 0.80, allocation_pct: 1.0, credit: {model: binary}}
"""


def files(contracts: Path, data: Path, db: Path) -> SettleFiles:
    return SettleFiles(contracts_dir=str(contracts), data_dir=str(data), db_path=str(db))


def materialize(
    resource: SettleFiles, first: str, last: str | None = None, config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """One Dagster run of the whole settlement for a month, or a range as the single-run backfill
    launches it (the range tags; `materialize` itself takes one partition key only)."""
    if last is None:
        partition = {"partition_key": first}
    else:
        partition = {
            "tags": {
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            }
        }
    return dg.materialize(
        [validated_inputs, settle],
        resources={"settle": resource},
        run_config={"ops": {"settle": {"config": config}}} if config else None,
        raise_on_error=False,
        **partition,
    )


def cli_run(contracts: Path, data: Path, db: Path, *args: str) -> None:
    result = CliRunner().invoke(
        cli.main,
        ["run", "--contracts", str(contracts), "--data", str(data), "--db", str(db), *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


def contents(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        out = {}
        for name, excluded in COMPARED.items():
            select = f"* EXCLUDE ({excluded})" if excluded else "*"
            out[name] = con.execute(f"SELECT {select} FROM {name} ORDER BY ALL").fetchall()
        return out


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, set[str]]:
    """asset -> the partitions the run recorded a materialization for."""
    out: dict[str, set[str]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        out.setdefault(m.asset_key.to_user_string(), set()).add(m.partition)
    return out


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult, asset: str, key: str):
    for event in result.get_asset_materialization_events():
        m = event.materialization
        if m.asset_key.to_user_string() == asset:
            return m.metadata[key].value
    raise AssertionError(f"{asset} was not materialized")


@pytest.fixture
def samples(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the sample portfolio, so a regenerated data_samples/ cannot interfere."""
    contracts = shutil.copytree(REPO / "contracts_config", tmp_path / "contracts_config")
    data = shutil.copytree(
        REPO / "data_samples", tmp_path / "data", ignore=shutil.ignore_patterns("*.py")
    )
    return contracts, data


# --------------------------------------------------------------------------- the code location


def test_code_location_loads_and_validates():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "validated_inputs",
        *TABLE_ASSETS,
    }
    assert {k.name for k in graph.asset_check_keys} == {
        "contract_configs",
        "input_schemas",
        "input_references",
        "invoice_adds_up",
        "credits_within_cap",
        "no_critical_breach",
        "provider_invoice_matches",
    }
    # the input checks stop the settlement; the output checks only report
    blocking = {s.name for s in validated_inputs.check_specs if s.blocking}
    assert blocking == {"contract_configs", "input_schemas", "input_references"}
    for asset in (validated_inputs, settle):
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        assert asset.partitions_def.get_first_partition_key() == "2024-01"
    assert defs.executor is dg.in_process_executor
    assert defs.resolve_job_def("settle_month").executor_def is dg.in_process_executor


def test_the_schedule_settles_the_previous_month():
    schedule = defs.resolve_schedule_def("month_end_settlement")
    assert schedule.cron_schedule == "0 6 2 * *"
    # the tick of 2 August 2025 at 06:00 settles July, the last complete month
    tick = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2025, 8, 2, 6, 0, tzinfo=dt.UTC)
    )
    (request,) = schedule.evaluate_tick(tick).run_requests
    assert request.partition_key == "2025-07"


def test_files_and_partitions_come_from_the_cli_environment(monkeypatch):
    for name in ("SETTLE_CONTRACTS", "SETTLE_DATA", "SETTLE_DB", "SETTLE_PARTITIONS_START"):
        monkeypatch.delenv(name, raising=False)
    assert SettleFiles.from_env() == files(
        Path("contracts_config"), Path("data_samples"), Path("settlement.duckdb")
    )
    assert monthly_partitions().get_first_partition_key() == "2024-01"
    monkeypatch.setenv("SETTLE_CONTRACTS", "/srv/contracts")
    monkeypatch.setenv("SETTLE_DATA", "/srv/data")
    monkeypatch.setenv("SETTLE_DB", "/srv/settle.duckdb")
    monkeypatch.setenv("SETTLE_PARTITIONS_START", "2025-03")
    assert SettleFiles.from_env() == files(
        Path("/srv/contracts"), Path("/srv/data"), Path("/srv/settle.duckdb")
    )
    assert monthly_partitions().get_first_partition_key() == "2025-03"
    monkeypatch.setenv("SETTLE_PARTITIONS_START", "2025-3")
    with pytest.raises(SettleError, match="SETTLE_PARTITIONS_START: '2025-3' is not a month"):
        monthly_partitions()


BACKFILL = """
mutation ($keys: [AssetKeyInput!], $months: [String!]) {
  launchPartitionBackfill(backfillParams: {assetSelection: $keys, partitionNames: $months}) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def test_a_range_backfill_launched_from_the_ui_is_one_run(tmp_path, monkeypatch):
    """The UI's backfill path (GraphQL, a code server process, the backfill daemon's iteration);
    runs are queued, not executed, so nothing touches a database."""
    import logging

    from dagster._core.storage.dagster_run import RunsFilter
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    monkeypatch.setenv("SETTLE_DB", str(tmp_path / "never_written.duckdb"))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module: pipelines.definitions\n")
    queued = {"run_coordinator": {"module": "dagster", "class": "QueuedRunCoordinator"}}
    with (
        dg.instance_for_test(overrides=queued) as instance,
        define_out_of_process_context(str(workspace), None, instance) as context,
    ):
        keys = [{"path": [k]} for k in ["validated_inputs", *TABLE_ASSETS]]
        months = ["2025-10", "2025-11", "2025-12"]
        launched = execute_dagster_graphql(context, BACKFILL, {"keys": keys, "months": months})
        answer = launched.data["launchPartitionBackfill"]
        assert answer["__typename"] == "LaunchBackfillSuccess", answer
        list(execute_backfill_iteration(context.process_context, logging.getLogger("backfill")))
        runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": answer["backfillId"]}))
    # three months, one run over the range
    assert len(runs) == 1
    assert runs[0].tags["dagster/asset_partition_range_start"] == "2025-10"
    assert runs[0].tags["dagster/asset_partition_range_end"] == "2025-12"
    assert not (tmp_path / "never_written.duckdb").exists()


# --------------------------------------------------------------------------- same as the CLI


def test_a_month_then_a_range_store_what_settle_run_stores(samples, tmp_path):
    contracts, data = samples
    via_dagster, via_cli = tmp_path / "dagster.duckdb", tmp_path / "cli.duckdb"
    resource = files(contracts, data, via_dagster)

    month = materialize(resource, "2024-01")
    assert month.success
    cli_run(contracts, data, via_cli, "--period", "2024-01")
    stored = contents(via_dagster)
    assert stored == contents(via_cli)
    assert stored["current_invoice_lines"] and stored["current_kpi_results"]
    assert materialized(month) == {a: {"2024-01"} for a in ["validated_inputs", *TABLE_ASSETS]}

    three = materialize(resource, "2024-02", "2024-04")
    assert three.success
    cli_run(contracts, data, via_cli, "--period", "2024-02", "--to", "2024-04")
    assert contents(via_dagster) == contents(via_cli)
    # one Dagster run, one engine call: one more settlement run, covering the three months
    with duckdb.connect(str(via_dagster), read_only=True) as con:
        assert con.execute("SELECT run_id, periods FROM settlement_runs ORDER BY 1").fetchall() == [
            (1, "2024-01..2024-01"),
            (2, "2024-02..2024-04"),
        ]
    months = {"2024-02", "2024-03", "2024-04"}
    assert materialized(three) == {a: months for a in ["validated_inputs", *TABLE_ASSETS]}
    assert all(
        c.passed for c in checks(three).values() if c.severity == dg.AssetCheckSeverity.ERROR
    )


def test_an_as_known_at_rebuild_matches_the_cli(samples, tmp_path):
    contracts, data = samples
    via_dagster, via_cli = tmp_path / "dagster.duckdb", tmp_path / "cli.duckdb"
    result = materialize(
        files(contracts, data, via_dagster), "2025-04", "2025-06", {"as_known_at": "2025-07-10"}
    )
    assert result.success
    cli_run(
        contracts,
        data,
        via_cli,
        "--period",
        "2025-04",
        "--to",
        "2025-06",
        "--as-known-at",
        "2025-07-10",
    )
    assert contents(via_dagster) == contents(via_cli)


# --------------------------------------------------------------------------- what the UI shows


def test_invoice_metadata_and_checks_read_back_the_run(ws):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100")])
    result = materialize(files(ws.contracts_dir, ws.data_dir, ws.db), "2024-01")
    assert result.success
    # 100 contacts x 2.40 = 240.00, one usage line
    assert metadata(result, "invoice_lines", "dagster/row_count") == 1
    assert "| C1 | GBP | 1 | 240.00 |" in metadata(
        result, "invoice_lines", "amount due per contract"
    )
    assert metadata(result, "invoice_lines", "settle run_id") == "1"
    # the month-end state: settled by this run, not yet approved
    state = metadata(result, "invoice_lines", "month-end state")
    assert "| C1 | 2024-01 | open | yes |  | 0 |  |" in state
    # no vendor invoice: the expected 240.00 line is not billed, a warning for finance
    found = checks(result)
    assert found["invoice_adds_up"].passed
    assert not found["provider_invoice_matches"].passed
    assert found["provider_invoice_matches"].severity == dg.AssetCheckSeverity.WARN
    assert metadata(result, "invoice_reconciliation", "lines not matching") == 1


def test_output_checks_catch_a_tampered_invoice_and_credit(ws):
    ws.contract(CAPPED)
    ws.volumes([("C1", "voice", "2024-01", "1000")])
    ws.kpis([("C1", "sl", "2024-01", "0.70")])
    result = materialize(files(ws.contracts_dir, ws.data_dir, ws.db), "2024-01")
    assert result.success
    # charges 1000 x 1.00 = 1,000.00; sl failed (0.70 < 0.80): 10% at risk x 100% allocation =
    # 100.00, capped at 5% of 1,000.00 = 50.00
    assert ws.lines("2024-01", "C1") == {
        "usage:voice": Decimal("1000.00"),
        "credit:sl": Decimal("-50.00"),
    }
    assert checks(result)["credits_within_cap"].passed
    assert checks(result)["invoice_adds_up"].passed

    with duckdb.connect(str(ws.db)) as con:
        con.execute("UPDATE service_credits SET amount = 50.01 WHERE run_id = 1")
        con.execute("UPDATE invoice_lines SET amount = 1000.01 WHERE line_key = 'usage:voice'")
        credit = readback.check_result(con, "service_credits", 1)
        invoice = readback.check_result(con, "invoice_lines", 1)
    # 50.01 > the cap 50.00 + half a cent; and a capped month must add up to 50.00 exactly
    assert not credit.passed
    assert credit.metadata["failing rows"].value == 1
    assert "credits above the cap" in credit.metadata["rows"].value
    # invoice charges 1,000.01 vs charge_lines 1,000.00; credits -50.00 vs service_credits
    # -50.01; amount due 950.01 vs the reconciliation's expected 950.00: three parts off
    assert not invoice.passed
    assert invoice.metadata["failing rows"].value == 3


# --------------------------------------------------------------------------- refusals


def test_a_failing_pandera_check_blocks_the_settlement_and_writes_nothing(ws):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100"), ("C1", "voice", "2024-02", "-5")])
    result = materialize(files(ws.contracts_dir, ws.data_dir, ws.db), "2024-01")
    assert not result.success
    found = checks(result)
    assert found["contract_configs"].passed
    assert not found["input_schemas"].passed
    assert found["input_schemas"].severity == dg.AssetCheckSeverity.ERROR
    assert "column units" in found["input_schemas"].description
    assert "units=-5" in found["input_schemas"].description
    # the referential rules cannot run without the inputs: reported, as a warning
    assert not found["input_references"].passed
    assert found["input_references"].severity == dg.AssetCheckSeverity.WARN
    assert result.is_node_failed("validated_inputs")
    assert result.is_node_untouched("settle")
    assert set(materialized(result)) == {"validated_inputs"}
    assert not ws.db.exists()


def test_a_failing_referential_check_leaves_the_database_byte_identical(ws):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100")])
    ws.settle("2024-01")
    before = ws.db_bytes()
    ws.volumes([("C1", "chat", "2024-02", "100")], name="february.parquet")
    result = materialize(files(ws.contracts_dir, ws.data_dir, ws.db), "2024-02")
    assert not result.success
    found = checks(result)
    assert found["input_schemas"].passed
    assert not found["input_references"].passed
    assert "service_line_id must be a service line of its contract" in (
        found["input_references"].description
    )
    assert result.is_node_failed("validated_inputs")
    assert result.is_node_untouched("settle")
    assert ws.db_bytes() == before


def test_a_database_held_by_another_process_fails_the_run_with_the_engine_message(ws, monkeypatch):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100")])
    monkeypatch.setenv("SETTLE_LOCK_WAIT_S", "0")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(ws.db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = materialize(files(ws.contracts_dir, ws.data_dir, ws.db), "2024-01")
    finally:
        holder.stdin.close()
        holder.wait()
    assert not result.success
    assert result.is_node_success("validated_inputs")
    failure = result.failure_data_for_node("settle")
    assert failure.user_failure_data.description.startswith(
        f"{ws.db}: the database is in use by another Settle run (process {holder.pid}); "
        "waited 0s. Nothing was written."
    )
    assert materialized(result) == {"validated_inputs": {"2024-01"}}
    with duckdb.connect(str(ws.db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
