"""The interaction_counts stage over Spark Connect (SPARK_REMOTE, SPEC 12): the same figures.

The module starts a real Spark Connect server (PySpark's own spark-submit of SparkConnectServer,
local[1], on a free port) as a separate process, as a cluster runs one, and settles through
SPARK_REMOTE=sc://localhost:PORT: the client talks to it over gRPC only. One server for the
module. The sample is test_spark's: every metric and abandon treatment, an exclusion window,
files of two schemas, and a month without interactions.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pyspark
import pytest

from pipelines import spark

from .test_spark import _sample, _settle, _stored

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17")

KEYS = ("SPARK_REMOTE", "SPARK_MASTER", "SETTLE_SPARK_PARTITIONS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module", autouse=True)
def connect_server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(submit),
                "--class",
                "org.apache.spark.sql.connect.service.SparkConnectServer",
                "--master",
                "local[1]",
                "--conf",
                f"spark.connect.grpc.binding.port={port}",
                "--conf",
                "spark.ui.enabled=false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    saved = {k: os.environ.get(k) for k in KEYS}
    try:
        # a JVM start on a loaded machine: wait for the port (or the server's death)
        deadline = time.monotonic() + 600
        while not _listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Spark Connect server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        spark.stop()  # a classic session of an earlier module
        os.environ.pop("SPARK_MASTER", None)
        os.environ["SPARK_REMOTE"] = f"sc://localhost:{port}"
        os.environ["SETTLE_SPARK_PARTITIONS"] = "2"
        yield
    finally:
        spark.stop()
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_spark_connect_stores_what_duckdb_stores(tmp_path):
    from .conftest import Workspace

    (tmp_path / "d").mkdir()
    (tmp_path / "c").mkdir()
    duck, connect = Workspace(tmp_path / "d"), Workspace(tmp_path / "c")
    for ws in (duck, connect):
        _sample(ws)
    _settle(duck, "duckdb")
    _settle(connect, "spark")
    # it really went through a Spark Connect client, not a classic session
    assert type(spark.session()).__module__.startswith("pyspark.sql.connect")
    counts_order = "contract_id, service_line_id, period, excluded_from, kind, bound"
    duck_counts = _stored(duck, "interaction_counts", counts_order)
    assert duck_counts == _stored(connect, "interaction_counts", counts_order)
    # 3 months x 4 classes: January (no window), February in and out of the windows; the
    # hand-checked figures themselves are test_spark's and test_measures'
    assert sum(r[6] for r in duck_counts if r[4] == "all") == 9 + 7
    kpis = _stored(duck, "kpi_results", "contract_id, period, kpi_id")
    assert kpis == _stored(connect, "kpi_results", "contract_id, period, kpi_id")
