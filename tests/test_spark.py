"""The interaction_counts stage on Spark (SPEC 12): the same definition, the same figures.

One local Spark session for the module (local[1], two shuffle partitions) keeps this quick. The
sample: the measured-KPI contract of test_measures (every metric and abandon treatment), January's
hand-counted interactions, February with exclusion windows (one for every KPI, two overlapping for
one KPI), March with no interactions at all (no_data).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import engine, interactions, spark
from pipelines.errors import SettleError
from pipelines.periods import parse_period

from .test_measures import JANUARY, MEASURES, T0, at
from .test_measures import interactions as rows_of

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17")

FEBRUARY = [
    ("2024-02-05 09:59:59.999999", at("10", "2024-02-05 09:59:59.999999"), None, 30, True, 8),
    ("2024-02-05 10:00:00", at("60", "2024-02-05 10:00:00"), None, 40, False, 2),
    ("2024-02-05 10:30:00", None, at("50", "2024-02-05 10:30:00")),
    ("2024-02-05 11:00:00", at("30", "2024-02-05 11:00:00"), None, 50, None, 5),
    ("2024-02-06 10:45:00", at("40", "2024-02-06 10:45:00"), None),
    ("2024-02-06 12:00:00", at("1", "2024-02-06 12:00:00"), None, 60, True, 10),
    ("2024-02-06 12:00:00", None, at("4", "2024-02-06 12:00:00")),
]


@pytest.fixture(scope="module", autouse=True)
def local_spark():
    saved = {k: os.environ.get(k) for k in ("SPARK_MASTER", "SETTLE_SPARK_PARTITIONS")}
    os.environ["SPARK_MASTER"] = "local[1]"
    os.environ["SETTLE_SPARK_PARTITIONS"] = "2"
    yield
    spark.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _sample(ws) -> None:
    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", m, "1000") for m in ("2024-01", "2024-02", "2024-03")])
    ws.exclusions([
        ("M1", None, "2024-02", "outage", "2024-02-05 10:00:00", "2024-02-05 11:00:00"),
        ("M1", "sl_ignore", "2024-02", "a", "2024-02-06 10:00:00", "2024-02-06 11:00:00"),
        ("M1", "sl_ignore", "2024-02", "b", "2024-02-06 10:30:00", "2024-02-06 11:30:00"),
    ])  # fmt: skip
    ws.interactions(rows_of(JANUARY), name="period=2024-01/part.parquet")
    feb = ws.interactions(rows_of(FEBRUARY), name="period=2024-02/part.parquet")
    # February's file has another schema: csat as int32 (January's is int8) and no
    # first_contact_resolved column; both engines must read the two files by column name
    table = pq.read_table(feb).drop_columns(["first_contact_resolved"])
    table = table.set_column(
        table.schema.get_field_index("csat"), "csat", table["csat"].cast(pa.int32())
    )
    pq.write_table(table, feb)


def _settle(ws, engine_name: str) -> None:
    request = engine.RunRequest(
        parse_period("2024-01"), parse_period("2024-03"), interactions_engine=engine_name
    )
    engine.settle(ws.contracts_dir, ws.data_dir, ws.db, request)


def _stored(ws, table: str, order: str) -> list[tuple]:
    with duckdb.connect(str(ws.db), read_only=True) as con:
        return con.execute(f"SELECT * EXCLUDE (run_id) FROM {table} ORDER BY {order}").fetchall()


def test_both_engines_store_identical_counts_and_kpis(tmp_path):
    from .conftest import Workspace

    (tmp_path / "d").mkdir()
    (tmp_path / "s").mkdir()
    duck, on_spark = Workspace(tmp_path / "d"), Workspace(tmp_path / "s")
    for ws in (duck, on_spark):
        _sample(ws)
    _settle(duck, "duckdb")
    _settle(on_spark, "spark")
    counts_order = "contract_id, service_line_id, period, excluded_from, kind, bound"
    duck_counts = _stored(duck, "interaction_counts", counts_order)
    assert duck_counts == _stored(on_spark, "interaction_counts", counts_order)
    kpis = _stored(duck, "kpi_results", "contract_id, period, kpi_id")
    assert kpis == _stored(on_spark, "kpi_results", "contract_id, period, kpi_id")

    # and the figures are the hand-counted ones (test_measures): January A = 4, A_T(20 s) = 2
    jan = {(r[4], r[5]): r for r in duck_counts if r[2] == parse_period("2024-01") and r[3] is None}
    assert jan[("all", None)][7] == 4  # answered
    assert jan[("wait", 20)][7] == 2  # answered within 20 s
    assert jan[("wait", 5)][8] == 2  # abandoned within 5 s (3 s and 5 s)
    values = {
        (r["kpi_id"], r["period"].month): (r["value"], r["denominator"])
        for r in duck.rows("SELECT * FROM kpi_results")
    }
    # sl_ignore in January: A_T / A = 2 / 4 = 0.5
    assert values[("sl_ignore", 1)] == (Decimal("0.5"), Decimal(4))
    # March has no interactions: no value, denominator 0
    assert values[("sl_ignore", 3)] == (None, Decimal(0))


def test_spark_runs_the_transpiled_definition(ws, monkeypatch):
    _sample(ws)
    # Spark is given its own names of the storage (here the file:// URLs of the same folders):
    # what a cluster reading s3a:// does while this machine reads the mount
    data, work = ws.data_dir.resolve(), ws.root.resolve() / "spark-work"
    monkeypatch.setenv("SETTLE_SPARK_WORKDIR", str(work))
    monkeypatch.setenv(spark.PATHS_ENV, f"{data}=file://{data},{work}=file://{work}")
    assert spark.spark_path(str(data / "x.parquet")) == f"file://{data}/x.parquet"
    _settle(ws, "spark")
    counted = ws.rows("SELECT sum(interactions) AS n FROM interaction_counts WHERE kind = 'all'")
    assert counted[0]["n"] == 9 + 7  # January's 9 rows and February's 7
    view_sql, counts = spark.last_statements
    # the counts statement is the portable definition, filled in as for DuckDB, then transpiled
    expected = interactions.counts_sql([5, 20], [4], False, {"handle_s", "csat"})
    assert counts == spark.to_spark(expected)
    assert "UNIX_MICROS(CAST(answered_at AS TIMESTAMP))" in counts
    assert "TRUNC(CAST(t.arrived_at AS DATE), 'MM')" in counts
    assert "EPOCH" not in counts.upper() and "DATEDIFF" not in counts
    assert "TIMESTAMP_NTZ" in view_sql  # naive local timestamps stay naive on Spark


def test_spark_rejects_what_duckdb_rejects(ws):
    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", "2024-01", "1000")])
    # answered before it arrived, and a csat of 11
    ws.interactions(
        rows_of([(T0, at("5"), None, 10, True, 11), (at("9"), T0, None, 10, True, 5)]),
        name="period=2024-01/part.parquet",
    )
    messages = []
    for name in ("duckdb", "spark"):
        with pytest.raises(SettleError) as err:
            request = engine.RunRequest(parse_period("2024-01"), parse_period("2024-01"))
            request.interactions_engine = name
            engine.settle(ws.contracts_dir, ws.data_dir, ws.db, request)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "answered_at must not be before arrived_at" in messages[0]
    # nothing written: the failed runs were the database's first, so no database file is left
    assert not ws.db.exists()


def test_the_fast_time_rewrites_give_duckdbs_values_at_the_edges():
    """to_spark rewrites the per-row microsecond difference and the month of arrival; on the
    edges (a leap day's last microsecond, a year end, an hour that does not exist in Europe's
    clocks) both engines give the values worked out by hand."""
    rows = [
        # 2024-02-29 23:59:59.999999 -> 2024-03-01 00:00:00.000001: 2 us; month 2024-02-01
        ("2024-02-29 23:59:59.999999", "2024-03-01 00:00:00.000001"),
        # 2023-12-31 23:59:59 -> 2024-01-01 00:00:01: 2 s = 2,000,000 us; month 2023-12-01
        ("2023-12-31 23:59:59", "2024-01-01 00:00:01"),
        # 02:30 on 2024-03-31 is skipped by Europe's clocks, but a naive time is no zone's:
        # one hour later is 3,600,000,000 us; month 2024-03-01
        ("2024-03-31 02:30:00", "2024-03-31 03:30:00"),
        # 2024-01-01 00:00:00 -> NULL: NULL difference; month 2024-01-01
        ("2024-01-01 00:00:00", None),
    ]
    expected = [
        (2, dt.date(2024, 2, 1)),
        (2_000_000, dt.date(2023, 12, 1)),
        (3_600_000_000, dt.date(2024, 3, 1)),
        (None, dt.date(2024, 1, 1)),
    ]
    values = ", ".join(
        f"({k}, TIMESTAMP '{a}', " + (f"TIMESTAMP '{b}')" if b else "CAST(NULL AS TIMESTAMP))")
        for k, (a, b) in enumerate(rows)
    )
    sql = (
        "SELECT k, date_diff('microsecond', a, b) AS us, "
        "CAST(date_trunc('month', a) AS DATE) AS period "
        f"FROM (VALUES {values}) AS v(k, a, b) ORDER BY k"
    )
    on_duckdb = [r[1:] for r in duckdb.sql(sql).fetchall()]
    text = spark.to_spark(sql)
    assert "UNIX_MICROS" in text and "TRUNC(" in text
    on_spark = [(r["us"], r["period"]) for r in spark.session().sql(text).collect()]
    assert on_duckdb == expected
    assert on_spark == expected


def test_spark_submit_counts_ahead_what_a_settlement_counts(ws, tmp_path):
    """pipelines/spark_submit.py under PySpark's own spark-submit (local[1]): the job's counts,
    read back by `settle run --counts-dir`, give the kpi_results of a run that counts itself."""
    import subprocess
    import sys
    from pathlib import Path

    import pyspark

    from pipelines import spark_submit

    _sample(ws)
    counts = tmp_path / "counts"
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(root)}
    env.pop("SPARK_MASTER", None)
    done = subprocess.run(
        [str(submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
         spark_submit.__file__, "--contracts", str(ws.contracts_dir), "--data",
         str(ws.data_dir), "--counts", str(counts), "--period", "2024-01", "--to", "2024-03"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # January's 9 and February's 7 files' rows; March has no files
    assert "counted 2 file(s) of 2024-01, 2024-02" in done.stdout
    kpis = "contract_id, period, kpi_id"
    from .conftest import Workspace
    from .test_interactions_closed import _blind

    (tmp_path / "d").mkdir()
    duck = Workspace(tmp_path / "d")
    _sample(duck)
    _settle(duck, "duckdb")
    # the files become garbage of the same size and mtime: only the counted-ahead months can
    # settle now
    parts = sorted((ws.data_dir / "interactions").rglob("*.parquet"))
    assert len(parts) == 2
    for part in parts:
        _blind(part)
    engine.settle(
        ws.contracts_dir,
        ws.data_dir,
        ws.db,
        engine.RunRequest(parse_period("2024-01"), parse_period("2024-03"), counts_dir=counts),
    )
    assert _stored(ws, "kpi_results", kpis) == _stored(duck, "kpi_results", kpis)
