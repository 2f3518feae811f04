"""The interaction_counts stage on DuckDB and on Spark local: time both, check identical counts.

    .venv/bin/python bench/interactions.py                # 60M interactions (make bench)
    .venv/bin/python bench/interactions.py --rows 2000000 # a quick look

Generates one month of synthetic interactions (1,000 contracts x 2 service lines by default) as
Parquet files in a `period=YYYY-MM/` folder with DuckDB, then runs the one definition of
sql/interactions.sql (thresholds 5 s and 20 s, csat top box 4, two exclusion windows per contract)
on DuckDB and, transpiled, on Spark (SPARK_REMOTE or SPARK_MASTER, default local[*]), and compares
the two results row for row. Prints the machine and its load, row counts, both timings as wall and
CPU seconds and rows/s (Spark's start-up apart; its CPU is the JVM's, read from /proc), and the
peak RSS of this process (DuckDB runs in it) and of Spark's JVM. The files are written one
COPY per file of 5M rows, so generating needs a few hundred MB whatever --rows is.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import interactions, spark  # noqa: E402


def generate(folder: Path, rows: int, contracts: int, files: int) -> list[str]:
    """`rows` interactions of 2026-01 in `files` Parquet files: 70% answered, 25% abandoned,
    5% neither; waits 0..120 s in microseconds; handle_s, fcr and csat on most answered."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "2GB"})
    con.execute("SET enable_progress_bar = false")
    per_file = -(-rows // files)
    out = []
    for k in range(files):
        first, last = k * per_file, min(rows, (k + 1) * per_file)
        if first >= last:
            break
        path = folder / f"part-{k:03d}.parquet"
        con.execute(
            f"""
            COPY (
                SELECT
                    'C' || lpad(CAST(i % {contracts} AS VARCHAR), 5, '0') AS contract_id,
                    CASE WHEN i % 7 = 0 THEN 'email' ELSE 'voice' END AS service_line_id,
                    TIMESTAMP '2026-01-01' + to_microseconds((i * 2654435761) % 2678400000000)
                        AS arrived_at,
                    CASE WHEN i % 20 < 14 THEN arrived_at
                         + to_microseconds((i * 40503) % 120000000) END AS answered_at,
                    CASE WHEN i % 20 BETWEEN 14 AND 18 THEN arrived_at
                         + to_microseconds((i * 9973) % 90000000) END AS abandoned_at,
                    CASE WHEN i % 20 < 13 THEN CAST(30 + (i * 31) % 900 AS INTEGER) END
                        AS handle_s,
                    CASE WHEN i % 20 < 10 THEN i % 3 <> 0 END AS first_contact_resolved,
                    CASE WHEN i % 20 < 6 THEN CAST(1 + i % 10 AS TINYINT) END AS csat
                FROM range({first}, {last}) t(i)
            ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
            """
        )
        out.append(str(path))
    con.close()
    return out


def prepare(con: duckdb.DuckDBPyConnection, files: list[str], contracts: int):
    """The exclusion segments and the view parts the stage needs, as a settlement makes them."""
    con.execute(
        f"""
        CREATE TEMP TABLE calc_exclusion_segments AS
        SELECT row_number() OVER (ORDER BY c, w) AS segment,
               'C' || lpad(CAST(c AS VARCHAR), 5, '0') AS contract_id,
               TIMESTAMP '2026-01-05 10:00:00' + INTERVAL (w * 7) DAY AS starts_at,
               TIMESTAMP '2026-01-05 12:00:00' + INTERVAL (w * 7) DAY AS ends_at,
               w = 0 AS all_kpis, ['sl'] AS kpi_ids
        FROM range({contracts}) a(c), range(2) b(w)
        """
    )
    listing = ", ".join("'" + f + "'" for f in files)
    view = interactions._view_parts(con, listing)
    con.execute(view.duckdb_sql(listing))
    return view, interactions.counts_sql([5, 20], [4], bool(view.cast_columns), set())


def _jvms() -> list[int]:
    """The Java processes descending from this one (the local Spark driver, a local Connect
    server): their CPU and memory are Spark's."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                if Path(f"/proc/{child}/exe").resolve().name == "java":
                    found.append(child)
            except OSError:
                pass
    return found


def _jvm_cpu() -> float:
    total = 0.0
    for pid in _jvms():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _jvm_peak_mb() -> float:
    peak = 0.0
    for pid in _jvms():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000_000)
    parser.add_argument("--contracts", type=int, default=1000)
    parser.add_argument("--files", type=int, default=0, help="default: one per 5M rows")
    parser.add_argument("--keep", default="", help="folder to generate into and keep")
    parser.add_argument(
        "--warm", action="store_true", help="count on Spark a second time, on the warm JVM"
    )
    args = parser.parse_args()
    files_n = args.files or max(1, -(-args.rows // 5_000_000))
    root = Path(args.keep or tempfile.mkdtemp(prefix="settle-bench-interactions-"))
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    started = time.perf_counter()
    files = generate(root / "interactions" / "period=2026-01", args.rows, args.contracts, files_n)
    print(f"generated {args.rows:,} interactions in {len(files)} file(s): "
          f"{time.perf_counter() - started:.1f}s")  # fmt: skip

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    view, sql = prepare(con, files, args.contracts)
    started, cpu = time.perf_counter(), _cpu()
    con.execute(f"CREATE TEMP TABLE duck AS {sql}")
    duck_s, duck_cpu = time.perf_counter() - started, _cpu() - cpu
    groups = con.execute("SELECT count(*) FROM duck").fetchone()[0]
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(
        f"DuckDB   interaction_counts: {duck_s:7.2f}s wall, {duck_cpu:7.2f}s CPU, "
        f"{args.rows / duck_s / 1e6:6.1f}M rows/s  ({groups:,} rows, "
        f"{threads} threads)"
    )

    master = os.environ.get("SPARK_REMOTE") or os.environ.get("SPARK_MASTER", "local[*]")
    started = time.perf_counter()
    spark.session()
    boot_s, boot_cpu = time.perf_counter() - started, _jvm_cpu()
    print(f"Spark    session start-up:    {boot_s:7.2f}s wall, {boot_cpu:7.2f}s CPU  ({master})")
    started, cpu = time.perf_counter(), _jvm_cpu()
    path = spark.count_interactions(con, files, view, sql)
    spark_s, spark_cpu = time.perf_counter() - started, _jvm_cpu() - cpu
    print(
        f"Spark    interaction_counts: {spark_s:7.2f}s wall, {spark_cpu:7.2f}s CPU, "
        f"{args.rows / spark_s / 1e6:6.1f}M rows/s  (a cold JVM: includes JIT and codegen; "
        f"shuffle partitions {spark.partitions()})"
    )
    if args.warm:
        started, cpu = time.perf_counter(), _jvm_cpu()
        spark.discard(spark.count_interactions(con, files, view, sql))
        warm_s, warm_cpu = time.perf_counter() - started, _jvm_cpu() - cpu
        print(
            f"Spark    again, warm JVM:    {warm_s:7.2f}s wall, {warm_cpu:7.2f}s CPU, "
            f"{args.rows / warm_s / 1e6:6.1f}M rows/s"
        )

    con.execute(
        f"CREATE TEMP TABLE sparked AS SELECT * FROM read_parquet('{path}', "
        "hive_partitioning = false)"
    )
    only_duck = con.execute("SELECT count(*) FROM (FROM duck EXCEPT ALL FROM sparked)").fetchone()
    only_spark = con.execute("SELECT count(*) FROM (FROM sparked EXCEPT ALL FROM duck)").fetchone()
    total = con.execute("SELECT sum(interactions) FROM duck WHERE kind = 'all'").fetchone()[0]
    identical = only_duck[0] == 0 and only_spark[0] == 0 and total == args.rows
    print(
        f"identical counts: {'yes' if identical else 'NO'} ({total:,} interactions counted; "
        f"{only_duck[0]} row(s) only in DuckDB, {only_spark[0]} only in Spark)"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    jvm_mb = _jvm_peak_mb()
    jvm = f"{jvm_mb:,.0f} MB" if jvm_mb else "not local"
    print(f"peak RSS: this process (DuckDB) {peak_mb:,.0f} MB, Spark's JVM {jvm}")
    print(
        f"ratio Spark / DuckDB: {spark_s / duck_s:.1f}x wall, "
        f"{spark_cpu / max(duck_cpu, 1e-9):.1f}x CPU; load average now "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        "on a cluster: executors scan the files' 128 MB splits (about 8M interactions each) in "
        "parallel, from the object store instead of a local disk, so the scan time falls with "
        "executor cores until the listing and the few-KB shuffle of partial counts dominate; the "
        "driver collects nothing (the counts go to Parquet); a long-lived Spark Connect server "
        "pays the start-up and JIT warm-up once. DuckDB on one machine is bounded by its cores "
        "and disk."
    )
    spark.discard(path)
    spark.stop()
    con.close()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
