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

from pipelines import cli, inputs, store
from pipelines.definitions import defs, settle, validated_inputs
from pipelines.errors import SettleError
from pipelines.orchestration import readback, sources
from pipelines.orchestration.partitions import monthly_partitions
from pipelines.orchestration.resources import SettleFiles

REPO = Path(__file__).resolve().parent.parent
# the settle multi-asset's tables (interaction_counts is an asset of its own)
TABLE_ASSETS = [t.name for t in store.DAGSTER_TABLES]
STORED_TABLES = [t.name for t in store.RESULT_TABLES]
ALL_CHECKS = {
    "contract_configs",
    "input_schemas",
    "input_references",
    "invoice_adds_up",
    "credits_within_cap",
    "no_critical_breach",
    "provider_invoice_matches",
}
# External assets: every input folder the engine reads, and the samples' contract files.
EXTERNAL = {
    *(f"inputs/{folder}" for folder in [*inputs.COLUMNS, "interactions"]),
    "contracts/acme_contoso_01",
    "contracts/fabrikam_telco_01",
    "contracts/northwind_backoffice_01",
}
# What `settle run` leaves in the database, compared without run ids and clock times.
COMPARED = {
    **{f"current_{t}": "run_id" for t in STORED_TABLES},
    **{t: "run_id" for t in STORED_TABLES},
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
        *EXTERNAL,
        "validated_inputs",
        "interaction_counts",
        *TABLE_ASSETS,
    }
    assert {k.name for k in graph.asset_check_keys} == ALL_CHECKS
    # the input checks stop the settlement; the output checks only report
    blocking = {s.name for s in validated_inputs.check_specs if s.blocking}
    assert blocking == {"contract_configs", "input_schemas", "input_references"}
    for asset in (validated_inputs, settle):
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        assert asset.partitions_def.get_first_partition_key() == "2024-01"
        # the samples' volumes run 2024-01..2025-12 (README, the sample story): no later month
        assert asset.partitions_def.get_last_partition_key() == "2025-12"
    assert defs.executor is dg.in_process_executor
    assert defs.resolve_job_def("settle_month").executor_def is dg.in_process_executor


def test_the_schedule_settles_the_previous_month_with_data(samples, tmp_path):
    contracts, data = samples
    schedule = defs.resolve_schedule_def("month_end_settlement")
    assert schedule.cron_schedule == "0 6 2 * *"
    resources = {"settle": files(contracts, data, tmp_path / "never_written.duckdb")}

    def tick(when: dt.datetime):
        context = dg.build_schedule_context(
            scheduled_execution_time=when,
            resources=resources,
            repository_def=defs.get_repository_def(),
        )
        return schedule.evaluate_tick(context)

    # the tick of 2 August 2025 at 06:00 settles July, the last complete month
    (request,) = tick(dt.datetime(2025, 8, 2, 6, 0, tzinfo=dt.UTC)).run_requests
    assert request.partition_key == "2025-07"
    # 2 February 2026: January has no volumes in the samples (they end 2025-12): skipped
    skipped = tick(dt.datetime(2026, 2, 2, 6, 0, tzinfo=dt.UTC))
    assert not skipped.run_requests
    assert skipped.skip_message.startswith("2026-01: no volumes in ")
    # January's volumes land after the definitions loaded (partitions end 2025-12): skipped too
    shutil.copy(data / "volumes" / "volumes.parquet", data / "volumes" / "january.parquet")
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE (DATE '2026-01-01' AS period) FROM "
            f"'{data / 'volumes' / 'volumes.parquet'}' WHERE period = DATE '2025-12-01') "
            f"TO '{data / 'volumes' / 'january.parquet'}' (FORMAT parquet)"
        )
    stale = tick(dt.datetime(2026, 2, 2, 6, 0, tzinfo=dt.UTC))
    assert not stale.run_requests
    assert "reload the code location" in stale.skip_message
    assert monthly_partitions(data).get_last_partition_key() == "2026-01"


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


def parents(asset: str) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(asset)).parent_keys}


def test_lineage_follows_the_sql():
    # read off sql/03..11: which calc_ tables each stored table's SQL selects from
    assert parents("index_factors") == {"validated_inputs"}  # index_values/
    assert parents("charge_bands") == {"validated_inputs", "index_factors"}  # volumes/
    # 04_terms_beyond_month adds true-up, one-off and pass-through lines to the charge lines
    assert parents("charge_lines") == {
        "charge_bands",
        "index_factors",
        "commitment_windows",
        "one_off_instalments",
        "pass_through_costs",
    }
    # kpis/, exclusions/, and the counts of interactions/ (05_measures reads interaction_counts)
    assert parents("kpi_results") == {"validated_inputs", "interaction_counts"}
    assert parents("service_credits") == {"charge_lines", "kpi_results"}
    assert parents("gain_share_months") == {"charge_lines", "index_factors"}
    assert parents("gain_share") == {"gain_share_months", "kpi_results"}
    assert parents("adjustments") == {"charge_lines", "service_credits", "gain_share"}
    assert parents("invoice_lines") == {
        "charge_lines",
        "service_credits",
        "annual_credit_caps",
        "gain_share",
        "adjustments",
        "one_off_instalments",
        "pass_through_costs",
        "fx_shares",
    }
    assert parents("invoice_reconciliation") == {"invoice_lines", "validated_inputs"}
    # no longer a star: only the tables reading an input folder hang off validated_inputs
    graph = defs.resolve_asset_graph()
    children = {k.to_user_string() for k in graph.get(dg.AssetKey("validated_inputs")).child_keys}
    assert children == {
        "index_factors",
        "charge_bands",
        "commitment_windows",
        "pass_through_costs",
        "fx_shares",
        "kpi_results",
        "invoice_reconciliation",
    }


def test_inputs_and_contract_files_are_external_assets_upstream_of_validation():
    graph = defs.resolve_asset_graph()
    assert parents("validated_inputs") == EXTERNAL
    for key in EXTERNAL:
        node = graph.get(dg.AssetKey.from_user_string(key))
        assert not node.is_executable
        assert node.group_name == "inputs"
    assert {
        "inputs/volumes",
        "inputs/kpis",
        "inputs/exclusions",
        "inputs/index_values",
        "inputs/vendor_invoices",
        "inputs/interactions",
    } <= EXTERNAL


def test_validation_observes_each_input_with_a_data_version_of_its_files(samples, tmp_path):
    contracts, data = samples
    resource = files(contracts, data, tmp_path / "settle.duckdb")
    first = dg.materialize(
        [validated_inputs], resources={"settle": resource}, partition_key="2024-01"
    )

    def versions(result) -> dict[str, str]:
        return {
            e.asset_key.to_user_string(): e.event_specific_data.asset_observation.tags[
                "dagster/data_version"
            ]
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        }

    before = versions(first)
    assert set(before) == EXTERNAL
    # a byte changed in one KPI file changes that folder's version only
    (data / "kpis" / "extra.parquet").write_bytes((data / "kpis" / "kpis.parquet").read_bytes())
    (contracts / "acme_contoso_01.yaml").write_text(
        (contracts / "acme_contoso_01.yaml").read_text() + "\n# reviewed\n"
    )
    assert (
        sources.data_version(sorted((data / "kpis").rglob("*.parquet")), data)
        != before["inputs/kpis"]
    )
    after = {
        o.asset_key.to_user_string(): o.tags["dagster/data_version"]
        for o in sources.observations(contracts, data, {s.key for s in sources.SOURCES})
    }
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"inputs/kpis", "contracts/acme_contoso_01"}


def test_partitions_end_at_the_last_month_with_volumes(ws):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100"), ("C1", "voice", "2024-03", "100")])
    months = monthly_partitions(ws.data_dir)
    assert months.get_first_partition_key() == "2024-01"
    assert months.get_last_partition_key() == "2024-03"
    assert months.get_partition_keys() == ["2024-01", "2024-02", "2024-03"]


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
    # every check result is on the month's partition
    assert {(e.check_name, e.partition) for e in month.get_asset_check_evaluations()} == {
        (c, "2024-01") for c in ALL_CHECKS
    }

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
    # a range records each check once per month of the range
    on_months = [
        (e.check_name, e.partition) for e in three.get_asset_check_evaluations() if e.partition
    ]
    assert sorted(on_months) == sorted((c, m) for c in ALL_CHECKS for m in months)
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


def test_a_range_check_fails_only_on_the_month_with_failing_rows(ws):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100"), ("C1", "voice", "2024-02", "100")])
    # the provider bills January right (100 x 2.40 = 240.00) and nothing for February
    ws.vendor_invoices([("C1", "2024-01", "INV-1", "usage:voice", None, None, None, "240.00")])
    result = materialize(files(ws.contracts_dir, ws.data_dir, ws.db), "2024-01", "2024-02")
    assert result.success
    matches = {
        e.partition: e.passed
        for e in result.get_asset_check_evaluations()
        if e.check_name == "provider_invoice_matches"
    }
    assert matches == {"2024-01": True, "2024-02": False}


def readback_asset(check: str) -> str:
    (asset,) = [a for a, (name, *_) in readback.CHECKS.items() if name == check]
    return asset


def test_a_cli_run_is_recorded_in_the_configured_dagster_instance(samples, tmp_path, monkeypatch):
    contracts, data = samples
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    db = tmp_path / "settle.duckdb"
    result = CliRunner().invoke(
        cli.main,
        [
            "run",
            *("--contracts", str(contracts), "--data", str(data), "--db", str(db)),
            *("--period", "2024-01", "--to", "2024-02", "--dagster-home", str(home)),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Recorded in Dagster" in result.output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for asset in ["validated_inputs", *TABLE_ASSETS]:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {
                "2024-01",
                "2024-02",
            }
        event = instance.get_latest_materialization_event(dg.AssetKey("invoice_lines"))
        assert event.asset_materialization.metadata["settle run_id"].value == "1"
        assert event.asset_materialization.tags["settle/run_id"] == "1"
        # each check on each month: the invariant held, or the run would not have committed
        for check in ["invoice_adds_up", "credits_within_cap", "input_schemas"]:
            asset = "validated_inputs" if check == "input_schemas" else None
            key = dg.AssetCheckKey(dg.AssetKey(asset or readback_asset(check)), check)
            found = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
            assert {r.event.asset_check_evaluation.partition for r in found} == {
                "2024-01",
                "2024-02",
            }
            assert all(r.event.asset_check_evaluation.passed for r in found)
            # and each is the partition's current result (it points at the month's
            # materialisation), which is what the UI's partition view counts
            infos = instance.event_log_storage.get_asset_check_partition_info([key])
            assert {i.partition_key for i in infos if i.is_current} == {"2024-01", "2024-02"}

    # an instance that is not there: a warning, and the run stands
    missing = CliRunner().invoke(
        cli.main,
        [
            "run",
            *("--contracts", str(contracts), "--data", str(data), "--db", str(db)),
            *("--period", "2024-03", "--dagster-home", str(tmp_path / "absent")),
        ],
        catch_exceptions=False,
    )
    assert missing.exit_code == 0, missing.output
    assert "warning: run 2 not recorded in the Dagster instance" in missing.output
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT max(run_id) FROM settlement_runs").fetchone() == (2,)

    # the same month settled again and recorded again: its checks point at the new materialisation
    again = CliRunner().invoke(
        cli.main,
        [
            "run",
            *("--contracts", str(contracts), "--data", str(data), "--db", str(db)),
            *("--period", "2024-01", "--dagster-home", str(home)),
        ],
        catch_exceptions=False,
    )
    assert again.exit_code == 0, again.output
    assert "Recorded in Dagster" in again.output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        key = dg.AssetCheckKey(dg.AssetKey("invoice_lines"), "invoice_adds_up")
        infos = instance.event_log_storage.get_asset_check_partition_info([key])
        assert {i.partition_key for i in infos if i.is_current} == {"2024-01", "2024-02"}
        event = instance.get_latest_materialization_event(dg.AssetKey("invoice_lines"))
        assert event.asset_materialization.metadata["settle run_id"].value == "3"


def test_a_subset_selection_settles_every_table_and_records_them(ws):
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100")])
    result = dg.materialize(
        [validated_inputs, settle],
        selection=["validated_inputs", "invoice_lines"],
        resources={"settle": files(ws.contracts_dir, ws.data_dir, ws.db)},
        partition_key="2024-01",
    )
    assert result.success
    # one engine call wrote every table; each is recorded, not only the selected one
    assert materialized(result) == {a: {"2024-01"} for a in ["validated_inputs", *TABLE_ASSETS]}
    assert ws.lines("2024-01", "C1") == {"usage:voice": Decimal("240.00")}


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
