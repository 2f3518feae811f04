"""Choosing the interactions engine (SPEC 12) without starting Spark: names, and the clear error
of a machine without Java 17."""

from __future__ import annotations

import pytest

from pipelines import interactions, spark
from pipelines.errors import SettleError


def test_engine_from_argument_environment_or_default(monkeypatch):
    monkeypatch.delenv("SETTLE_INTERACTIONS_ENGINE", raising=False)
    assert interactions.engine_name() == "duckdb"
    monkeypatch.setenv("SETTLE_INTERACTIONS_ENGINE", "Spark")
    assert interactions.engine_name() == "spark"
    assert interactions.engine_name("duckdb") == "duckdb"
    with pytest.raises(SettleError, match="'flink' is not one of duckdb, spark"):
        interactions.engine_name("flink")


def test_no_java_names_java_17(monkeypatch, tmp_path):
    monkeypatch.setattr(spark, "_SESSION", None)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(SettleError, match="needs Java 17 or later"):
        spark.session()


def test_the_portable_definition_transpiles_without_duckdb_only_functions():
    sql = interactions.counts_sql([20], [4], True, set())
    text = spark.to_spark(sql)
    for duckdb_only in ("EPOCH_US", "COUNT_IF", "LIST_", "::"):
        assert duckdb_only not in text.upper()
    # the exact-microsecond wait and the threshold classes survive transpilation
    assert "DATEDIFF(MICROSECOND, arrived_at, answered_at)" in text
    assert "('wait', 20)" in text and "('csat', 4)" in text
