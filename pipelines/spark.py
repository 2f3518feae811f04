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
import socket
import subprocess
import tempfile
import uuid
import warnings
from pathlib import Path

import duckdb

from .errors import SettleError

_SESSION = None
# the Spark SQL texts of the last count, in order (the view, then the counts): what Spark ran
last_statements: list[str] = []


def to_spark(sql: str) -> str:
    """DuckDB SQL of the portable subset -> Spark SQL (sqlglot), with the two per-row time
    functions of the counts rewritten to Spark's cheap exact forms (`_fast_time`)."""
    try:
        import sqlglot
    except ImportError:
        raise SettleError(_missing("sqlglot")) from None
    tree = sqlglot.parse_one(sql, read="duckdb").transform(_fast_time)
    return tree.sql(dialect="spark")


def _fast_time(node):
    """Spark's literal translations of the two time functions the counts evaluate on every row
    cost more than the rest of the row: TIMESTAMPDIFF(MICROSECOND, ...) builds two
    LocalDateTime objects per row, DATE_TRUNC('MONTH', ...) casts the naive timestamp to a
    zoned one and truncates it through the calendar. Same values, zone-free or UTC-only:
    - date_diff('microsecond', a, b) -> UNIX_MICROS(b) - UNIX_MICROS(a), the naive timestamps
      read as UTC (session() pins spark.sql.session.timeZone to UTC, so the cast shifts
      nothing and the difference is the exact microseconds, NULL when either is NULL);
    - CAST(date_trunc('month', t) AS DATE) -> TRUNC(CAST(t AS DATE), 'MM'), the first day of
      t's month (a naive timestamp's date needs no zone)."""
    from sqlglot import exp

    if isinstance(node, exp.DateDiff) and node.unit and node.unit.name.upper() == "MICROSECOND":
        utc = exp.DataType.build("timestamptz")

        def micros(value):
            return exp.Anonymous(this="UNIX_MICROS", expressions=[exp.cast(value.copy(), utc)])

        return exp.Paren(this=exp.Sub(this=micros(node.this), expression=micros(node.expression)))
    if (
        isinstance(node, exp.Cast)
        and node.to.is_type("date")
        and isinstance(node.this, (exp.TimestampTrunc, exp.DateTrunc))
        and node.this.unit is not None
        and node.this.unit.name.upper() == "MONTH"
    ):
        day = exp.cast(node.this.this.copy(), exp.DataType.build("date"))
        return exp.Anonymous(this="TRUNC", expressions=[day, exp.Literal.string("MM")])
    return node


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


def _require_java() -> None:
    version = _java_version()
    if version is None or version < 17:
        found = f"found Java {version}" if version else "no java on PATH or JAVA_HOME"
        raise SettleError(
            f"--interactions-engine spark runs Spark locally and needs Java 17 or later "
            f"({found}). Install a Java 17 runtime (e.g. apt-get install openjdk-17-jre-"
            "headless) or set JAVA_HOME, or set SPARK_REMOTE to a Spark Connect server "
            "(sc://host:15002)."
        )


def _require_server(remote: str) -> None:
    """Fail at once when nothing listens at SPARK_REMOTE: the Connect client would otherwise
    retry for minutes before it gives up."""
    match = re.match(r"sc://\[?([^/;:\]]+)\]?(?::(\d+))?", remote)
    if not match:
        raise SettleError(f"SPARK_REMOTE '{remote}' is not sc://host[:port] or local[n]")
    host, port = match.group(1), int(match.group(2) or 15002)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise SettleError(
            f"SPARK_REMOTE {remote}: no Spark Connect server answers at {host}:{port} "
            f"({exc.strerror or exc}). Start one (sbin/start-connect-server.sh) or fix the URL."
        ) from None


def partitions() -> str:
    return os.environ.get("SETTLE_SPARK_PARTITIONS", "8")


def session():
    """The Spark session of this process (created once): Spark Connect, a master, or local.

    SPARK_REMOTE=sc://host:port connects to a Spark Connect server; SPARK_REMOTE=local[n] starts
    one in a local JVM (PySpark 4, on port 15002)."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SettleError(_missing("PySpark 4")) from None
    remote = os.environ.get("SPARK_REMOTE")
    if remote and not remote.startswith("local"):
        _require_server(remote)
        builder = SparkSession.builder.remote(remote)
    elif "PYSPARK_GATEWAY_PORT" in os.environ and not remote:
        # under spark-submit: the JVM runs already, and the master, resources and UI come from
        # its command line (SPARK_MASTER still overrides the master)
        builder = SparkSession.builder
        if os.environ.get("SPARK_MASTER"):
            builder = builder.master(os.environ["SPARK_MASTER"])
    else:
        _require_java()  # a local JVM: classic local mode or a local Connect server
        if remote:
            try:
                import grpc  # noqa: F401
            except ImportError:
                raise SettleError(_missing("Spark Connect's client (grpcio)")) from None
            # PySpark starts the server in a local JVM and connects to it on port 15002
            builder = SparkSession.builder.remote(remote)
        else:
            builder = SparkSession.builder.master(os.environ.get("SPARK_MASTER", "local[*]"))
        # a driver started here needs no web UI, and its progress bars would garble the CLI's
        # stderr
        builder = builder.config("spark.ui.enabled", "false").config(
            "spark.ui.showConsoleProgress", "false"
        )
    builder = builder.appName("settle-interaction-counts")
    try:
        with warnings.catch_warnings():
            # a Connect session re-applies the builder's static settings and warns it cannot
            warnings.filterwarnings("ignore", message=".*CANNOT_MODIFY_CONFIG.*")
            spark = builder.getOrCreate()
        # naive timestamps are the contact centre's local time: no time zone may shift them
        # (to_spark's microsecond differences rely on UTC as well)
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
        spark.conf.set("spark.sql.shuffle.partitions", partitions())
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
        spark.read.parquet(spark_path(segments)).createOrReplaceTempView("calc_exclusion_segments")
        spark.sql(statements[1]).write.mode("overwrite").parquet(spark_path(out))
    except SettleError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettleError(f"interactions/: Spark could not count the files: {first}") from None
    return f"{out}/*.parquet"


PATHS_ENV = "SETTLE_SPARK_PATHS"


def spark_path(path: str) -> str:
    """The name Spark uses for a path of this machine. SETTLE_SPARK_PATHS maps local prefixes
    to the cluster's names of the same storage (`/mnt/lake=s3a://lake,/data=abfss://c@a/d`):
    this machine reads an object store through a mount while the executors read it directly.
    Unmapped local paths are made absolute (a Connect server has another working folder)."""
    if "://" in path:
        return path
    path = os.path.abspath(path)
    pairs = []
    for item in filter(None, (s.strip() for s in os.environ.get(PATHS_ENV, "").split(","))):
        local, sep, remote = item.partition("=")
        if not sep or not local or not remote:
            raise SettleError(f"{PATHS_ENV}: '{item}' is not LOCAL_PREFIX=SPARK_PREFIX")
        pairs.append((os.path.abspath(local), remote.rstrip("/")))
    for local, remote in sorted(pairs, key=lambda pair: -len(pair[0])):
        if path == local or path.startswith(local + os.sep):
            return remote + path[len(local) :]
    return path


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
        part = spark.read.parquet(*(spark_path(path) for path in paths))
        frame = part if frame is None else frame.unionByName(part, allowMissingColumns=True)
    return frame


def discard(counts_glob: str) -> None:
    """Remove a local work folder of count_interactions once DuckDB has read the counts."""
    work = counts_glob.rsplit("/interaction_counts/", 1)[0]
    if "://" not in work:
        shutil.rmtree(work, ignore_errors=True)
