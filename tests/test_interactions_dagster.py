"""Dagster side of SPEC 12: contract groups as separate runs, and the interaction_counts asset.

Real in-process Dagster runs on an ephemeral instance, real Parquet and real DuckDB files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.definitions import interaction_counts, settle, validated_inputs
from pipelines.orchestration.interaction_counts import InteractionsEngine, contract_group
from pipelines.orchestration.resources import SettleFiles

from .test_interactions_closed import _blind, _month
from .test_measures import MEASURES

REPO = Path(__file__).resolve().parent.parent
RESULTS = [
    "index_factors",
    "charge_bands",
    "charge_lines",
    "kpi_results",
    "service_credits",
    "gain_share",
    "adjustments",
    "invoice_lines",
    "invoice_reconciliation",
    "interaction_counts",
    "current_invoice_lines",
    "current_kpi_results",
]


def _range(assets, resources, first, last, config=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=resources,
        run_config={"ops": {"settle": {"config": config}}} if config else None,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        raise_on_error=False,
    )


def _figures(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            t: con.execute(f"SELECT * EXCLUDE (run_id) FROM {t} ORDER BY ALL").fetchall()
            for t in RESULTS
        }


def test_two_contract_group_runs_store_what_one_run_stores(tmp_path):
    contracts = shutil.copytree(REPO / "contracts_config", tmp_path / "contracts_config")
    data = shutil.copytree(
        REPO / "data_samples", tmp_path / "data", ignore=shutil.ignore_patterns("*.py")
    )
    # the sample's three contracts fall in both groups (sha256 of the id, mod 2)
    assert contract_group("FABRIKAM-TELCO-01", 2) == 0
    assert contract_group("ACME-CONTOSO-01", 2) == contract_group("NORTHWIND-BACKOFFICE-01", 2) == 1

    one, grouped = tmp_path / "one.duckdb", tmp_path / "grouped.duckdb"
    assets = [validated_inputs, settle]

    def files(db):
        return {
            "settle": SettleFiles(contracts_dir=str(contracts), data_dir=str(data), db_path=str(db))
        }

    assert _range(assets, files(one), "2024-01", "2024-06").success
    for group in (0, 1):
        config = {"groups": 2, "group": group}
        assert _range(assets, files(grouped), "2024-01", "2024-06", config).success
    with duckdb.connect(str(grouped), read_only=True) as con:
        runs = con.execute("SELECT run_id, contracts FROM settlement_runs ORDER BY 1").fetchall()
    assert runs == [
        (1, ["FABRIKAM-TELCO-01"]),
        (2, ["ACME-CONTOSO-01", "NORTHWIND-BACKOFFICE-01"]),
    ]
    stored = _figures(one)
    assert stored == _figures(grouped)
    assert stored["current_invoice_lines"] and stored["interaction_counts"]


def test_interaction_counts_asset_counts_ahead_for_the_settlement(ws):
    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", m, "1000") for m in ("2024-01", "2024-02")])
    jan = ws.interactions(_month("2024-01-10 09:00:00", "5"), "period=2024-01/part.parquet")
    ws.interactions(_month("2024-02-10 09:00:00", "30"), "period=2024-02/part.parquet")
    resources = {
        "settle": SettleFiles(
            contracts_dir=str(ws.contracts_dir), data_dir=str(ws.data_dir), db_path=str(ws.db)
        ),
        "interactions": InteractionsEngine(engine="duckdb"),
    }
    counted = _range([interaction_counts], resources, "2024-01", "2024-01")
    assert counted.success
    folder = Path(str(ws.db) + ".interaction_counts") / "period=2024-01"
    assert sorted(os.listdir(folder)) == ["interaction_counts.parquet", "manifest.json"]

    # the settlement reads January's counts from the asset's Parquet: its files stay unopened
    _blind(jan)
    assert _range([settle], {"settle": resources["settle"]}, "2024-01", "2024-02").success
    jan_kpis = ws.rows(
        "SELECT kpi_id, value FROM kpi_results WHERE period = DATE '2024-01-01' "
        "AND kpi_id IN ('sl_ignore', 'asa')"
    )
    # January: two calls answered after 5 s: A_T / A = 2 / 2 = 1; ASA = 10 s / 2 = 5 s
    assert {r["kpi_id"]: r["value"] for r in jan_kpis} == {"sl_ignore": 1, "asa": 5}
