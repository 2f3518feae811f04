"""The interaction_counts stage on Apache Spark (`--interactions-engine spark`, SPEC 12).

Spark runs the very statement DuckDB runs: `interaction_counts` of sql/interactions.sql, filled
in with the same thresholds (pipelines/interactions.counts_sql) and transpiled from DuckDB to
Spark SQL by sqlglot (`to_spark`). The cast view over the files and therefore the validation
columns (cast errors, extremes) are the same statements too, so Spark rejects what DuckDB
rejects; the row rules are then tested on the counts in DuckDB (check_interactions), which reads
the files again only to name the offending rows of a broken rule.

The session: SPARK_REMOTE (`sc://host:15002`) selects Spark Connect; otherwise SPARK_MASTER
(`spark://host:7077`, `yarn`, `k8s://...`), default `local[*]`. Spark reads the interaction files
and a small Parquet file of the exclusion segments and writes the counts as Parquet under
SETTLE_SPARK_WORKDIR (default: a temporary folder), which the settlement then reads with DuckDB:
on a cluster that folder must be one both the cluster and the settling machine can reach.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import duckdb

from .errors import SettleError

_SESSION = None
# the Spark SQL texts of the last count, in order (the view, then the counts): what Spark ran
last_statements: list[str] = []


def to_spark(sql: str) -> str:
    """DuckDB SQL of the portable subset -> Spark SQL (sqlglot)."""
    try:
        import sqlglot
    except ImportError:
        raise SettleError(_missing("sqlglot")) from None
    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


def _missing(package: str) -> str:
    return (
        f"--interactions-engine spark needs {package}, from the optional `spark` dependency "
        "group: `uv sync --group spark` (make setup installs it)."
    )


def _java_version() -> int | None:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def session():
    """The Spark session of this process (created once): Spark Connect, a master, or local."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SettleError(_missing("PySpark 4")) from None
    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        builder = SparkSession.builder.remote(remote)
    else:
        version = _java_version()
        if version is None or version < 17:
            found = f"found Java {version}" if version else "no java on PATH or JAVA_HOME"
            raise SettleError(
                f"--interactions-engine spark runs Spark locally and needs Java 17 or later "
                f"({found}). Install a Java 17 runtime (e.g. apt-get install openjdk-17-jre-"
                "headless) or set JAVA_HOME, or set SPARK_REMOTE to use a Spark Connect server."
            )
        builder = SparkSession.builder.config(
            "spark.sql.shuffle.partitions", os.environ.get("SETTLE_SPARK_PARTITIONS", "8")
        )
        # under spark-submit the master and resources come from its command line
        if "PYSPARK_GATEWAY_PORT" not in os.environ or os.environ.get("SPARK_MASTER"):
            builder = builder.master(os.environ.get("SPARK_MASTER", "local[*]")).config(
                "spark.ui.enabled", "false"
            )
    builder = builder.appName("settle-interaction-counts")
    try:
        spark = builder.getOrCreate()
        # naive timestamps are the contact centre's local time: no time zone may shift them
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
    except Exception as exc:  # py4j / grpc errors: one clear message, no Java stack
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettleError(f"could not start Spark for the interaction counts: {first}") from None
    _SESSION = spark
    return spark


def stop() -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None


# the Spark SQL texts of the last count, in order (the view, then the counts): what Spark ran
last_statements: list[str] = []


def count_interactions(con: duckdb.DuckDBPyConnection, files: list[str], view, sql: str) -> str:
    """Run the counts on Spark over `files`; return the Parquet folder (a glob) DuckDB reads."""
    spark = session()
    root = os.environ.get("SETTLE_SPARK_WORKDIR")
    if root:
        work = f"{root.rstrip('/')}/{uuid.uuid4().hex}"
    else:
        work = tempfile.mkdtemp(prefix="settle-spark-")
    segments = f"{work}/exclusion_segments.parquet"
    out = f"{work}/interaction_counts"
    if "://" not in work:
        Path(work).mkdir(parents=True, exist_ok=True)
    con.execute(
        "COPY (SELECT segment, contract_id, starts_at, ends_at FROM calc_exclusion_segments) "
        f"TO '{segments}' (FORMAT parquet)"
    )
    statements = [to_spark(view.select_sql("raw_interactions")), to_spark(sql)]
    last_statements[:] = statements
    try:
        _read(spark, con, files).createOrReplaceTempView("raw_interactions")
        spark.sql(statements[0]).createOrReplaceTempView("in_interactions")
        spark.read.parquet(segments).createOrReplaceTempView("calc_exclusion_segments")
        spark.sql(statements[1]).write.mode("overwrite").parquet(out)
    except SettleError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettleError(f"interactions/: Spark could not count the files: {first}") from None
    return f"{out}/*.parquet"


def _read(spark, con: duckdb.DuckDBPyConnection, files: list[str]):
    """The files as one DataFrame by column name. Spark's mergeSchema refuses files whose
    integer widths differ (int8 csat in one, int32 in another); a union by name widens them as
    DuckDB's union_by_name does. Files are grouped by schema (from the footers, via DuckDB) so
    the union has one branch per distinct schema, not per file."""
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    groups: dict[str, list[str]] = {}
    for file, signature in con.execute(
        "SELECT file_name, string_agg(name || ':' || duckdb_type, ',' ORDER BY name) "
        f"FROM parquet_schema([{listing}]) WHERE duckdb_type IS NOT NULL "
        "GROUP BY file_name ORDER BY file_name"
    ).fetchall():
        groups.setdefault(signature, []).append(file)
    frame = None
    for paths in groups.values():
        part = spark.read.parquet(*paths)
        frame = part if frame is None else frame.unionByName(part, allowMissingColumns=True)
    return frame


def discard(counts_glob: str) -> None:
    """Remove a local work folder of count_interactions once DuckDB has read the counts."""
    work = counts_glob.rsplit("/interaction_counts/", 1)[0]
    if "://" not in work:
        shutil.rmtree(work, ignore_errors=True)
