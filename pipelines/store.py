"""The registry of stored tables: what each holds, where it comes from, how it is written and read.

Columns and types are declared once, in sql/schema.sql. This module names the tables and says how
the engine fills them; everything that lists stored tables reads it: the engine's writes, the
`current_` views (the generated block of sql/views.sql), the Dagster assets and their read-back,
and the README's table reference (generated between markers). `python -m pipelines.store`
rewrites the two generated blocks; tests/test_store.py fails while they are out of date.

Adding a stored column: declare it in its table in sql/schema.sql, select it in the calc table,
run `python -m pipelines.store`. Adding a table: its DDL in sql/schema.sql, an entry below
(RESULT_TABLES when a run fills it from a calc table, RUN_TABLES when the engine writes it
itself), then `python -m pipelines.store`.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import SettleError

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = REPO / "sql"
SCHEMA = SQL_DIR / "schema.sql"
VIEWS = SQL_DIR / "views.sql"
README = REPO / "README.md"


@dataclass(frozen=True)
class ResultTable:
    """A table each run appends to from one calc table, every row tagged with the run id."""

    name: str
    calc: str
    grain: str  # one row per ...
    period: str  # the month a row belongs to: the run's write set and the current_ view key
    sort_key: str  # the order rows are written in (stable files, comparable runs)
    description: str
    # True: a run stores every row it computed, not only its write set. Index factors are read
    # by later months' prices, so each run keeps the full trail it priced with.
    all_months: bool = False
    # False: Dagster shows the table through an asset of its own (interaction_counts is the
    # monthly asset that may count ahead, on Spark), not as an output of the settle multi-asset.
    settle_asset: bool = True
    # What the table is computed from, as the SQL reads it: other result tables by name, input
    # folders as "folder/". Drives the Dagster lineage (pipelines/orchestration/lineage.py).
    upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunTable:
    """A table the engine writes itself: the run log, the months, their status and terms."""

    name: str
    grain: str
    description: str


# In the order the settlement SQL computes them (the Dagster assets keep this order).
RESULT_TABLES: tuple[ResultTable, ...] = (
    ResultTable(
        "index_factors",
        "calc_index_factors",
        "contract × review month × index",
        "period",
        "contract_id, period, index_id",
        "Indexation review factors per contract: the index values, raw and clamped change, and "
        "the factor that prices and baselines are multiplied by. sql/03_indexation.sql, from "
        "the contract terms and index_values/.",
        all_months=True,
        upstream=("index_values/",),
    ),
    ResultTable(
        "charge_bands",
        "calc_usage_bands",
        "usage line × month × band reached",
        "period",
        "contract_id, period, service_line_id, band",
        "Units per pricing band and month, with the indexed rate and flat fee of each band. "
        "sql/04_pricing.sql, from volumes/ and index_factors.",
        upstream=("volumes/", "index_factors"),
    ),
    ResultTable(
        "charge_lines",
        "calc_charge_lines",
        "charge line × month",
        "period",
        "contract_id, period, sort_order, line_key",
        "Charges before credits: usage, fixed fee, minimum and surge lines per contract and "
        "month. sql/04_pricing.sql, from charge_bands and index_factors.",
        upstream=(
            "charge_bands",
            "index_factors",
            "commitment_windows",
            "one_off_instalments",
            "pass_through_costs",
        ),
    ),
    ResultTable(
        "interaction_counts",
        "calc_interaction_counts",
        "contract × service line × month × exclusion segment × threshold class",
        "period",
        "contract_id, service_line_id, period, excluded_from, kind, bound",
        "The counts every measured KPI needs, from one portable SQL definition run on DuckDB or "
        "Spark. sql/interactions.sql, from interactions/; a closed month's counts are its "
        "closing run's unless its files changed.",
        settle_asset=False,
        upstream=("interactions/", "exclusions/"),
    ),
    ResultTable(
        "commitment_windows",
        "calc_commitment_windows",
        "service line × commitment window",
        "billed_period",
        "contract_id, billed_period, service_line_id",
        "Commitments over a quarter or a year: the window, its months in the term, units and "
        "usage against the prorated minimum, and the true_up line. "
        "sql/04_terms_beyond_month.sql, from volumes/ and charge_bands.",
        upstream=("volumes/", "charge_bands", "index_factors"),
    ),
    ResultTable(
        "one_off_instalments",
        "calc_one_off_instalments",
        "one-off charge × instalment",
        "period",
        "contract_id, period, one_off_id, instalment",
        "One-off charges and their instalments (largest remainder, earliest first), with the "
        "index factor applied. sql/04_terms_beyond_month.sql, from the contract terms.",
        upstream=("index_factors",),
    ),
    ResultTable(
        "pass_through_costs",
        "calc_pass_through_lines",
        "pass-through item × month",
        "period",
        "contract_id, period, item_order",
        "Pass-through costs per item and month and the line cost x (1 + margin). "
        "sql/04_terms_beyond_month.sql, from pass_through/.",
        upstream=("pass_through/",),
    ),
    ResultTable(
        "fx_shares",
        "calc_fx_shares",
        "contract with fx_sharing × month",
        "period",
        "contract_id, period",
        "Currency risk-sharing: the rate read, base rate, movement, shared movement, the "
        "charges it applies to and the fx_share line. sql/04_terms_beyond_month.sql, from "
        "fx_rates/ and charge_lines.",
        upstream=("fx_rates/", "charge_lines", "commitment_windows"),
    ),
    ResultTable(
        "kpi_results",
        "calc_kpi_results",
        "contract × KPI × month",
        "period",
        "contract_id, period, kpi_order, kpi_id",
        "Each KPI per month: value (input or measured from interactions), target, met / failed / "
        "excused / no_data, consecutive failures, critical. sql/05_measures.sql and "
        "sql/06_kpi_results.sql, from kpis/, interactions/ and exclusions/.",
        upstream=("kpis/", "exclusions/", "interaction_counts"),
    ),
    ResultTable(
        "service_credits",
        "calc_service_credits",
        "failed KPI × month",
        "period",
        "contract_id, period, kpi_id",
        "Credits for failed KPIs: at-risk amount, severity, repeat multiplier, monthly cap, "
        "earn-back. sql/07_credits.sql, from charge_lines and kpi_results.",
        upstream=("charge_lines", "kpi_results"),
    ),
    ResultTable(
        "annual_credit_caps",
        "calc_annual_credit_caps",
        "contract × contract year",
        "billed_period",
        "contract_id, year_start",
        "The annual credit cap: a contract year's charges, its credits net of earn-back, the cap "
        "and the credit_cap_refund line. sql/07_credits_annual_cap.sql, from service_credits.",
        upstream=("charge_lines", "service_credits"),
    ),
    ResultTable(
        "gain_share",
        "calc_gain_share",
        "contract × gain-share window",
        "billed_period",
        "contract_id, window_start",
        "Gain-share windows: baseline and actual cost, savings, tiers, cap, gates and the provider "
        "amount billed on the window's last month. sql/08_gain_share.sql, from charge_lines, "
        "kpi_results and index_factors.",
        upstream=("gain_share_months", "kpi_results"),
    ),
    ResultTable(
        "gain_share_months",
        "calc_gain_share_months",
        "contract × month of a gain-share window",
        "period",
        "contract_id, period",
        "The months behind each gain-share window: units, charges, baseline and its factor, "
        "baseline and actual cost, savings. sql/08_gain_share.sql.",
        upstream=("charge_lines", "index_factors"),
    ),
    ResultTable(
        "adjustments",
        "calc_adjustments",
        "restated closed line",
        "billed_in_period",
        "contract_id, billed_in_period, period, line_key",
        "Restated closed months: closed, restated and delta per line, billed on the next open "
        "month's invoice. sql/10_adjustments.sql, from the restated invoice and the closing runs.",
        upstream=("charge_lines", "service_credits", "gain_share"),
    ),
    ResultTable(
        "invoice_lines",
        "calc_invoice",
        "invoice line",
        "period",
        "contract_id, period, sort_order, line_key",
        "The invoice the contract says is due, line by line, each amount rounded once. "
        "sql/09_invoice.sql and sql/10_adjustments.sql, from charge_lines, service_credits, "
        "gain_share and adjustments.",
        upstream=(
            "charge_lines",
            "service_credits",
            "annual_credit_caps",
            "gain_share",
            "adjustments",
            "one_off_instalments",
            "pass_through_costs",
            "fx_shares",
        ),
    ),
    ResultTable(
        "invoice_reconciliation",
        "calc_reconciliation",
        "contract × month × line key on either invoice",
        "period",
        "contract_id, period, line_key",
        "The provider's invoice against the expected one: difference, status, rate and volume "
        "variance per line. sql/11_reconcile.sql, from invoice_lines and vendor_invoices/.",
        upstream=("invoice_lines", "vendor_invoices/"),
    ),
)

RUN_TABLES: tuple[RunTable, ...] = (
    RunTable(
        "settlement_runs",
        "run",
        "Each run: its months, mode, as-known-at date, contracts, code version and the sha256 "
        "of every contract file and input file it read.",
    ),
    RunTable(
        "run_periods",
        "run × contract × month stored",
        "The months each run stored: the basis of every current_ view.",
    ),
    RunTable(
        "period_status",
        "contract × month ever settled",
        "open, or closed once with its closing run (closed_run_id); never reopened.",
    ),
    RunTable(
        "run_terms",
        "run × effective-dated entry",
        "Every effective-dated entry a run settled with, fingerprinted.",
    ),
    RunTable(
        "run_configs",
        "run × contract",
        "The exact contract YAML behind each run.",
    ),
    RunTable(
        "run_inputs",
        "run × input file",
        "The input files each run read (or left unopened, for closed months), with size, "
        "mtime, sha256 and the month of a period= folder.",
    ),
    RunTable(
        "input_digests",
        "contract × month × input folder × change",
        "A digest of each contract-month's rows in volumes/, kpis/, exclusions/, pass_through/ "
        "and of its interaction files, added when a run sees it change: what names the cause "
        "of an adjustment.",
    ),
    RunTable(
        "accounting_map",
        "run × contract × line type",
        "The ledger account each run posts a line type to (the contract's accounting section): "
        "what the journal export reads.",
    ),
    RunTable(
        "approvals",
        "approval event",
        "settle approve: the run whose invoice was approved, by whom, when. Append-only; "
        "current_approvals shows the latest per contract and month.",
    ),
    RunTable(
        "disputes",
        "dispute event (raised, then resolved)",
        "settle dispute and settle resolve: the disputed line, amount, reason, outcome. "
        "Append-only; current_disputes shows the latest event per dispute.",
    ),
)

BY_NAME: dict[str, ResultTable] = {t.name: t for t in RESULT_TABLES}
DAGSTER_TABLES: tuple[ResultTable, ...] = tuple(t for t in RESULT_TABLES if t.settle_asset)

# Identities the stored figures satisfy, stated in the README and checked by the tests: each
# query returns the rows that break its rule (none).
IDENTITIES: tuple[tuple[str, str, str], ...] = (
    (
        "invoice_summary",
        "`amount_due` = `charges` + `credits_and_bonus` + `gain_share` + `adjustments` + `other`, "
        "and `credits_and_bonus` = `credits` + `earn_back` + `bonus`",
        "SELECT * FROM invoice_summary WHERE amount_due <> charges + credits_and_bonus + "
        "gain_share + adjustments + other OR credits_and_bonus <> credits + earn_back + bonus",
    ),
    (
        "invoice_reconciliation",
        "`difference` = `billed_amount` − `expected_amount` (a missing side counts as 0)",
        "SELECT * FROM invoice_reconciliation "
        "WHERE difference <> coalesce(billed_amount, 0) - coalesce(expected_amount, 0)",
    ),
    (
        "invoice_reconciliation",
        "`rate_variance` + `volume_variance` + `other_variance` = `difference`: where both sides "
        "give quantity and rate the difference splits three ways; elsewhere rate and volume "
        "variance are NULL and `other_variance` is the whole difference",
        "SELECT * FROM invoice_reconciliation WHERE (rate_variance IS NULL) <> "
        "(volume_variance IS NULL) OR other_variance IS NULL "
        "OR coalesce(rate_variance, 0) + coalesce(volume_variance, 0) + other_variance "
        "<> difference",
    ),
    (
        "adjustments",
        "`delta` = `restated_amount` − `closed_amount` − `previously_adjusted`",
        "SELECT * FROM adjustments "
        "WHERE delta <> restated_amount - closed_amount - previously_adjusted",
    ),
)


# --------------------------------------------------------------------------- declared columns


@functools.cache
def _declared(schema_text: str) -> dict[str, tuple[tuple[str, str], ...]]:
    con = duckdb.connect()
    try:
        con.execute(schema_text)
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"
            ).fetchall()
        ]
        return {
            n: tuple((r[0], r[1]) for r in con.execute(f"DESCRIBE {n}").fetchall()) for n in names
        }
    finally:
        con.close()


def declared() -> dict[str, tuple[tuple[str, str], ...]]:
    """table -> ((column, type), ...) as sql/schema.sql declares them."""
    return _declared(SCHEMA.read_text())


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]


_INTS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")


def _fits(source: str, target: str) -> bool | None:
    """True when every value of type `source` is stored exactly in `target`; None when only the
    values can tell (a decimal with more places or digits than declared); False otherwise."""
    if source == target or source == '"NULL"':
        return True
    if source in _INTS and target in _INTS:
        return _INTS.index(source) <= _INTS.index(target)
    s, t = _DECIMAL.fullmatch(source), _DECIMAL.fullmatch(target)
    if s and t:
        (sp, ss), (tp, ts) = (int(x) for x in s.groups()), (int(x) for x in t.groups())
        return True if ts >= ss and tp - ts >= sp - ss else None
    if source in _INTS and t:
        return None
    return False


def _rows_text(con: duckdb.DuckDBPyConnection, query: str) -> str:
    cur = con.execute(query + " LIMIT 3")
    cols = [d[0] for d in cur.description]
    return "; ".join(
        "(" + ", ".join(f"{c}={v}" for c, v in zip(cols, r, strict=True)) + ")"
        for r in cur.fetchall()
    )


def check_source(con: duckdb.DuckDBPyConnection, table: ResultTable, source: str) -> None:
    """The rows a run is about to store must fit the declared table exactly: the same column
    names, each type the declared one or one it holds without loss. A decimal with more places
    than declared is accepted only if no value uses them (amounts are rounded to at most 4
    places before they are stored). Raises SettleError; nothing is altered."""
    want = dict(declared()[table.name])
    have = columns_of(con, table.name)
    if have != list(want.items()):
        diff = sorted(set(have) ^ set(want.items()))
        raise SettleError(
            f"{table.name}: the stored table in the database differs from its declaration in "
            f"sql/schema.sql ({', '.join(f'{c} {t}' for c, t in diff) or 'column order'}): the "
            "database was created by another version of Settle. Settle it into a new database "
            "file. Nothing was written."
        )
    want.pop("run_id")
    got = columns_of(con, f"({source})")
    missing = [c for c in want if c not in dict(got)]
    extra = [f"{c} {t}" for c, t in got if c not in want]
    wrong, narrowed = [], []
    for name, dtype in got:
        if name in want:
            fits = _fits(dtype, want[name])
            if fits is False:
                wrong.append(f"{name} is {dtype}, declared {want[name]}")
            elif fits is None:
                narrowed.append((name, dtype))
    if missing or extra or wrong:
        parts = [
            f"missing: {', '.join(missing)}" if missing else "",
            f"not declared: {', '.join(extra)}" if extra else "",
            f"wrong type: {'; '.join(wrong)}" if wrong else "",
        ]
        raise SettleError(
            f"{table.name}: the columns of {table.calc} do not match the table declared in "
            f"sql/schema.sql ({'; '.join(p for p in parts if p)}). A run never alters a stored "
            "table: declare the change in sql/schema.sql (rule: every stored column is "
            "declared). Nothing was written."
        )
    if not narrowed:
        return
    # one scan for every narrowed column; only a table with a lossy value is scanned per column
    # to name the first one
    lossy_any = " OR ".join(
        f'TRY_CAST("{name}" AS {want[name]}) IS DISTINCT FROM "{name}"' for name, _ in narrowed
    )
    if not con.execute(f"SELECT count(*) FROM ({source}) WHERE {lossy_any}").fetchone()[0]:
        return
    for name, dtype in narrowed:
        lossy = (
            f'SELECT {table.sort_key}, "{name}" FROM ({source}) '
            f'WHERE TRY_CAST("{name}" AS {want[name]}) IS DISTINCT FROM "{name}"'
        )
        if con.execute(f"SELECT count(*) FROM ({lossy})").fetchone()[0]:
            raise SettleError(
                f"{table.name}: column {name}: {table.calc} gives {dtype} values that "
                f"{want[name]} cannot hold exactly (rule: a stored column keeps every value "
                f"exactly; amounts are rounded to at most 4 places before they are stored); "
                f"first: {_rows_text(con, lossy)}. Nothing was written."
            )


def append(con: duckdb.DuckDBPyConnection, table: ResultTable, run_id: int) -> None:
    """Append the run's rows of one result table, after checking them against its declaration."""
    source = f"SELECT * FROM {table.calc}"
    if not table.all_months:
        source = (
            f"SELECT c.* FROM {table.calc} c JOIN calc_writes w "
            f"ON w.contract_id = c.contract_id AND w.period = c.{table.period}"
        )
    check_source(con, table, source)
    insert = (
        f"INSERT INTO {table.name} BY NAME SELECT {int(run_id)}::BIGINT AS run_id, * "
        f"FROM ({source}) {{where}} ORDER BY {table.sort_key}"
    )
    batches = _contract_batches(con, table)
    if not batches:
        con.execute(insert.format(where=""))
    for first, last in batches:
        con.execute(insert.format(where="WHERE contract_id BETWEEN ? AND ?"), [first, last])


# Rows sorted per INSERT. Sorting a million wide rows at once spills under the memory limit
# (1.3M charge lines of 10,000 contracts: 6.8 s of CPU one way, 4.7 s in batches).
STORE_BATCH_ROWS = 200_000


def _contract_batches(con: duckdb.DuckDBPyConnection, table: ResultTable) -> list[tuple]:
    """Consecutive contract ranges of about STORE_BATCH_ROWS rows each, for a large table whose
    sort key starts with contract_id: inserted range by range in order, the rows land in exactly
    the order one sorted INSERT writes. [] (one INSERT) for a small table."""
    if not table.sort_key.startswith("contract_id,"):
        return []
    total, nulls = con.execute(
        f"SELECT count(*), count(*) - count(contract_id) FROM {table.calc}"
    ).fetchone()
    if total <= STORE_BATCH_ROWS or nulls:
        return []
    return con.execute(
        f"""
        SELECT min(contract_id), max(contract_id)
        FROM (SELECT contract_id, sum(n) OVER (ORDER BY contract_id) AS upto
              FROM (SELECT contract_id, count(*) AS n FROM {table.calc} GROUP BY contract_id))
        GROUP BY (upto - 1) // {STORE_BATCH_ROWS}
        ORDER BY 1
        """
    ).fetchall()


# --------------------------------------------------------------------------- generated text

VIEWS_BEGIN = "-- BEGIN generated by `python -m pipelines.store` from pipelines/store.py"
VIEWS_END = "-- END generated"
README_BEGIN = "<!-- BEGIN table reference: generated by `python -m pipelines.store` -->"
README_END = "<!-- END table reference -->"


def current_view_sql(table: ResultTable) -> str:
    on = (
        "USING (run_id, contract_id, period)"
        if table.period == "period"
        else f"\n  ON c.run_id = t.run_id AND c.contract_id = t.contract_id "
        f"AND c.period = t.{table.period}"
    )
    return (
        f"CREATE OR REPLACE VIEW current_{table.name} AS\n"
        f"SELECT t.* FROM {table.name} t JOIN current_run_periods c {on};"
    )


def views_block() -> str:
    body = "\n".join(current_view_sql(t) for t in RESULT_TABLES)
    return f"{VIEWS_BEGIN}\n{body}\n{VIEWS_END}"


def _type(dtype: str) -> str:
    return dtype.replace(",", ", ")


def column_notes(schema_text: str | None = None) -> dict[str, dict[str, str]]:
    """table -> column -> the `-- comment` on its line in sql/schema.sql (continued on lines
    that hold only a comment)."""
    notes: dict[str, dict[str, str]] = {}
    table, column = None, None
    for line in (schema_text or SCHEMA.read_text()).splitlines():
        if m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \(", line):
            table, column = m.group(1), None
            notes[table] = {}
        elif line.startswith(")"):
            table = None
        elif table and (m := re.match(r"\s+(\w+) [^-]*--\s*(.*)$", line)):
            column = m.group(1)
            notes[table][column] = m.group(2).strip()
        elif table and column and (m := re.match(r"\s+--\s*(.*)$", line)):
            notes[table][column] += " " + m.group(1).strip()
    return notes


def _wrap(items: list[str], width: int = 100) -> list[str]:
    lines, line = [], ""
    for item in items:
        if line and len(line) + 3 + len(item) > width:
            lines.append(line + " ·")
            line = item
        else:
            line = f"{line} · {item}" if line else item
    return [*lines, line] if line else lines


def readme_block() -> str:
    tables = declared()
    out = [
        README_BEGIN,
        "",
        "Every stored table is declared in `sql/schema.sql`; a run never alters one. A run whose",
        "results do not match the declared columns and types stops with an error and writes",
        "nothing. The tables are append-only, except `period_status`, whose open rows become",
        "closed once.",
        "",
        "**Current views.** `current_<table>` shows, per contract and month (the month column",
        "below), the rows of the run that stands for it (`current_run_periods`): for a closed",
        "month the closing run, otherwise the latest `settle` run that stored the month.",
        "`current_invoice_summary` is one row per invoice (`invoice_summary` per run).",
        "",
        "| table | one row per | month column | current view |",
        "|---|---|---|---|",
    ]
    for t in RESULT_TABLES:
        out.append(f"| `{t.name}` | {t.grain} | `{t.period}` | `current_{t.name}` |")
    for r in RUN_TABLES:
        out.append(f"| `{r.name}` | {r.grain} | | |")
    out += ["", "What always adds up (checked by the tests on every settled sample):", ""]
    out += [f"- `{where}`: {text}." for where, text, _ in IDENTITIES]
    notes = column_notes()
    for t in (*RESULT_TABLES, *RUN_TABLES):
        extra = ""
        if isinstance(t, ResultTable) and t.all_months:
            extra = " Each run stores every row it computed, not only the months it settles."
        out += ["", f"**`{t.name}`** ({t.grain}). {t.description}{extra}", ""]
        out += _wrap([f"`{c}` {_type(d)}" for c, d in tables[t.name]])
        if notes.get(t.name):
            out.append("")
            out += [f"- `{c}`: {note}" for c, note in notes[t.name].items()]
    out += ["", README_END]
    return "\n".join(out)


def _replace(text: str, begin: str, end: str, block: str, path: Path) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SettleError(f"{path}: the markers {begin!r} ... {end!r} are missing")
    return pattern.sub(lambda _: block, text, count=1)


def generated() -> dict[Path, str]:
    """The files with generated blocks, as they should read."""
    return {
        VIEWS: _replace(VIEWS.read_text(), VIEWS_BEGIN, VIEWS_END, views_block(), VIEWS),
        README: _replace(README.read_text(), README_BEGIN, README_END, readme_block(), README),
    }


def main() -> int:
    for path, text in generated().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"rewrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
