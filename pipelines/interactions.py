"""Raw interactions: never loaded into Python; DuckDB reads, validates and counts them in one scan.

`interactions/` can hold tens of millions of rows a month, so it gets none of the Polars/Pandera
treatment of the other folders. Instead:

1. `register_interactions` checks each file's schema from the Parquet footers (names and types,
   no data read) and exposes the files as the view `in_interactions`, cast to one type per column,
   with `_file` and `_row` (0-based) for error messages.
   It then runs sql/interactions.sql: ONE scan that both counts what the measured KPIs need
   (`calc_interaction_counts`) and carries the extremes the row rules test.
2. `check_interactions`, called by the engine with the other input rules, tests those extremes.
   Only when a rule is broken are the files read again, to name the first offending rows.

sql/05_measures.sql then derives each measured KPI from the counts, without touching the files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .checks import Check
from .checks import run as run_checks
from .errors import SettleError
from .inputs import check_parquet_footer, unreadable_file

SQL_FILE = Path(__file__).resolve().parent.parent / "sql" / "interactions.sql"

# column -> the type the settlement reads it as (SPEC 6)
COLUMNS: dict[str, str] = {
    "contract_id": "VARCHAR",
    "service_line_id": "VARCHAR",
    "arrived_at": "TIMESTAMP",
    "answered_at": "TIMESTAMP",
    "abandoned_at": "TIMESTAMP",
    "handle_s": "INTEGER",
    "first_contact_resolved": "BOOLEAN",
    "csat": "INTEGER",
}
REQUIRED = ("contract_id", "service_line_id", "arrived_at")

_INTEGERS = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}
_ALL_NULL = '"NULL"'

# canonical type -> column types that always cast to it (no row can fail the cast)
_LOSSLESS: dict[str, set[str]] = {
    "VARCHAR": {"VARCHAR"},
    "TIMESTAMP": _TIMESTAMPS,
    "INTEGER": {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"},
    "BOOLEAN": {"BOOLEAN"},
}

# canonical type -> Parquet column types accepted for it (VARCHAR is parsed row by row)
_ACCEPTED: dict[str, set[str]] = {
    "VARCHAR": {"VARCHAR"},
    "TIMESTAMP": _TIMESTAMPS | {"VARCHAR"},
    "INTEGER": _INTEGERS | {"VARCHAR"},
    "BOOLEAN": {"BOOLEAN", "VARCHAR"} | _INTEGERS,
}


def _shown(path: str) -> str:
    """A file as the other inputs name theirs: from the data folder's name on
    (`data/interactions/part.parquet`), whatever the working directory."""
    parts = Path(path).parts
    folders = [i for i, part in enumerate(parts[:-1]) if part == "interactions"]
    if not folders or folders[-1] == 0:
        return path
    return str(Path(*parts[folders[-1] - 1 :]))


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------- the view


def _type_problem(column: str, source: str) -> str | None:
    target = COLUMNS[column]
    if source == _ALL_NULL or source in _ACCEPTED[target]:
        return None
    if target == "INTEGER" and re.fullmatch(r"DECIMAL\(\d+,0\)", source):
        return None
    if target == "INTEGER" and (source in {"FLOAT", "DOUBLE"} or source.startswith("DECIMAL")):
        return f"is {source}; {column} takes whole numbers"
    if source == "TIMESTAMP WITH TIME ZONE":
        return (
            "is a timestamp with a time zone; give the contact centre's local time without one "
            "(the local month decides the period)"
        )
    return f"is {source}, expected {target}"


def _check_schemas(con: duckdb.DuckDBPyConnection, listing: str) -> None:
    """Names and types of every file's columns, from the Parquet footers only."""
    rows = con.execute(
        f"SELECT file_name, name, duckdb_type FROM parquet_schema([{listing}]) "
        "WHERE duckdb_type IS NOT NULL ORDER BY file_name, column_id"
    ).fetchall()
    by_file: dict[str, dict[str, str]] = {}
    for file, name, dtype in rows:
        by_file.setdefault(file, {})[name] = dtype
    for file, columns in sorted(by_file.items()):
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise SettleError(
                f"{_shown(file)}: unknown column(s) {', '.join(unknown)}; interactions/ takes "
                f"{', '.join(COLUMNS)} (rule: schema)."
            )
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise SettleError(
                f"{_shown(file)}: missing column(s) {', '.join(missing)} (rule: schema)."
            )
        for column, dtype in columns.items():
            problem = _type_problem(column, dtype)
            if problem:
                raise SettleError(f"{_shown(file)}: column {column} {problem} (rule: column type).")


@dataclass(frozen=True)
class View:
    """The casts that turn the files' columns into `in_interactions` (one type per column), in
    the portable SQL subset: DuckDB runs them over read_parquet, Spark over its own reader."""

    selects: tuple[str, ...]
    cast_error: str
    cast_columns: list[str]

    def select_sql(self, source: str) -> str:
        return f"SELECT {', '.join(self.selects)}, {self.cast_error} AS _cast_error FROM {source}"

    def duckdb_sql(self, listing: str) -> str:
        return (
            "CREATE OR REPLACE TEMP VIEW in_interactions AS SELECT "
            + ", ".join(self.selects)
            + f", filename AS _file, file_row_number AS _row, {self.cast_error} AS _cast_error "
            + f"FROM {_source(listing)}"
        )


def _source(listing: str) -> str:
    return (
        f"read_parquet([{listing}], union_by_name = true, filename = true, "
        "file_row_number = true, hive_partitioning = false)"
    )


def _view_parts(con: duckdb.DuckDBPyConnection, listing: str) -> View:
    source = _source(listing)
    unified = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    selects, cast_checks, cast_columns = [], [], []
    for column, target in COLUMNS.items():
        dtype = unified.get(column)
        if dtype is None:
            selects.append(f"CAST(NULL AS {target}) AS {column}")
        elif dtype == _ALL_NULL or dtype in _LOSSLESS[target]:
            selects.append(f"CAST({column} AS {target}) AS {column}")
        else:
            # a value that does not cast is reported by the cast rule, not silently dropped
            selects.append(f"TRY_CAST({column} AS {target}) AS {column}")
            cast_checks.append(
                f"WHEN {column} IS NOT NULL AND TRY_CAST({column} AS {target}) IS NULL "
                f"THEN '{column} ''' || CAST({column} AS VARCHAR) || ''' does not cast to "
                f"{target}'"
            )
            cast_columns.append(column)
    cast_error = f"CASE {' '.join(cast_checks)} END" if cast_checks else "CAST(NULL AS VARCHAR)"
    return View(tuple(selects), cast_error, cast_columns)


EMPTY = (
    "CREATE OR REPLACE TEMP VIEW in_interactions AS SELECT "
    + ", ".join(f"NULL::{t} AS {c}" for c, t in COLUMNS.items())
    + ", NULL::VARCHAR AS _file, NULL::BIGINT AS _row, NULL::VARCHAR AS _cast_error WHERE false"
)


def register_interactions(
    con: duckdb.DuckDBPyConnection,
    files: list[str],
    data_dir: Path | None = None,
    engine: str | None = None,
    counts_dir: Path | None = None,
) -> None:
    """The interaction_counts stage: expose the files to read as the view `in_interactions`
    (empty when there are none) and count them once into calc_interaction_counts, on DuckDB or
    on Spark (`engine`, default SETTLE_INTERACTIONS_ENGINE, else duckdb).

    A `period=YYYY-MM/` partition whose month is closed for every contract is not opened at all
    when its files are those its closing runs read (pipelines/closed_months.py): its counts are
    the closing runs' stored interaction_counts. A month counted ahead into `counts_dir` (the
    Dagster interaction_counts asset) from the same files is read from there. Needs the terms
    (cfg_*), in_exclusions and the database's run tables first. Raises SettleError for a file
    whose columns are unknown, missing or of a type that cannot hold the column exactly (a float
    for whole seconds, a time-zoned timestamp); the row rules are `check_interactions`.
    """
    from . import closed_months

    engine = engine_name(engine)
    for sql in _segment_statements():
        con.execute(sql)
    waits, boxes = _bounds(con)
    fingerprint = _fingerprint(waits, boxes)
    plan = closed_months.plan(con, files, data_dir, fingerprint, counts_dir)
    files = plan.read_files
    # only the files this run reads: a closed month's partition stays unopened
    for file in files:
        check_parquet_footer(Path(file), _shown(file))
    casts: list[str] = []
    proven: set[str] = set(VALUE_RULES)  # no files: nothing to check row by row
    _register_files(con, files)
    view = None
    if files:
        listing = ", ".join(_sql_text(f) for f in files)
        _check_schemas(con, listing)
        view = _view_parts(con, listing)
        con.execute(view.duckdb_sql(listing))
        casts = view.cast_columns
        proven = _proven_by_statistics(con, listing)
    else:
        con.execute(EMPTY)
    sql = counts_sql(waits, boxes, bool(casts), proven)
    if engine == "spark" and files:
        from . import spark

        path = spark.count_interactions(con, files, view, sql)
        source = f"read_parquet({_sql_text(path)}, hive_partitioning = false)"
    else:
        source = f"({sql})"
    typed = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in COUNT_COLUMNS.items())
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE calc_interaction_counts AS "
            f"SELECT {typed} FROM {source} "
            f"UNION ALL SELECT {', '.join(COUNT_COLUMNS)} FROM calc_reused_interaction_counts "
            f"ORDER BY {COUNT_KEY}"
        )
    except duckdb.Error as exc:
        named = unreadable_file(con, files, _shown)
        raise SettleError(named or f"interactions/: the files could not be read: {exc}") from None
    finally:
        if engine == "spark" and files:
            spark.discard(path)


ENGINES = ("duckdb", "spark")
ENGINE_ENV = "SETTLE_INTERACTIONS_ENGINE"


def engine_name(engine: str | None = None) -> str:
    """The engine that counts interactions: the argument, else SETTLE_INTERACTIONS_ENGINE, else
    duckdb."""
    name = (engine or os.environ.get(ENGINE_ENV) or "duckdb").strip().lower()
    if name not in ENGINES:
        raise SettleError(
            f"interactions engine {name!r} is not one of {', '.join(ENGINES)} "
            f"(--interactions-engine or {ENGINE_ENV})"
        )
    return name


# interaction_counts: its columns in order, and its key (sql/interactions.sql)
COUNT_COLUMNS: dict[str, str] = {
    "contract_id": "VARCHAR", "service_line_id": "VARCHAR", "period": "DATE",
    "excluded_from": "TIMESTAMP", "kind": "VARCHAR", "bound": "INTEGER",
    **{c: "BIGINT" for c in (
        "interactions", "answered", "abandoned", "answer_wait_us", "handled", "handle_s",
        "fcr_answers", "fcr_resolved", "csat_answers", "csat_sum", "answered_and_abandoned",
        "earliest_outcome_us",
    )},
    "min_handle_s": "INTEGER", "min_csat": "INTEGER", "max_csat": "INTEGER",
    "cast_errors": "BIGINT",
}  # fmt: skip
COUNT_KEY = "contract_id, service_line_id, period, excluded_from, kind, bound"

_HIVE_PERIOD = re.compile(r"(?:^|/)period=(\d{4})-(\d{2})(?:-01)?/")


def hive_period(file: str) -> dt.date | None:
    match = _HIVE_PERIOD.search(Path(file).as_posix())
    return dt.date(int(match.group(1)), int(match.group(2)), 1) if match else None


def _register_files(con: duckdb.DuckDBPyConnection, files: list[str]) -> None:
    """in_interaction_files: each file read with the month of its `period=YYYY-MM/` folder."""
    rows = [(f, hive_period(f)) for f in files]
    con.execute("CREATE OR REPLACE TEMP TABLE in_interaction_files (file VARCHAR, period DATE)")
    if rows:
        con.executemany("INSERT INTO in_interaction_files VALUES (?, ?)", rows)


# one-column rules: column -> (smallest, largest) value allowed
VALUE_RULES: dict[str, tuple[int | None, int | None]] = {"handle_s": (0, None), "csat": (1, 10)}


def _proven_by_statistics(con: duckdb.DuckDBPyConnection, listing: str) -> set[str]:
    """The one-column rules that the files' own Parquet statistics prove for every row: no row
    of an integer column chunk lies outside its exact min..max, so those rows need no check."""
    proven = set()
    for column, (low, high) in VALUE_RULES.items():
        unproven = con.execute(
            f"""
            SELECT count(*) FROM parquet_metadata([{listing}])
            WHERE path_in_schema = ? AND num_values > coalesce(stats_null_count, 0)
              AND NOT coalesce(
                  type IN ('INT32', 'INT64') AND min_is_exact AND max_is_exact
                  AND TRY_CAST(stats_min_value AS HUGEINT) >= coalesce(?, -1e30)
                  AND TRY_CAST(stats_max_value AS HUGEINT) <= coalesce(?, 1e30),
                  false)
            """,
            [column, low, high],
        ).fetchone()[0]
        if unproven == 0:
            proven.add(column)
    return proven


# --------------------------------------------------------------------------- the scan


def _statements() -> dict[str, str]:
    text = SQL_FILE.read_text()
    blocks = re.split(r"\n(?=-- name: )", text)
    out = {}
    for block in blocks:
        match = re.match(r"-- name: (\S+)\n(.*)", block.strip(), re.S)
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def _segment_statements() -> list[str]:
    return [_statements()["exclusion_segments"]]


def _fingerprint(waits: list[int], boxes: list[int]) -> str:
    """What a month's counts depend on besides its files: the definition and the thresholds.
    (The exclusion windows of the month are added per month by closed_months.)"""
    digest = hashlib.sha256(SQL_FILE.read_bytes())
    digest.update(f"wait={waits};csat={boxes}".encode())
    return digest.hexdigest()


def _bounds(con: duckdb.DuckDBPyConnection) -> tuple[list[int], list[int]]:
    """The waiting-time thresholds (seconds) and csat boxes some measured KPI needs: every
    service-level threshold and every short-abandon limit; csat at or above each top box."""
    measures = con.execute(
        "SELECT metric, threshold_s, abandons, short_abandon_s, csat_top_box FROM cfg_kpi_measures"
    ).fetchall()
    waits: set[int] = set()
    boxes: set[int] = set()
    for metric, threshold, abandons, short, box in measures:
        if metric == "service_level" and threshold is not None:
            waits.add(threshold)
        exclude_short = abandons == "exclude_short" and short is not None
        if metric in ("service_level", "abandon_rate") and exclude_short:
            waits.add(short)
        if metric == "csat" and box is not None:
            boxes.add(box)
    return sorted(waits), sorted(boxes)


def counts_sql(waits: list[int], boxes: list[int], has_casts: bool, proven: set[str]) -> str:
    """The portable `interaction_counts` statement of sql/interactions.sql, filled in: one
    conditional count per threshold class in use. Every aggregate costs a pass over each row, so
    a value rule the statistics proved is not tested again (NULL). The same text is what DuckDB
    runs and what pipelines/spark.py transpiles for Spark."""
    counts, values = [], []
    answered, abandoned, csat = [], [], []
    for s in waits:
        counts.append(
            f"count(CASE WHEN t.answer_us <= {s * 1_000_000} THEN 1 END) AS answered_within_{s}"
        )
        counts.append(
            f"count(CASE WHEN t.abandon_us <= {s * 1_000_000} THEN 1 END) AS abandoned_within_{s}"
        )
        values.append(f"('wait', {s})")
        answered.append(f" WHEN c.kind = 'wait' AND c.bound = {s} THEN g.answered_within_{s}")
        abandoned.append(f" WHEN c.kind = 'wait' AND c.bound = {s} THEN g.abandoned_within_{s}")
    for b in boxes:
        counts.append(f"count(CASE WHEN t.csat >= {b} THEN 1 END) AS csat_at_or_above_{b}")
        values.append(f"('csat', {b})")
        csat.append(f" WHEN c.kind = 'csat' AND c.bound = {b} THEN g.csat_at_or_above_{b}")
    fill = {
        "class_counts": "".join(f",\n        {c}" for c in counts),
        "class_values": "".join(f", {v}" for v in values),
        "answered_cases": "".join(answered),
        "abandoned_cases": "".join(abandoned),
        "csat_cases": "".join(csat),
        "cast_errors": "count(t._cast_error)" if has_casts else "CAST(0 AS BIGINT)",
        "min_handle_s": "CAST(NULL AS INTEGER)" if "handle_s" in proven else "min(t.handle_s)",
        "min_csat": "CAST(NULL AS INTEGER)" if "csat" in proven else "min(t.csat)",
        "max_csat": "CAST(NULL AS INTEGER)" if "csat" in proven else "max(t.csat)",
    }
    return _statements()["interaction_counts"].format(**fill)


# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Rule:
    column: str
    text: str
    broken_groups: str  # condition over calc_interaction_counts g (c: cfg_contracts, may be NULL)
    broken_rows: str  # condition over in_interactions i (c: cfg_contracts, may be NULL)
    shown: tuple[str, ...]


_KEYS = ("contract_id", "service_line_id", "arrived_at")
_LINE_KNOWN = (
    "EXISTS (SELECT 1 FROM cfg_service_lines s WHERE s.contract_id = {t}.contract_id "
    "AND s.service_line_id = {t}.service_line_id)"
)

RULES: tuple[Rule, ...] = (
    Rule(
        "", "values must cast to the column's type", "g.cast_errors > 0",
        "i._cast_error IS NOT NULL", ("_cast_error",),
    ),
    Rule(
        "arrived_at", "arrived_at is required", "g.period IS NULL", "i.arrived_at IS NULL",
        _KEYS,
    ),
    Rule(
        "contract_id", "contract_id must be a contract in the contracts folder",
        "c.contract_id IS NULL", "c.contract_id IS NULL", _KEYS,
    ),
    Rule(
        "service_line_id", "service_line_id must be a service line of its contract",
        f"c.contract_id IS NOT NULL AND NOT {_LINE_KNOWN.format(t='g')}",
        f"c.contract_id IS NOT NULL AND NOT {_LINE_KNOWN.format(t='i')}", _KEYS,
    ),
    Rule(
        "answered_at, abandoned_at", "an interaction is answered or abandoned, not both",
        "g.answered_and_abandoned > 0",
        "i.answered_at IS NOT NULL AND i.abandoned_at IS NOT NULL",
        (*_KEYS, "answered_at", "abandoned_at"),
    ),
    Rule(
        "answered_at", "answered_at must not be before arrived_at", "g.earliest_outcome_us < 0",
        "i.answered_at < i.arrived_at", (*_KEYS, "answered_at"),
    ),
    Rule(
        "abandoned_at", "abandoned_at must not be before arrived_at", "g.earliest_outcome_us < 0",
        "i.abandoned_at < i.arrived_at", (*_KEYS, "abandoned_at"),
    ),
    Rule(
        "handle_s", "handle_s must be >= 0", "g.min_handle_s < 0", "i.handle_s < 0",
        (*_KEYS, "handle_s"),
    ),
    Rule(
        "csat", "csat must be between 1 and 10", "g.min_csat < 1 OR g.max_csat > 10",
        "i.csat NOT BETWEEN 1 AND 10", (*_KEYS, "csat"),
    ),
    Rule(
        "arrived_at", "arrived_at must fall inside the contract term (start..end)",
        "g.period < c.start_period OR g.period > term_end(c.end_period)",
        "date_trunc('month', i.arrived_at) < c.start_period "
        "OR date_trunc('month', i.arrived_at) > term_end(c.end_period)",
        _KEYS,
    ),
)  # fmt: skip


_NAMES = (
    "interactions_cast", "interactions_arrived_at_given", "interactions_contract_known",
    "interactions_service_line_known", "interactions_one_outcome", "interactions_answered_after",
    "interactions_abandoned_after", "interactions_handle_s_range", "interactions_csat_range",
    "interactions_in_term",
)  # fmt: skip


def row_checks() -> list[Check]:
    """Every row rule as a named check: the group test on the scan's counts is the precheck, so
    the files are read again only to name the offending rows of a broken rule."""
    out = []
    for name, rule in zip(_NAMES, RULES, strict=True):
        source = (
            "FROM in_interactions i LEFT JOIN cfg_contracts c ON c.contract_id = i.contract_id "
            f"WHERE {rule.broken_rows}"
        )
        if rule.shown == ("_cast_error",):
            # the column is the one the failing value came from
            select = "split_part(i._cast_error, ' ', 1) AS _column, i._cast_error AS _detail"
        else:
            select = ", ".join(f"i.{c}" for c in rule.shown)
        out.append(
            Check(
                name=name,
                rule=rule.text,
                sql=f"SELECT i._file AS _file, i._row AS _row, {select} {source} "
                "ORDER BY i._file, i._row",
                column=rule.column,
                precheck="SELECT count(*) FROM calc_interaction_counts g LEFT JOIN cfg_contracts c "
                f"ON c.contract_id = g.contract_id WHERE g.kind = 'all' AND ({rule.broken_groups})",
                show_file=_shown,
            )
        )
    return out


def check_interactions(con: duckdb.DuckDBPyConnection) -> None:
    """Every row rule, then the hive folder rule, through the one check runner."""
    run_checks(con, row_checks())
    run_checks(con, _hive_folder_checks(con))


def _hive_folder_checks(con: duckdb.DuckDBPyConnection) -> list[Check]:
    """A file in a `period=YYYY-MM/` folder holds only interactions that arrived in that month
    (as the other inputs' hive rule). The footers' exact min/max of arrived_at prove it without
    reading the rows; a check is made for each file they do not clear."""
    foldered = [r[0] for r in con.execute(
        "SELECT file FROM in_interaction_files WHERE period IS NOT NULL ORDER BY file"
    ).fetchall()]  # fmt: skip
    if not foldered:
        return []
    listing = ", ".join(_sql_text(f) for f in foldered)
    unproven = con.execute(
        f"""
        SELECT f.file, f.period
        FROM in_interaction_files f
        LEFT JOIN (SELECT * FROM parquet_metadata([{listing}])
                   WHERE path_in_schema = 'arrived_at') m ON m.file_name = f.file
        WHERE f.period IS NOT NULL
        GROUP BY f.file, f.period
        HAVING NOT bool_and(coalesce(
            m.type = 'INT64' AND m.min_is_exact AND m.max_is_exact
            AND TRY_CAST(m.stats_min_value AS TIMESTAMP) >= f.period
            AND TRY_CAST(m.stats_max_value AS TIMESTAMP) < f.period + INTERVAL 1 MONTH, false))
        ORDER BY f.file
        """
    ).fetchall()
    return [
        Check(
            name="interactions_in_folder_month",
            rule=f"arrived_at must fall in the month of its folder period={period:%Y-%m}",
            sql="SELECT _file, _row, arrived_at FROM in_interactions "
            f"WHERE _file = {_sql_text(file)} AND date_trunc('month', arrived_at) "
            f"IS DISTINCT FROM DATE '{period:%Y-%m-%d}' "
            "ORDER BY _row",
            column="arrived_at",
            show_file=_shown,
        )
        for file, period in unproven
    ]
