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
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from . import __version__, store
from .config import LoadedContract, load_contracts
from .errors import SettleError
from .inputs import InputSet, read_inputs
from .interactions import check_interactions, register_interactions
from .periods import fmt, month_range
from .terms import build_tables

PACKAGE_DIR = Path(__file__).resolve().parent
SQL_DIR = PACKAGE_DIR.parent / "sql"
FAR_FUTURE = dt.date(9999, 12, 31)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class RunRequest:
    period_from: dt.date
    period_to: dt.date
    contract_ids: set[str] | None = None
    as_known_at: dt.date | None = None
    dry_run: bool = False


@dataclass
class RunResult:
    run_id: int | None
    mode: str
    written_months: int
    invoices: list[dict] = field(default_factory=list)
    adjustments: list[dict] = field(default_factory=list)
    reconciliation: list[dict] = field(default_factory=list)


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


def register_inputs(con: duckdb.DuckDBPyConnection, inputs: InputSet) -> None:
    for folder, frame in inputs.frames.items():
        _register(con, f"in_{folder}", frame.to_arrow())
    register_interactions(con, inputs.interaction_files)


def _register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    view = f"_arrow_{name}"
    con.register(view, table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {view}")
    con.unregister(view)


def check_input_rules(con: duckdb.DuckDBPyConnection) -> None:
    """Referential rules between inputs and contracts (sql/input_rules.sql), then interactions."""
    for name, rule, query in _rules():
        rows = con.execute(query).fetchall()
        if rows:
            cols = [d[0] for d in con.description]
            total = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
            shown = "; ".join(_describe(cols, row) for row in rows[:3])
            files = sorted({row[cols.index("_file")] for row in rows if "_file" in cols})
            where = ", ".join(files) if files else name
            column = _rule_column(rule)
            raise SettleError(
                f"{where}: {column}{total} row(s) break the rule '{rule.rstrip('.')}'; "
                f"first: {shown}."
            )
    # interactions last: their one scan also counts what the measured KPIs need
    check_interactions(con)


def _rule_column(rule: str) -> str:
    match = re.match(r"^(\w+) ", rule)
    return f"column {match.group(1)}: " if match else ""


def _describe(cols: list[str], row: tuple) -> str:
    values = dict(zip(cols, row, strict=True))
    head = f"row {values.pop('_row')}" if "_row" in values else "row"
    values.pop("_file", None)
    body = ", ".join(
        f"{k}={fmt(v) if isinstance(v, dt.date) and 'period' in k and v.day == 1 else v}"
        for k, v in values.items()
    )
    return f"{head} ({body})"


def _rules() -> Iterable[tuple[str, str, str]]:
    text = (SQL_DIR / "input_rules.sql").read_text()
    for block in re.split(r"\n(?=-- name: )", text):
        match = re.match(r"-- name: (\S+)\n-- rule: ([^\n]+)\n(.*)", block.strip(), re.S)
        if match:
            yield match.group(1), match.group(2), match.group(3).strip().rstrip(";")


def _stop_on(con: duckdb.DuckDBPyConnection, table: str, message: Callable[[list], str]) -> None:
    rows = con.execute(f"SELECT * FROM {table} LIMIT 5").fetchall()
    if rows:
        raise SettleError(message(rows))


def compute(con: duckdb.DuckDBPyConnection, progress: Progress = _quiet) -> None:
    """Run the settlement SQL over the registered terms, inputs and run scope."""
    for path in sql_files():
        started = time.perf_counter()
        run_script(con, path)
        progress(f"  {path.stem:<16} {time.perf_counter() - started:6.2f}s")
        if path.stem.endswith("indexation"):
            _stop_on(
                con,
                "calc_missing_index_values",
                lambda rows: (
                    "index values missing: "
                    + "; ".join(
                        f"{r[1]} for {fmt(r[2])} (contract {r[0]}, review {fmt(r[3])})"
                        for r in rows
                    )
                    + ". Add them to index_values/ (rule: every review reads its index months)."
                ),
            )
        if path.stem.endswith("pricing"):
            _stop_on(
                con,
                "calc_missing_pricing",
                lambda rows: (
                    "no pricing in force: "
                    + "; ".join(f"{r[1]} of {r[0]} from {fmt(r[2])}" for r in rows)
                    + ". Every pricing entry that could apply was agreed after --as-known-at "
                    "(rule: each service line has a price in force every month of the term)."
                ),
            )
        if path.stem.endswith("terms_beyond_month"):
            _stop_on(
                con,
                "calc_missing_fx_rates",
                lambda rows: (
                    "FX rates missing: "
                    + "; ".join(
                        f"{r[1]} for {fmt(r[2])} (contract {r[0]}, month {fmt(r[3])})" for r in rows
                    )
                    + ". Add them to fx_rates/ (rule: fx_sharing reads the rate of month - "
                    "lag_months for every month of the term)."
                ),
            )
        if path.stem.endswith("kpi_results"):
            _stop_on(
                con,
                "calc_missing_required_kpis",
                lambda rows: (
                    "required KPI values missing: "
                    + "; ".join(f"{r[1]} for {fmt(r[2])} (contract {r[0]})" for r in rows)
                    + ". Add the rows to kpis/ (or, for a KPI with a measure, the month's "
                    "interactions/) (rule: a KPI with required: true has a value every "
                    "settled month)."
                ),
            )


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


def check_references(contracts: list[LoadedContract], inputs: InputSet) -> None:
    """The referential rules between loaded inputs and contracts, on an in-memory database."""
    con = duckdb.connect()
    try:
        ensure_schema(con)
        run_script(con, SQL_DIR / "01_macros.sql")
        register_terms(con, contracts)
        register_inputs(con, inputs)
        check_input_rules(con)
    finally:
        con.close()


def validate(contracts_dir: Path, data_dir: Path, progress: Progress = _quiet) -> dict[str, int]:
    """Every check a run makes before computing, in memory: nothing is written anywhere."""
    started = time.perf_counter()
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


def connect_for_write(db_path: Path, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database file for writing, waiting a while for another writer to finish."""
    wait_s = float(os.environ.get("SETTLE_LOCK_WAIT_S", "30")) if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(db_path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
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


@contextlib.contextmanager
def write_transaction(db_path: Path, commit: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on the database file: committed at the end, or rolled back on any error
    (or when `commit` is false: a dry run). A killed process leaves nothing behind either."""
    con = connect_for_write(db_path)
    try:
        con.execute("BEGIN TRANSACTION")
        yield con
        con.execute("COMMIT" if commit else "ROLLBACK")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


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
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
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
        register_terms(con, contracts)
        register_inputs(con, inputs)
        check_input_rules(con)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE run_params AS SELECT ?::DATE AS period_from, "
            "?::DATE AS period_to, ?::DATE AS as_known_at, ?::VARCHAR AS mode",
            [request.period_from, request.period_to, request.as_known_at or FAR_FUTURE, mode],
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
        _store(con, run_id, mode, request, contracts, selected, inputs, started_at)
        result = _summarise(con, run_id, mode, written)
    if request.dry_run:
        result.run_id = None
    progress(f"settled in {time.perf_counter() - t0:.2f}s")
    return result


def _require_in_term(selected: list[LoadedContract], request: RunRequest) -> None:
    """A request that no selected contract's term reaches stops before anything is computed."""
    for c in selected:
        end = c.terms.end or FAR_FUTURE
        if c.terms.start <= request.period_to and request.period_from <= end:
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
            sorted(inputs.file_hashes),
            [inputs.file_hashes[k] for k in sorted(inputs.file_hashes)],
        ],
    )


def _summarise(con: duckdb.DuckDBPyConnection, run_id: int, mode: str, written: int) -> RunResult:
    def rows(query: str) -> list[dict]:
        cur = con.execute(query, [run_id])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    # one definition of the invoice summary (sql/views.sql), read for this run
    invoices = rows("SELECT * FROM invoice_summary WHERE run_id = ? ORDER BY contract_id, period")
    recon = [
        {k: i[k] for k in ("contract_id", "period", "billed", "difference", "exceptions")}
        for i in invoices
    ]
    adjustments = rows(
        "SELECT contract_id, period, billed_in_period, line_key, delta, reason "
        "FROM adjustments WHERE run_id = ? ORDER BY contract_id, period, line_key"
    )
    return RunResult(run_id, mode, written, invoices, adjustments, recon)


def close_gate(
    con: duckdb.DuckDBPyConnection, contract_id: str, period: dt.date, run_id: int
) -> tuple[str | None, str]:
    """What lets a contract-month close ('approved' or 'disputed'), or None and what blocks it."""
    approved, exceptions, undisputed = con.execute(
        (SQL_DIR / "close_gate.sql").read_text(), [run_id, contract_id, period]
    ).fetchone()
    if approved:
        return "approved", ""
    if exceptions and not undisputed:
        return "disputed", ""
    if undisputed:
        return None, f"not approved, exceptions not disputed: {', '.join(undisputed)}"
    return None, "not approved"


@dataclass
class Closed:
    contract_id: str
    period: dt.date
    run_id: int
    how: str  # approved | disputed | forced | already closed


def _close_month(
    con, period: dt.date, contract_ids: set[str] | None, progress: Progress
) -> list[tuple[str, int, str]]:
    """The contract-months of one month to close: (contract, run, status) after checks."""
    candidates = con.execute(
        """
        SELECT s.contract_id, s.status, c.run_id
        FROM period_status s
        LEFT JOIN current_run_periods c USING (contract_id, period)
        WHERE s.period = ?
        ORDER BY s.contract_id
        """,
        [period],
    ).fetchall()
    known = {r[0] for r in candidates}
    wanted = contract_ids or known
    missing = sorted(wanted - known)
    if missing or not wanted:
        raise SettleError(
            f"cannot close {fmt(period)} for {', '.join(missing) or 'any contract'}: the month "
            "has not been settled yet (run `settle run` first). Nothing was closed."
        )
    return [(cid, run_id, status) for cid, status, run_id in candidates if cid in wanted]


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
    if not Path(db_path).is_file():
        raise SettleError(f"{db_path}: no settlement database there; nothing to close")
    with write_transaction(db_path) as con:
        ensure_schema(con)
        plan: list[Closed] = []
        refused: list[str] = []
        for month in month_range(period, to or period):
            for contract_id, run_id, status in _close_month(con, month, contract_ids, progress):
                if status == "closed":
                    progress(f"{contract_id} {fmt(month)} is already closed")
                    plan.append(Closed(contract_id, month, run_id, "already closed"))
                    continue
                how, why = close_gate(con, contract_id, month, run_id)
                if how is None:
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
        for c in plan:
            if c.how == "already closed":
                continue
            con.execute(
                "UPDATE period_status SET status = 'closed', closed_at = ?, closed_run_id = ?, "
                "closed_how = ?, closed_by = ? "
                "WHERE contract_id = ? AND period = ? AND status = 'open'",
                [now, c.run_id, c.how, by, c.contract_id, c.period],
            )
    return plan
