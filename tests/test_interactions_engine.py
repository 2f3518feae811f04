"""Choosing the interactions engine (SPEC 12) without starting Spark: names, and the clear error
of a machine without Java 17."""

from __future__ import annotations

import socket

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


def test_no_java_on_path_names_java_17(monkeypatch, tmp_path):
    # no JAVA_HOME and a PATH without java: neither a local Spark nor a local Connect server
    monkeypatch.setattr(spark, "_SESSION", None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    for remote in (None, "local[2]"):
        if remote:
            monkeypatch.setenv("SPARK_REMOTE", remote)
        else:
            monkeypatch.delenv("SPARK_REMOTE", raising=False)
        with pytest.raises(SettleError) as err:
            spark.session()
        assert "needs Java 17 or later (no java on PATH or JAVA_HOME)" in str(err.value)


def test_an_older_java_is_named(monkeypatch, tmp_path):
    # a real (if tiny) java of version 11 on JAVA_HOME: the message says what it found
    java = tmp_path / "jdk11" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    monkeypatch.setattr(spark, "_SESSION", None)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk11"))
    with pytest.raises(SettleError, match=r"needs Java 17 or later \(found Java 11\)"):
        spark.session()


def test_a_spark_connect_url_where_nothing_listens_fails_at_once(monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago and has no server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(spark, "_SESSION", None)
    monkeypatch.setenv("SPARK_REMOTE", f"sc://127.0.0.1:{port}")
    with pytest.raises(SettleError, match=f"no Spark Connect server answers at 127.0.0.1:{port}"):
        spark.session()
    monkeypatch.setenv("SPARK_REMOTE", "http://spark")
    with pytest.raises(SettleError, match="is not sc://host"):
        spark.session()


def test_the_portable_definition_transpiles_without_duckdb_only_functions():
    sql = interactions.counts_sql([20], [4], True, set())
    text = spark.to_spark(sql)
    for duckdb_only in ("EPOCH_US", "COUNT_IF", "LIST_", "::"):
        assert duckdb_only not in text.upper()
    # the exact-microsecond wait and the threshold classes survive transpilation
    assert "UNIX_MICROS(CAST(answered_at AS TIMESTAMP)) - UNIX_MICROS(CAST(arrived_at" in text
    assert "('wait', 20)" in text and "('csat', 4)" in text
