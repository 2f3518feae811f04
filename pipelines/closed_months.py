"""Closed months are not re-measured (SPEC 12): which interaction files a run must read.

A `period=YYYY-MM/` partition of interactions/ is left unopened, neither read nor validated, when

- its month is closed for every contract whose term covers it, and
- the closing run of each of those contracts read exactly the files the partition holds now
  (same names, same sha256) with the same measurement (the definition in sql/interactions.sql,
  the thresholds in use and the month's exclusion windows: the month's "(measurement)" row).

Its counts are then the closing runs' stored `interaction_counts`, so its measured KPIs are the
closing runs' figures. Any other partition, and every file outside a `period=` folder, is read.

Hashing without reading: a file's sha256 is taken from the latest `run_inputs` row with the same
name, size and modification time (nanoseconds), as make and rsync decide that a file is
unchanged; only a file whose size or mtime differs is hashed, which reads it. So a month-end opens
no closed month's file, and a rewritten one is hashed and, if its bytes differ, re-measured. The
price: a file rewritten with other bytes but the same size and mtime to the nanosecond would be
taken as unchanged (`touch` it to force a re-measure).

A partition whose files differ from those a closing run read is re-measured, and the contract's
closed month is restated through adjustments with the reason "interactions of YYYY-MM changed"
(sql/10_adjustments.sql compares the month's files with those in input_digests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import SettleError

MEASUREMENT = "(measurement)"


@dataclass
class Plan:
    read_files: list[str]
    reused_periods: list[dt.date]
    changed: list[tuple[str, dt.date]]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise SettleError(f"{path}: cannot read the file ({exc.strerror}).") from None
    return digest.hexdigest()


def _name(file: str, data_dir: Path | None) -> str:
    path = Path(file)
    if data_dir is not None and path.is_relative_to(data_dir):
        return path.relative_to(data_dir).as_posix()
    return path.as_posix()


def plan(
    con: duckdb.DuckDBPyConnection,
    files: list[str],
    data_dir: Path | None,
    fingerprint: str,
    counts_dir: Path | None = None,
) -> Plan:
    """Decide which files to read; create calc_reused_interaction_counts (the counts of the
    partitions left unopened), calc_interaction_inputs (what this run records in run_inputs for
    interactions/) and calc_interaction_changes (contract-months whose files changed since they
    closed). Needs calc_exclusion_segments, cfg_contracts and the stored tables."""
    from .interactions import COUNT_COLUMNS, hive_period

    rows = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError as exc:
            raise SettleError(f"{file}: cannot read the file ({exc.strerror}).") from None
        rows.append((file, _name(file, data_dir), hive_period(file), st.st_size, st.st_mtime_ns))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE calc_interaction_stat (path VARCHAR, file VARCHAR, "
        "period DATE, bytes BIGINT, modified_ns BIGINT)"
    )
    if rows:
        con.executemany("INSERT INTO calc_interaction_stat VALUES (?, ?, ?, ?, ?)", rows)
    # the hash a run recorded for the same name, size and mtime: the file need not be opened
    known = {
        path: (sha, n)
        for path, sha, n in con.execute(
            """
            SELECT s.path, arg_max(r.sha256, r.run_id), arg_max(r.rows, r.run_id)
            FROM calc_interaction_stat s
            JOIN run_inputs r
              ON r.folder = 'interactions' AND r.file = s.file
             AND r.bytes = s.bytes AND r.modified_ns = s.modified_ns
            GROUP BY s.path
            """
        ).fetchall()
    }
    ahead = _manifest_stats(counts_dir, {r[2] for r in rows if r[2] is not None})
    # the hashes decided on now: those of months that may be left unopened (closed for every
    # contract, or counted ahead). Any other file is read anyway and hashed when the run is
    # recorded (fill_hashes), so `settle validate` and the counting itself never wait for it.
    decide = _closed_periods(con) | {
        p for p in (r[2] for r in rows) if p is not None and _manifest(counts_dir, p).is_file()
    }
    recorded = []
    for path, name, period, size, mtime in rows:
        if path not in known and ahead.get(name, (None, None, None))[1:] == (size, mtime):
            known[path] = (ahead[name][0], None)
        sha, n = known.get(path) or (_sha256(path) if period in decide else None, None)
        recorded.append(("interactions", name, period, sha, n, size, mtime, path))
    periods = sorted({r[2] for r in rows if r[2] is not None})
    for period in periods:
        recorded.append(
            ("interactions", MEASUREMENT, period, _month_fingerprint(con, period, fingerprint),
             None, None, None, None)
        )  # fmt: skip
    con.execute(
        "CREATE OR REPLACE TEMP TABLE calc_interaction_inputs (folder VARCHAR, file VARCHAR, "
        "period DATE, sha256 VARCHAR, rows BIGINT, bytes BIGINT, modified_ns BIGINT, "
        "path VARCHAR)"
    )
    if recorded:
        con.executemany(
            "INSERT INTO calc_interaction_inputs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", recorded
        )
    _closing_sets(con)
    reused = [
        r[0]
        for r in con.execute(
            """
            SELECT period FROM calc_interaction_closings
            GROUP BY period
            HAVING bool_and(closed AND same_files AND same_measurement)
            ORDER BY period
            """
        ).fetchall()
    ]
    precounted = _precounted(con, counts_dir, set(reused))
    con.execute("CREATE OR REPLACE TEMP TABLE calc_reused_periods (period DATE)")
    if reused or precounted:
        con.executemany(
            "INSERT INTO calc_reused_periods VALUES (?)",
            [(p,) for p in sorted({*reused, *precounted})],
        )
    columns = ", ".join(f"ic.{c}" for c in COUNT_COLUMNS)
    typed = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in COUNT_COLUMNS.items())
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE calc_reused_interaction_counts AS
        SELECT {columns}
        FROM interaction_counts ic
        JOIN calc_interaction_closings c
          ON c.closed_run_id = ic.run_id AND c.contract_id = ic.contract_id
         AND c.period = ic.period
        WHERE c.period IN (SELECT period FROM calc_reused_periods)
        """
        + "".join(
            f" UNION ALL SELECT {typed} FROM read_parquet('{path}', hive_partitioning = false)"
            for path in precounted.values()
        )
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE calc_interaction_changes AS
        SELECT contract_id, period FROM calc_interaction_closings
        WHERE closed AND recorded AND NOT same_files
        ORDER BY contract_id, period
        """
    )
    changed = con.execute("SELECT contract_id, period FROM calc_interaction_changes").fetchall()
    read = [
        r[0]
        for r in con.execute(
            "SELECT path FROM calc_interaction_inputs WHERE path IS NOT NULL AND "
            "(period IS NULL OR period NOT IN (SELECT period FROM calc_reused_periods)) "
            "ORDER BY path"
        ).fetchall()
    ]
    # keep the caller's order (the files as listed), minus those left unopened
    wanted = set(read)
    return Plan([f for f in files if f in wanted], reused, changed)


def _now_sets(con: duckdb.DuckDBPyConnection) -> dict[dt.date, tuple[str, str]]:
    """month -> (its files as 'name=sha256,...', its measurement fingerprint), as on disk now."""
    return {
        period: (files or "", measurement)
        for period, files, measurement in con.execute(
            f"""
            SELECT period,
                   string_agg(file || '=' || sha256, ',' ORDER BY file)
                       FILTER (WHERE file <> '{MEASUREMENT}'),
                   any_value(sha256) FILTER (WHERE file = '{MEASUREMENT}')
            FROM calc_interaction_inputs WHERE period IS NOT NULL
            GROUP BY period
            """
        ).fetchall()
    }


def _precounted(
    con: duckdb.DuckDBPyConnection, counts_dir: Path | None, skip: set[dt.date]
) -> dict[dt.date, str]:
    """Months counted ahead by the Dagster interaction_counts asset (write_counts) from exactly
    the files on disk now, with the same measurement: month -> its counts file."""
    if counts_dir is None:
        return {}
    found = {}
    for period, state in _now_sets(con).items():
        manifest = _manifest(counts_dir, period)
        folder = manifest.parent
        if period in skip or not manifest.is_file():
            continue
        try:
            saved = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if (saved.get("files"), saved.get("measurement")) == state:
            # a literal in the SQL that reads it: a quote in the folder name is doubled
            found[period] = (folder / "interaction_counts.parquet").as_posix().replace("'", "''")
    return found


def _manifest_stats(counts_dir: Path | None, periods: set) -> dict[str, tuple]:
    """file -> (sha256, size, mtime_ns) as the manifests of counted-ahead months recorded them."""
    stats: dict[str, tuple] = {}
    for period in periods if counts_dir is not None else ():
        manifest = _manifest(counts_dir, period)
        try:
            saved = json.loads(manifest.read_text()) if manifest.is_file() else {}
        except (OSError, ValueError):
            saved = {}
        for name, (sha, size, mtime) in saved.get("stat", {}).items():
            stats[name] = (sha, size, mtime)
    return stats


def write_counts(con: duckdb.DuckDBPyConnection, counts_dir: Path) -> list[dt.date]:
    """Store the counts of every `period=` month just read as Parquet under counts_dir, each
    with a manifest of the files and measurement they come from, for a later run to use."""
    fill_hashes(con)
    written = []
    for period, (files, measurement) in sorted(_now_sets(con).items()):
        folder = Path(counts_dir) / f"period={period:%Y-%m}"
        stat = {
            name: [sha, size, mtime]
            for name, sha, size, mtime in con.execute(
                "SELECT file, sha256, bytes, modified_ns FROM calc_interaction_inputs "
                "WHERE period = ? AND path IS NOT NULL ORDER BY file",
                [period],
            ).fetchall()
        }
        manifest = {"files": files, "measurement": measurement, "stat": stat}
        _write_month_counts(con, folder, period, manifest)
        written.append(period)
    return written


def _write_month_counts(
    con: duckdb.DuckDBPyConnection, folder: Path, period: dt.date, manifest: dict
) -> None:
    """The manifest vouches for the Parquet beside it, so it goes first and comes back last, and
    each file is written under a temporary name and renamed: a failed or killed write leaves a
    month with no manifest (counted again), never an old manifest over new or half-written
    counts."""
    counts, saved = folder / "interaction_counts.parquet", folder / "manifest.json"
    tmp_counts, tmp_saved = folder / ".interaction_counts.parquet.tmp", folder / ".manifest.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        saved.unlink(missing_ok=True)
        literal = tmp_counts.as_posix().replace("'", "''")
        con.execute(
            "COPY (SELECT * FROM calc_interaction_counts WHERE period = ? "
            "ORDER BY contract_id, service_line_id, excluded_from, kind, bound) "
            f"TO '{literal}' (FORMAT parquet)",
            [period],
        )
        os.replace(tmp_counts, counts)
        tmp_saved.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp_saved, saved)
    except (duckdb.Error, OSError) as exc:
        for leftover in (tmp_counts, tmp_saved):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise SettleError(
            f"{folder}: the interaction counts of {period:%Y-%m} could not be written ({exc}); "
            "the month has no manifest now and is counted again when it is next read"
        ) from None


def _manifest(counts_dir: Path | None, period: dt.date) -> Path:
    if counts_dir is None:
        return Path("/nonexistent/manifest.json")
    return Path(counts_dir) / f"period={period:%Y-%m}" / "manifest.json"


def _closed_periods(con: duckdb.DuckDBPyConnection) -> set[dt.date]:
    """Months on disk closed for every contract whose term covers them."""
    return {
        r[0]
        for r in con.execute(
            """
            SELECT m.period
            FROM (SELECT DISTINCT period FROM calc_interaction_stat WHERE period IS NOT NULL) m
            JOIN cfg_contracts c
              ON m.period >= c.start_period
             AND m.period <= term_end(c.end_period)
            LEFT JOIN period_status s ON s.contract_id = c.contract_id AND s.period = m.period
            GROUP BY m.period
            HAVING bool_and(coalesce(s.status = 'closed', false))
            """
        ).fetchall()
    }


def fill_hashes(con: duckdb.DuckDBPyConnection) -> None:
    """Hash the files whose hash was not needed to plan the run (they were read anyway)."""
    missing = con.execute(
        "SELECT path FROM calc_interaction_inputs WHERE sha256 IS NULL AND path IS NOT NULL"
    ).fetchall()
    for (path,) in missing:
        con.execute(
            "UPDATE calc_interaction_inputs SET sha256 = ? WHERE path = ?", [_sha256(path), path]
        )


def _month_fingerprint(con: duckdb.DuckDBPyConnection, period: dt.date, fingerprint: str) -> str:
    windows = con.execute(
        """
        SELECT contract_id, starts_at, ends_at, all_kpis, kpi_ids
        FROM calc_exclusion_segments
        WHERE starts_at < ?::DATE + INTERVAL 1 MONTH AND ends_at > ?::DATE
        ORDER BY contract_id, starts_at
        """,
        [period, period],
    ).fetchall()
    digest = hashlib.sha256(fingerprint.encode())
    for row in windows:
        digest.update(repr(row).encode())
    return digest.hexdigest()


def _closing_sets(con: duckdb.DuckDBPyConnection) -> None:
    """calc_interaction_closings: per partition month on disk and contract whose term covers it,
    whether the month is closed and whether its closing run read the same files and measurement."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE calc_interaction_closings AS
        WITH months AS (
            SELECT DISTINCT period FROM calc_interaction_inputs WHERE period IS NOT NULL
        ),
        covering AS (
            SELECT c.contract_id, m.period, s.closed_run_id,
                   coalesce(s.status = 'closed', false) AS closed
            FROM months m
            JOIN cfg_contracts c
              ON m.period >= c.start_period
             AND m.period <= term_end(c.end_period)
            LEFT JOIN period_status s ON s.contract_id = c.contract_id AND s.period = m.period
        ),
        now_sets AS (
            SELECT period,
                   string_agg(file || '=' || sha256, ',' ORDER BY file)
                       FILTER (WHERE file <> '(measurement)') AS files,
                   any_value(sha256) FILTER (WHERE file = '(measurement)') AS measurement
            FROM calc_interaction_inputs WHERE period IS NOT NULL
            GROUP BY period
        ),
        then_files AS (
            SELECT r.run_id, r.period,
                   string_agg(r.file || '=' || r.sha256, ',' ORDER BY r.file)
                       FILTER (WHERE r.file <> '(measurement)') AS files,
                   any_value(r.sha256) FILTER (WHERE r.file = '(measurement)') AS measurement
            FROM run_inputs r
            WHERE r.folder = 'interactions'
              AND r.run_id IN (SELECT closed_run_id FROM covering)
            GROUP BY r.run_id, r.period
        )
        SELECT
            c.contract_id, c.period, c.closed_run_id, c.closed,
            EXISTS (SELECT 1 FROM run_inputs r WHERE r.run_id = c.closed_run_id) AS recorded,
            coalesce(t.files = n.files, false) AS same_files,
            coalesce(t.measurement = n.measurement, false) AS same_measurement
        FROM covering c
        JOIN now_sets n ON n.period = c.period
        LEFT JOIN then_files t ON t.run_id = c.closed_run_id AND t.period = c.period
        ORDER BY c.period, c.contract_id
        """
    )


def record(con: duckdb.DuckDBPyConnection, run_id: int, other_files: dict[str, str]) -> None:
    """run_inputs of this run: every input file it read or relied on (interactions/ from
    calc_interaction_inputs, the other folders from their hashes), with month and hash."""
    fill_hashes(con)
    con.execute(
        "INSERT INTO run_inputs SELECT ?, folder, file, period, sha256, rows, bytes, modified_ns "
        "FROM calc_interaction_inputs ORDER BY file, period",
        [run_id],
    )
    others = []
    for name, sha in sorted(other_files.items()):
        if name.startswith("interactions/"):
            continue
        from .interactions import hive_period

        others.append((run_id, name.split("/", 1)[0], name, hive_period(name), sha))
    if others:
        con.executemany(
            "INSERT INTO run_inputs (run_id, folder, file, period, sha256) VALUES (?, ?, ?, ?, ?)",
            others,
        )


def interaction_hashes(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """file -> sha256 of every interaction file this run read or relied on."""
    fill_hashes(con)
    return dict(
        con.execute(
            "SELECT file, sha256 FROM calc_interaction_inputs WHERE path IS NOT NULL ORDER BY file"
        ).fetchall()
    )


def count_ahead(
    contracts_dir: Path, data_dir: Path, counts_dir: Path, first, last, engine_name: str
) -> dict:
    """Validate and count the `period=` interaction files of months first..last, on DuckDB or
    Spark, into counts_dir (write_counts), for a later settlement to read. Writes no database."""
    import dataclasses

    from . import engine
    from .interactions import check_interactions, hive_period
    from .periods import fmt

    contracts, inputs = engine.load(contracts_dir, data_dir)
    wanted = [
        f
        for f in inputs.interaction_files
        if (p := hive_period(f)) is not None and first <= p <= last
    ]
    only = dataclasses.replace(inputs, interaction_files=wanted)
    con = duckdb.connect()
    try:
        engine.ensure_schema(con)
        engine.run_script(con, engine.SQL_DIR / "01_macros.sql")
        engine.register_terms(con, contracts)
        engine.register_inputs(con, only, engine_name)
        check_interactions(con)
        months = write_counts(con, counts_dir)
        rows = con.execute("SELECT count(*) FROM calc_interaction_counts").fetchone()[0]
    finally:
        con.close()
    return {"files": len(wanted), "months": [fmt(m) for m in months], "rows": rows}
