"""One settlement run: load and validate, run the settlement SQL, store the results atomically.

The CLI and the Dagster assets both call `settle()` (and `validate()`); every rule lives in
`sql/`, executed in file-name order over all selected contracts and months at once:

    01_macros      exact rounding and division
    02_calendar    contract x month history and the months this run stores
    03_indexation  review factors
    04_pricing     charge lines
    05_measures    KPIs measured from interactions
    06_kpi_results met / failed / excused / no_data, runs of failures
    07_credits     service credits, earn-back, bonus
    08_gain_share  gain-share windows
    09_invoice     invoice lines
    10_adjustments restated closed months billed on the next open month
    11_reconcile   the provider's invoice against the expected one

Everything happens in one DuckDB transaction on the target file: a failed or killed run leaves the
database as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import math
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from . import __version__, checks, closed_months, store
from .config import LoadedContract
from .contract_cache import load_contracts
from .errors import SettleError
from .inputs import InputSet, kpi_kinds_table, read_inputs
from .interactions import check_interactions, register_interactions
from .periods import fmt, month_range
from .terms import build_tables

PACKAGE_DIR = Path(__file__).resolve().parent
SQL_DIR = PACKAGE_DIR.parent / "sql"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


PROFILE_ENV = "SETTLE_PROFILE"


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """With SETTLE_PROFILE=1, print the wall and CPU seconds of a phase of a run on stderr. CPU
    time counts every DuckDB thread: on a shared machine it is the honest measure of the work."""
    if not os.environ.get(PROFILE_ENV):
        yield
        return
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        print(
            f"profile {name:<32} {time.perf_counter() - wall:7.3f}s wall "
            f"{time.process_time() - cpu:7.3f}s cpu  peak RSS {peak:,} MB",
            file=sys.stderr,
        )


@dataclass
class RunRequest:
    period_from: dt.date
    period_to: dt.date
    contract_ids: set[str] | None = None
    as_known_at: dt.date | None = None
    dry_run: bool = False
    interactions_engine: str | None = None  # duckdb | spark (None: SETTLE_INTERACTIONS_ENGINE)
    counts_dir: Path | None = None  # months counted ahead (Dagster's interaction_counts asset)


@dataclass
class RunResult:
    run_id: int | None
    mode: str
    written_months: int
    invoices: list[dict] = field(default_factory=list)
    adjustments: list[dict] = field(default_factory=list)
    reconciliation: list[dict] = field(default_factory=list)
    # every invoice the run stored; `invoices` lists them only up to SUMMARY_INVOICES, past which
    # `totals` (per month and currency, added up in SQL) stands in for them
    invoice_count: int = 0
    totals: list[dict] = field(default_factory=list)

    @property
    def listed(self) -> bool:
        return len(self.invoices) == self.invoice_count


# A backfill of 10,000 contracts stores 360,000 invoices: as Python rows they would add about
# 850 MB to the run's peak memory and 360,000 lines to the console. Past this many, the run's
# summary is its totals per month; `settle status`, `settle export` and the pack list invoices.
SUMMARY_INVOICES = 2_000


# --------------------------------------------------------------------------- building blocks


def sql_files() -> list[Path]:
    return sorted(p for p in SQL_DIR.glob("[0-9][0-9]_*.sql"))


def code_version() -> str:
    digest = hashlib.sha256()
    for path in [*sorted(SQL_DIR.glob("*.sql")), *sorted(PACKAGE_DIR.glob("*.py"))]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def run_script(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        con.execute(path.read_text())
    except duckdb.Error as exc:
        raise SettleError(f"{path.name}: settlement SQL failed: {exc}") from exc


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    run_script(con, SQL_DIR / "schema.sql")


def register_terms(con: duckdb.DuckDBPyConnection, contracts: list[LoadedContract]) -> None:
    for name, table in build_tables(contracts).items():
        _register(con, name, table)
    _register(con, "cfg_kpi_kinds", kpi_kinds_table(contracts))


def register_inputs(
    con: duckdb.DuckDBPyConnection,
    inputs: InputSet,
    interactions_engine: str | None = None,
    counts_dir: Path | None = None,
) -> None:
    for folder, frame in inputs.frames.items():
        # string_view columns hand Polars' buffers to DuckDB as they are; the default export
        # copies every string into a new large_string buffer (2 s and one more copy of the
        # data per million rows)
        _register(con, f"in_{folder}", frame.to_arrow(compat_level=pl.CompatLevel.newest()))
    register_interactions(
        con, inputs.interaction_files, inputs.data_dir, interactions_engine, counts_dir
    )


def _register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    view = f"_arrow_{name}"
    con.register(view, table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {view}")
    con.unregister(view)


def all_checks() -> list[checks.Check]:
    """Every declared check, from the SQL folder the engine runs."""
    declared = checks.load(SQL_DIR)
    stages = {"inputs", "stored", *(step_name(p) for p in sql_files())}
    unknown = sorted({f"{c.name} ({c.stage})" for c in declared if c.stage not in stages})
    if unknown:  # a typo would silently never run
        raise SettleError(f"checks with an unknown stage: {', '.join(unknown)}")
    return declared


def check_input_rules(con: duckdb.DuckDBPyConnection) -> None:
    """The checks of the inputs stage (sql/input_rules.sql), then the interactions' row rules."""
    checks.run(con, checks.at(all_checks(), "inputs"))
    # interactions last: their one scan also counts what the measured KPIs need
    check_interactions(con)


def step_name(path: Path) -> str:
    """`indexation` for sql/03_indexation.sql: the stage name checks run after."""
    return path.stem.split("_", 1)[1]


def compute(
    con: duckdb.DuckDBPyConnection,
    progress: Progress = _quiet,
    until: str | None = None,
    after_step: Callable[[str], None] | None = None,
) -> None:
    """Run the settlement SQL over the registered terms, inputs and run scope, each step followed
    by the checks of its stage (sql/run_stops.sql); with `until`, stop after that step."""
    declared = all_checks()
    for path in sql_files():
        started = time.perf_counter()
        with phase(path.stem):
            run_script(con, path)
        progress(f"  {path.stem:<16} {time.perf_counter() - started:6.2f}s")
        if after_step:
            after_step(step_name(path))
        with phase(f"checks {step_name(path)}"):
            checks.run(con, checks.at(declared, step_name(path)))
        if step_name(path) == until:
            return


# --------------------------------------------------------------------------- entry points


def load(contracts_dir: Path, data_dir: Path, contract_ids: set[str] | None = None):
    """Load and validate every contract and input; raises SettleError on the first bad one."""
    contracts = load_contracts(contracts_dir)
    inputs = read_inputs(data_dir)
    known = {c.contract_id for c in contracts}
    if contract_ids:
        unknown = sorted(contract_ids - known)
        if unknown:
            raise SettleError(
                f"unknown contract id(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
    return contracts, inputs


# `settle validate` computes up to here (no money) so that it stops on what a run would stop on
VALIDATED_THROUGH = "kpi_results"

# validate's scope: every contract from its start to its last month with volumes (a month a run
# could settle); months after it are not checked for index values or required KPIs
_VALIDATION_SCOPE = """
DELETE FROM calc_months m
WHERE m.period > coalesce(
    (SELECT max(v.period) FROM in_volumes v WHERE v.contract_id = m.contract_id),
    DATE '0001-01-01');
CREATE OR REPLACE TEMP TABLE calc_writes AS
SELECT contract_id, period FROM calc_months WHERE writes;
"""


def check_references(contracts: list[LoadedContract], inputs: InputSet) -> None:
    """Every check that needs no settlement, on an in-memory database: the inputs against the
    contracts, then the steps through the KPI results for every month the volumes cover, each
    followed by its checks (an index value or a required KPI a run would miss)."""
    con = connect_memory()

    try:
        ensure_schema(con)
        run_script(con, SQL_DIR / "01_macros.sql")
        with phase("register terms and inputs"):
            register_terms(con, contracts)
            register_inputs(con, inputs)
        with phase("checks inputs"):
            check_input_rules(con)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE run_params AS SELECT "
            "(SELECT min(start_period) FROM cfg_contracts) AS period_from, "
            "coalesce((SELECT max(period) FROM in_volumes), "
            "(SELECT min(start_period) FROM cfg_contracts)) AS period_to, "
            "far_future() AS as_known_at, 'settle'::VARCHAR AS mode"
        )
        _register(
            con,
            "run_contracts",
            pa.table({"contract_id": pa.array([c.contract_id for c in contracts], pa.string())}),
        )

        def scope(step: str) -> None:
            if step == "calendar":
                con.execute(_VALIDATION_SCOPE)

        compute(con, until=VALIDATED_THROUGH, after_step=scope)
    finally:
        con.close()


def validate(contracts_dir: Path, data_dir: Path, progress: Progress = _quiet) -> dict[str, int]:
    """Every check a run makes before computing, in memory: nothing is written anywhere."""
    started = time.perf_counter()
    with phase("load"):
        contracts, inputs = load(contracts_dir, data_dir)
    progress(f"read {len(contracts)} contracts and inputs in {time.perf_counter() - started:.2f}s")
    check_references(contracts, inputs)
    counts = {folder: frame.height for folder, frame in inputs.frames.items()}
    counts["contracts"] = len(contracts)
    return counts


VALIDATION_STAGES = ("contracts", "inputs", "references")


@dataclass
class Validation:
    """What validate() checks, stage by stage (VALIDATION_STAGES), for callers that report each
    stage on its own (the Dagster asset checks). `errors` maps a failed stage to its message; the
    references stage runs only when contracts and inputs both loaded."""

    contracts: list[LoadedContract] | None = None
    inputs: InputSet | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def ran(self, stage: str) -> bool:
        return stage != "references" or (self.contracts is not None and self.inputs is not None)


def validation_report(contracts_dir: Path, data_dir: Path) -> Validation:
    """validate() without stopping at the first failure: contracts and inputs are checked
    independently so that both can be reported. Writes nothing anywhere."""
    report = Validation()
    try:
        report.contracts = load_contracts(contracts_dir)
    except SettleError as exc:
        report.errors["contracts"] = str(exc)
    try:
        report.inputs = read_inputs(data_dir)
    except SettleError as exc:
        report.errors["inputs"] = str(exc)
    if report.ran("references"):
        try:
            check_references(report.contracts, report.inputs)
        except SettleError as exc:
            report.errors["references"] = str(exc)
    return report


# 768MB, not 1GB: a 10,000-contract x 36-month backfill peaks at 1.83 GiB of RSS under it (2.05
# GiB under 1GB) for the same CPU time; the Python side (contracts, validated inputs) comes on top
DEFAULT_MEMORY_LIMIT = "768MB"


def memory_settings(db_path: Path | None = None) -> dict[str, str]:
    """DuckDB's memory limit and spill folder for a run. DuckDB's own default limit is 80% of the
    machine's RAM, which let a 10,000-contract backfill grow to 4.9 GB; with a limit it spills
    sorts, joins and aggregates to `temp_directory` instead. SETTLE_MEMORY_LIMIT (default
    DEFAULT_MEMORY_LIMIT) and SETTLE_TEMP_DIR (default: beside the database file, or the system
    temp folder) override.
    The Python side (contracts, validated inputs) comes on top of the limit."""
    temp = os.environ.get("SETTLE_TEMP_DIR")
    if not temp:
        base = Path(tempfile.gettempdir()) if db_path is None else db_path.parent
        temp = str(base / f".settle-spill-{os.getpid()}")
    return {
        "memory_limit": os.environ.get("SETTLE_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
        "temp_directory": temp,
    }


def _configure(con: duckdb.DuckDBPyConnection, db_path: Path | None = None) -> None:
    try:
        for name, value in memory_settings(db_path).items():
            con.execute(f"SET {name} = ?", [value])
        # DuckDB draws a progress bar on stdout for any query over 2 s (a 10,000-contract run has
        # several): it would land in `settle run` output and break `--json`
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error as exc:
        con.close()
        raise SettleError(
            f"cannot apply SETTLE_MEMORY_LIMIT / SETTLE_TEMP_DIR: {exc} (rule: memory settings)"
        ) from None


def connect_memory() -> duckdb.DuckDBPyConnection:
    """An in-memory database with the run's memory settings (validate, checks)."""
    con = duckdb.connect()
    _configure(con)
    return con


def quiet_connect(path: str | None = None) -> duckdb.DuckDBPyConnection:
    """duckdb.connect with the run's memory settings and without DuckDB's progress bar, which a
    query over 2 s otherwise draws straight onto stdout, in the middle of the results."""
    con = duckdb.connect(path) if path is not None else duckdb.connect()
    _configure(con, Path(path) if path is not None else None)
    return con


LOCK_WAIT_ENV = "SETTLE_LOCK_WAIT_S"

# DuckDB reads these as "not a file on disk": an in-memory database (which a run would fill and
# throw away while reporting success) or a remote MotherDuck one.
_NOT_A_FILE = re.compile(r"^(:memory:|md:|motherduck:)", re.I)


def check_db_path(db_path: Path | str) -> Path:
    """The database must be a file on disk: refuse what DuckDB would treat as something else."""
    text = str(db_path)
    if not text.strip() or _NOT_A_FILE.match(text):
        raise SettleError(
            f"--db {text!r}: the settlement database must be a file on disk (runs, closed months "
            "and packs are read back from it); an in-memory or remote database is refused"
        )
    return Path(db_path)


def lock_wait_s() -> float:
    """SETTLE_LOCK_WAIT_S, default 30: a finite number of seconds, zero or more."""
    text = os.environ.get(LOCK_WAIT_ENV, "30")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise SettleError(
            f"{LOCK_WAIT_ENV}={text!r}: must be a number of seconds, 0 or more (for example 30): "
            "how long to wait for another Settle run to release the database"
        )
    return value


def connect_for_write(db_path: Path, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database file for writing, waiting a while for another writer to finish."""
    check_db_path(db_path)
    wait_s = lock_wait_s() if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(db_path))
        except duckdb.Error as exc:
            if not isinstance(exc, duckdb.IOException) or "lock" not in str(exc).lower():
                raise SettleError(f"{db_path}: cannot open the database: {exc}") from None
            if time.monotonic() >= deadline:
                holder = re.search(r"PID (\d+)", str(exc))
                who = f" (process {holder.group(1)})" if holder else ""
                raise SettleError(
                    f"{db_path}: the database is in use by another Settle run{who}; waited "
                    f"{wait_s:.0f}s. Nothing was written. Try again when it has finished "
                    "(SETTLE_LOCK_WAIT_S sets how long to wait)."
                ) from None
            time.sleep(0.5)
            continue
        _configure(con, db_path)
        return con


_WRITE_FAILURE = re.compile(
    r"Could not write|No space left|File too large|Disk quota|out of memory|failed to allocate",
    re.I,
)


def _storage_error(db_path: Path, exc: duckdb.Error, when: str) -> SettleError:
    first = (str(exc).splitlines() or [""])[0]  # DuckDB appends a multi-line "Possible solutions"
    return SettleError(
        f"{db_path}: {when}: {first}. Nothing was written: the transaction was rolled back and the "
        f"database holds what it held before. {_storage_hint(exc)}"
    )


def _storage_hint(exc: duckdb.Error) -> str:
    if isinstance(exc, duckdb.OutOfMemoryException) or re.search(
        r"out of memory|failed to allocate", str(exc), re.I
    ):
        limit = os.environ.get("SETTLE_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
        return (
            f"DuckDB ran out of memory under SETTLE_MEMORY_LIMIT={limit}: raise it if the machine "
            "has memory to spare (or lower it if the machine itself is short, so that DuckDB "
            "spills to SETTLE_TEMP_DIR sooner), and run again."
        )
    return "Free disk space (or fix the file's permissions) and run again."


@contextlib.contextmanager
def write_transaction(db_path: Path, commit: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on the database file: committed at the end, or rolled back on any error
    (or when `commit` is false: a dry run). A killed process leaves nothing behind either.

    A dry run on a database that does not exist yet runs in memory: it would roll back anyway,
    and a command that writes nothing must not leave an empty database file behind."""
    check_db_path(db_path)
    new_file = not Path(db_path).exists()
    dry_new = not commit and new_file
    con = quiet_connect() if dry_new else connect_for_write(db_path)
    failed = False
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except (duckdb.IOException, duckdb.OutOfMemoryException) as exc:
            # only failures to write the database itself; an unreadable input is not a full disk
            if not _WRITE_FAILURE.search(str(exc)):
                raise
            raise _storage_error(db_path, exc, "cannot write the database") from None
        try:
            with phase("commit"):
                con.execute("COMMIT" if commit else "ROLLBACK")
        except duckdb.Error as exc:
            # DuckDB writes the commit to the WAL as one checksummed record: a failed write (disk
            # full, file size limit) leaves the committed state of the file as it was
            raise _storage_error(db_path, exc, "the transaction could not be committed") from None
    except BaseException:
        failed = True
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()
        if failed and new_file and not dry_new:
            # the database did not exist before this run: leaving an empty one behind would not
            # be "as it was"
            for leftover in (Path(db_path), Path(f"{db_path}.wal")):
                with contextlib.suppress(OSError):
                    leftover.unlink()


def settle(
    contracts_dir: Path,
    data_dir: Path,
    db_path: Path,
    request: RunRequest,
    progress: Progress = _quiet,
) -> RunResult:
    """Settle the requested months for the requested contracts as one run, atomically."""
    if request.period_to < request.period_from:
        raise SettleError(
            f"--to {fmt(request.period_to)} is before --period {fmt(request.period_from)}"
        )
    check_db_path(db_path)
    lock_wait_s()  # a bad SETTLE_LOCK_WAIT_S is refused before minutes of validation, not after
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    with phase("load"):
        contracts, inputs = load(contracts_dir, data_dir, request.contract_ids)
    selected = [
        c for c in contracts if not request.contract_ids or c.contract_id in request.contract_ids
    ]
    progress(f"validated {len(contracts)} contracts and inputs ({time.perf_counter() - t0:.2f}s)")
    _require_in_term(selected, request)
    mode = "settle"

    with write_transaction(db_path, commit=not request.dry_run) as con:
        ensure_schema(con)
        run_script(con, SQL_DIR / "01_macros.sql")
        with phase("register terms and inputs"):
            register_terms(con, contracts)
            register_inputs(con, inputs, request.interactions_engine, request.counts_dir)
        # DuckDB holds its own copy now (spillable under memory_limit): the Python frames would
        # only add to the peak. A run needs just the file hashes from here on.
        inputs.frames.clear()
        with phase("checks inputs"):
            check_input_rules(con)
        # every interaction file read is hashed before the adjustments name what changed (the
        # run records these hashes anyway; reading them now only moves the cost earlier)
        closed_months.fill_hashes(con)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE run_params AS SELECT ?::DATE AS period_from, "
            "?::DATE AS period_to, coalesce(?::DATE, far_future()) AS as_known_at, "
            "?::VARCHAR AS mode",
            [request.period_from, request.period_to, request.as_known_at, mode],
        )
        _register(
            con,
            "run_contracts",
            pa.table({"contract_id": pa.array([c.contract_id for c in selected], pa.string())}),
        )
        compute(con, progress)
        written = con.execute("SELECT count(*) FROM calc_writes").fetchone()[0]
        if written == 0:
            raise SettleError(
                f"nothing to settle: no open month of the selected contracts lies in "
                f"{fmt(request.period_from)}..{fmt(request.period_to)} (closed months are only "
                "restated when their next open month can be settled too)"
            )
        next_run = "SELECT coalesce(max(run_id), 0) + 1 FROM settlement_runs"
        run_id = con.execute(next_run).fetchone()[0]
        with phase("store"):
            _store(con, run_id, mode, request, contracts, selected, inputs, started_at)
        # a figure that contradicts another fails the run before it commits
        with phase("checks stored"):
            checks.run(con, checks.at(all_checks(), "stored"), {"run_id": run_id})
        with phase("summarise"):
            result = _summarise(con, run_id, mode, written)
    if request.dry_run:
        result.run_id = None
    progress(f"settled in {time.perf_counter() - t0:.2f}s")
    return result


def _require_in_term(selected: list[LoadedContract], request: RunRequest) -> None:
    """A request that no selected contract's term reaches stops before anything is computed."""
    for c in selected:
        open_end = c.terms.end is None or request.period_from <= c.terms.end
        if c.terms.start <= request.period_to and open_end:
            return
    terms = "; ".join(
        f"{c.contract_id} {fmt(c.terms.start)}..{fmt(c.terms.end) if c.terms.end else 'open'}"
        for c in sorted(selected, key=lambda c: c.contract_id)[:10]
    )
    raise SettleError(
        f"{fmt(request.period_from)}..{fmt(request.period_to)} lies outside the term of every "
        f"selected contract ({terms}); nothing to settle"
    )


def _store(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    mode: str,
    request: RunRequest,
    contracts: list[LoadedContract],
    selected: list[LoadedContract],
    inputs: InputSet,
    started_at: dt.datetime,
) -> None:
    for table in store.RESULT_TABLES:
        with phase(f"store {table.name}"):
            store.append(con, table, run_id)
    run_script(con, SQL_DIR / "views.sql")
    con.execute(
        "INSERT INTO run_periods SELECT ?, contract_id, period FROM calc_writes "
        "ORDER BY contract_id, period",
        [run_id],
    )
    if mode == "settle":
        con.execute(
            """
            INSERT INTO period_status (contract_id, period, status)
            SELECT w.contract_id, w.period, 'open'
            FROM calc_writes w
            LEFT JOIN period_status s USING (contract_id, period)
            WHERE s.contract_id IS NULL
            ORDER BY w.contract_id, w.period
            """
        )
    con.execute(
        "INSERT INTO run_terms SELECT ?, e.* FROM cfg_dated_entries e "
        "JOIN run_contracts USING (contract_id) "
        "ORDER BY contract_id, kind, item_id, effective_from",
        [run_id],
    )
    con.execute(
        "INSERT INTO accounting_map SELECT ?, a.contract_id, a.supplier_id, a.cost_centre, "
        "a.line_type, a.account FROM cfg_accounting a JOIN run_contracts USING (contract_id) "
        "ORDER BY a.contract_id, a.line_type",
        [run_id],
    )
    ordered = sorted(selected, key=lambda c: c.contract_id)
    configs = pa.table(
        {
            "contract_id": [c.contract_id for c in ordered],
            "config_file": [c.file for c in ordered],
            "config_sha256": [c.sha256 for c in ordered],
            "config_yaml": [c.yaml_text for c in ordered],
        }
    )
    con.register("_run_configs", configs)
    con.execute("INSERT INTO run_configs SELECT ?, * FROM _run_configs", [run_id])
    con.unregister("_run_configs")
    closed_months.record(con, run_id, inputs.file_hashes)
    # only what changed since the latest digest of the same contract-month and folder
    con.execute(
        """
        INSERT INTO input_digests
        SELECT n.contract_id, n.period, n.folder, n.digest, ?
        FROM calc_input_digests n
        LEFT JOIN (
            SELECT contract_id, period, folder, arg_max(digest, run_id) AS digest
            FROM input_digests GROUP BY ALL
        ) d USING (contract_id, period, folder)
        WHERE d.digest IS DISTINCT FROM n.digest
        ORDER BY n.contract_id, n.period, n.folder
        """,
        [run_id],
    )
    input_hashes = {**inputs.file_hashes, **closed_months.interaction_hashes(con)}
    config_hashes = {c.contract_id: c.sha256 for c in sorted(selected, key=lambda c: c.contract_id)}
    con.execute(
        """
        INSERT INTO settlement_runs VALUES (
            ?, ?, ?, 'succeeded', ?, ?, ?, ?, ?, ?, ?, ?,
            MAP(?::VARCHAR[], ?::VARCHAR[]), MAP(?::VARCHAR[], ?::VARCHAR[]))
        """,
        [
            run_id,
            started_at,
            dt.datetime.now(dt.UTC).replace(tzinfo=None),
            mode,
            f"{fmt(request.period_from)}..{fmt(request.period_to)}",
            request.period_from,
            request.period_to,
            request.as_known_at,
            sorted(config_hashes),
            code_version(),
            str(inputs.data_dir),
            list(config_hashes),
            list(config_hashes.values()),
            sorted(input_hashes),
            [input_hashes[k] for k in sorted(input_hashes)],
        ],
    )


def _summarise(con: duckdb.DuckDBPyConnection, run_id: int, mode: str, written: int) -> RunResult:
    def rows(query: str) -> list[dict]:
        # decimals are fetched as their text and made Decimal here: the same values and
        # exponents, at a third of the CPU of DuckDB's own conversion (36,000 invoices x 13
        # amounts in a 1,000-contract backfill)
        cur = con.execute(f"SELECT * FROM ({query}) LIMIT 0", [run_id])
        described = [(d[0], str(d[1]).startswith("DECIMAL")) for d in cur.description]
        cols = [c for c, _ in described]
        text = ", ".join(
            f'CAST("{c}" AS VARCHAR) AS "{c}"' if dec else f'"{c}"' for c, dec in described
        )
        decimals = [i for i, (_, dec) in enumerate(described) if dec]
        out = []
        for row in con.execute(f"SELECT {text} FROM ({query})", [run_id]).fetchall():
            values = list(row)
            for i in decimals:
                if values[i] is not None:
                    values[i] = Decimal(values[i])
            out.append(dict(zip(cols, values, strict=True)))
        return out

    count = con.execute("SELECT count(*) FROM invoice_summary WHERE run_id = ?", [run_id])
    count = count.fetchone()[0]
    adjustments = rows(
        "SELECT contract_id, period, billed_in_period, line_key, delta, reason "
        "FROM adjustments WHERE run_id = ? ORDER BY contract_id, period, line_key"
    )
    if count > SUMMARY_INVOICES:
        totals = rows(
            "SELECT period, currency, count(*) AS invoices, sum(charges) AS charges, "
            "sum(credits_and_bonus) AS credits_and_bonus, sum(gain_share) AS gain_share, "
            "sum(adjustments) AS adjustments, sum(other) AS other, "
            "sum(amount_due) AS amount_due, sum(billed) AS billed, "
            "sum(difference) AS difference, sum(exceptions) AS exceptions "
            "FROM invoice_summary WHERE run_id = ? GROUP BY period, currency "
            "ORDER BY period, currency"
        )
        return RunResult(
            run_id, mode, written, adjustments=adjustments, invoice_count=count, totals=totals
        )
    # one definition of the invoice summary (sql/views.sql), read for this run
    invoices = rows("SELECT * FROM invoice_summary WHERE run_id = ? ORDER BY contract_id, period")
    recon = [
        {k: i[k] for k in ("contract_id", "period", "billed", "difference", "exceptions")}
        for i in invoices
    ]
    return RunResult(run_id, mode, written, invoices, adjustments, recon, count)


@dataclass
class Closed:
    contract_id: str
    period: dt.date
    run_id: int
    how: str  # approved | disputed | forced | already closed


def close(
    db_path: Path,
    period: dt.date,
    contract_ids: set[str] | None = None,
    progress: Progress = _quiet,
    to: dt.date | None = None,
    force: bool = False,
    by: str | None = None,
) -> list[Closed]:
    """Lock months: the current run of each becomes its closing run, for good.

    A contract-month closes when its current invoice is approved or every reconciliation
    exception of it is disputed (SPEC 11); otherwise nothing at all is closed and the error names
    each one, unless `force`, which closes them anyway and records that it was forced."""
    if not Path(check_db_path(db_path)).is_file():
        raise SettleError(
            f"{db_path}: no such database, so nothing to close; settle the month first "
            "(`settle run`). Nothing was written."
        )
    months = month_range(period, to or period)
    wanted = sorted(contract_ids) if contract_ids else None
    with write_transaction(db_path) as con:
        ensure_schema(con)
        # one pass over every requested contract-month: the gate (sql/close_gate.sql), then one
        # UPDATE; a month-end over 1,000 contracts x 36 months is a few statements, not 36,000
        con.execute((SQL_DIR / "close_gate.sql").read_text(), [months, wanted])
        for month, missing, found in con.execute(
            """
            SELECT m.period,
                   list(w.contract_id ORDER BY w.contract_id)
                       FILTER (WHERE w.contract_id IS NOT NULL AND s.contract_id IS NULL),
                   (SELECT count(*) FROM close_plan p WHERE p.period = m.period)
            FROM (SELECT DISTINCT unnest(?::DATE[]) AS period) m
            LEFT JOIN (SELECT unnest(?::VARCHAR[]) AS contract_id) w ON true
            LEFT JOIN period_status s ON s.contract_id = w.contract_id AND s.period = m.period
            GROUP BY m.period
            ORDER BY m.period
            """,
            [months, wanted],
        ).fetchall():
            if missing or not found:
                raise SettleError(
                    f"cannot close {fmt(month)} for {', '.join(missing or []) or 'any contract'}: "
                    "the month has not been settled yet (run `settle run` first). "
                    "Nothing was closed."
                )
        plan: list[Closed] = []
        refused: list[str] = []
        for contract_id, month, run_id, how, why in con.execute(
            "SELECT contract_id, period, run_id, how, why FROM close_plan "
            "ORDER BY period, contract_id"
        ).fetchall():
            if how == "already closed":
                progress(f"{contract_id} {fmt(month)} is already closed")
            elif how is None:
                if not force:
                    refused.append(f"{contract_id} {fmt(month)} ({why})")
                    continue
                how = "forced"
            plan.append(Closed(contract_id, month, run_id, how))
        if refused:
            raise SettleError(
                f"cannot close {len(refused)} contract-month(s) that are neither approved nor "
                f"fully disputed: {'; '.join(refused[:10])}"
                f"{' ...' if len(refused) > 10 else ''}. Approve them (`settle approve`), "
                "dispute their exceptions (`settle dispute`), or close with --force. "
                "Nothing was closed."
            )
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        # only forced rows have no `how` left here: an unforced refusal raised above
        con.execute(
            """
            UPDATE period_status
            SET status = 'closed', closed_at = ?, closed_run_id = p.run_id,
                closed_how = coalesce(p.how, 'forced'), closed_by = ?
            FROM close_plan p
            WHERE period_status.contract_id = p.contract_id
              AND period_status.period = p.period
              AND period_status.status = 'open'
              AND p.status <> 'closed'
            """,
            [now, by],
        )
    return plan
