"""The declared store (issue 11, points 3 and 6): every stored table is declared in sql/schema.sql,
one registry (pipelines/store.py) lists them, a run never alters a table, every current_ view
keeps a closed month's closing figures, and the README's table reference is the registry's.
"""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines import engine, store, workflow
from pipelines.errors import SettleError
from pipelines.periods import parse_period
from tests.conftest import Workspace

REPO = Path(__file__).resolve().parent.parent

ONE_LINE = """\
contract_id: C1
currency: GBP
start: 2024-01
reconciliation: {tolerance_abs: 0.01}
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 2.405}]}
fixed_fees:
  - {id: admin, amount: 100.00}
"""


def one_line(ws: Workspace) -> None:
    ws.contract(ONE_LINE)
    ws.volumes([("C1", "voice", "2024-01", "100")])


# --------------------------------------------------------------------------- the registry


def test_every_declared_table_is_in_the_registry_once():
    declared = set(store.declared())
    registered = [t.name for t in (*store.RESULT_TABLES, *store.RUN_TABLES)]
    assert len(registered) == len(set(registered))
    assert declared == set(registered)
    for t in store.RESULT_TABLES:
        cols = [c for c, _ in store.declared()[t.name]]
        assert cols[:1] == ["run_id"], t.name
        assert t.period in cols and "contract_id" in cols, t.name
        for key in t.sort_key.split(", "):
            assert key in cols, (t.name, key)


def test_views_sql_and_the_readme_reference_are_generated_from_the_registry():
    # `python -m pipelines.store` rewrites both; this fails while either is out of date
    for path, text in store.generated().items():
        assert path.read_text() == text, (
            f"{path.name} is out of date: run python -m pipelines.store"
        )


def test_no_stored_column_is_a_float_and_rounded_amounts_are_decimal_38_4():
    for table, columns in store.declared().items():
        for name, dtype in columns:
            assert dtype not in ("FLOAT", "DOUBLE", "REAL"), (table, name)
    rounded = {
        "charge_lines": ["amount"],
        "service_credits": ["amount", "split_total", "charges"],
        "gain_share": ["provider_amount"],
        "gain_share_months": ["charges"],
        "invoice_lines": ["amount"],
        "invoice_reconciliation": [
            "expected_amount",
            "billed_amount",
            "difference",
            "rate_variance",
            "volume_variance",
            "other_variance",
        ],
        "adjustments": ["closed_amount", "previously_adjusted", "restated_amount", "delta"],
    }
    declared = store.declared()
    for table, names in rounded.items():
        types = dict(declared[table])
        assert {n: types[n] for n in names} == dict.fromkeys(names, "DECIMAL(38,4)"), table


def test_a_run_stores_the_declared_types(ws):
    one_line(ws)
    ws.settle("2024-01")
    with duckdb.connect(str(ws.db), read_only=True) as con:
        for t in store.RESULT_TABLES:
            assert store.columns_of(con, t.name) == list(store.declared()[t.name]), t.name
    # 100 x 2.405 = 240.50 exactly, stored at the declared 4 places; the exact product is kept
    # as amount_unrounded
    [line] = ws.rows(
        "SELECT amount, amount_unrounded, typeof(amount) AS t FROM charge_lines "
        "WHERE charge_type = 'usage'"
    )
    assert line == {"amount": D("240.50"), "amount_unrounded": D("240.5"), "t": "DECIMAL(38,4)"}


# --------------------------------------------------------------------------- a run never alters


@pytest.fixture
def sql_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of sql/ that the engine and the registry read (a test-only SQL mutation)."""
    copy = shutil.copytree(REPO / "sql", tmp_path / "sql_copy")
    monkeypatch.setattr(engine, "SQL_DIR", copy)
    monkeypatch.setattr(store, "SCHEMA", copy / "schema.sql")
    return copy


def _mutate(schema: Path, old: str, new: str) -> None:
    text = schema.read_text()
    block = text.index("CREATE TABLE IF NOT EXISTS charge_lines (")
    at = text.index(old, block)
    schema.write_text(text[:at] + new + text[at + len(old) :])


def test_undeclared_and_mistyped_columns_stop_the_run_and_write_nothing(ws, sql_copy):
    one_line(ws)
    # the declaration lacks `capped` and says `units` is text: the calc table gives more
    _mutate(sql_copy / "schema.sql", "    capped BOOLEAN,\n", "")
    _mutate(sql_copy / "schema.sql", "units DECIMAL(38, 12)", "units VARCHAR")
    _mutate(
        sql_copy / "schema.sql",
        "    sort_order INTEGER,\n",
        "    sort_order INTEGER,\n    bogus DATE,\n",
    )
    with pytest.raises(SettleError) as err:
        ws.settle("2024-01")
    message = str(err.value)
    assert message.startswith("charge_lines: the columns of calc_charge_lines do not match")
    assert "missing: bogus" in message
    assert "not declared: capped BOOLEAN" in message
    assert "wrong type: units is DECIMAL(38,12), declared VARCHAR" in message
    assert "sql/schema.sql" in message and "Nothing was written." in message
    # the run was the database's first: a failed first run leaves no database file at all
    assert not ws.db.exists()


@pytest.mark.parametrize(
    ("source", "declared", "fits"),
    [
        ("DECIMAL(20,6)", "DECIMAL(38,6)", True),  # more digits, same places: every value
        ("DECIMAL(38,10)", "DECIMAL(38,4)", None),  # fewer places: only if no value uses them
        ("DECIMAL(38,4)", "DECIMAL(20,6)", None),  # fewer integer digits: the values tell
        ("INTEGER", "BIGINT", True),
        ("BIGINT", "INTEGER", False),
        ("INTEGER", "DECIMAL(38,4)", None),
        ("DOUBLE", "DECIMAL(38,4)", False),
        ("DECIMAL(38,4)", "DOUBLE", False),
        ("DATE", "VARCHAR", False),
        ('"NULL"', "DATE", True),
    ],
)
def test_which_types_a_declared_column_accepts(source, declared, fits):
    assert store._fits(source, declared) is fits


def test_a_value_the_declared_type_cannot_hold_stops_the_run(ws, sql_copy):
    one_line(ws)
    # rate 2.405 needs 3 places; a 2-place declaration would round it, so the run stops
    _mutate(sql_copy / "schema.sql", "    rate DECIMAL(38, 10),", "    rate DECIMAL(38, 2),")
    with pytest.raises(SettleError) as err:
        ws.settle("2024-01")
    message = str(err.value)
    assert message.startswith(
        "charge_lines: column rate: calc_charge_lines gives DECIMAL(38,10) values that "
        "DECIMAL(38,2) cannot hold exactly"
    )
    assert "line_key=usage:voice" in message and "rate=2.4050000000" in message


def test_a_database_whose_table_differs_from_the_declaration_is_not_altered(ws):
    one_line(ws)
    ws.settle("2024-01")
    with duckdb.connect(str(ws.db)) as con:
        con.execute("ALTER TABLE charge_lines DROP COLUMN capped")
    before = ws.db_bytes()
    with pytest.raises(
        SettleError, match=r"^charge_lines: the stored table in the database differs"
    ):
        ws.settle("2024-01")
    assert ws.db_bytes() == before
    assert ws.one("SELECT count(*) FROM settlement_runs") == 1


# --------------------------------------------------------------------------- one invoice summary


def test_the_invoice_summary_adds_up_the_stored_lines_and_the_providers_invoice(ws):
    one_line(ws)
    ws.vendor_invoices(
        [
            ("C1", "2024-01", "INV-1", "usage:voice", "Voice", "100", "2.405", "240.50"),
            ("C1", "2024-01", "INV-1", "fixed:admin", "Admin", "1", "110.00", "110.00"),
        ]
    )
    result = ws.settle("2024-01")
    # expected: 240.50 + 100.00 = 340.50; billed 240.50 + 110.00 = 350.50; the fee is 10.00 over
    want = {
        "run_id": 1,
        "contract_id": "C1",
        "currency": "GBP",
        "charges": D("340.50"),
        "credits": 0,
        "earn_back": 0,
        "bonus": 0,
        "credits_and_bonus": 0,
        "gain_share": 0,
        "adjustments": 0,
        "other": 0,
        "amount_due": D("340.50"),
        "billed": D("350.50"),
        "difference": D("10.00"),
        "exceptions": 1,
        "lines": 2,
        "reconciled_lines": 2,
    }
    [summary] = ws.rows("SELECT * EXCLUDE (period, month_status) FROM current_invoice_summary")
    assert summary == want
    [run] = result.invoices
    assert {k: run[k] for k in want} == want
    assert ws.one("SELECT amount_due FROM current_invoice_totals") == D("340.50")


# --------------------------------------------------------------------------- closed months


def _samples(tmp_path: Path) -> tuple[Path, Path]:
    contracts = shutil.copytree(REPO / "contracts_config", tmp_path / "contracts_config")
    data = shutil.copytree(
        REPO / "data_samples", tmp_path / "data", ignore=shutil.ignore_patterns("*.py")
    )
    return contracts, data


def _settle(contracts, data, db, first: str, last: str, as_known_at: str | None = None):
    known = dt.date.fromisoformat(as_known_at) if as_known_at else None
    request = engine.RunRequest(parse_period(first), parse_period(last), None, known)
    return engine.settle(contracts, data, db, request)


def _closing_rows(con, view: str, table: str, period: str) -> tuple[list, list]:
    """For every closed contract-month: the view's rows, and the closing run's rows."""
    shown = con.execute(
        f"SELECT v.* FROM {view} v JOIN period_status ps ON ps.contract_id = v.contract_id "
        f"AND ps.period = v.{period} WHERE ps.status = 'closed' ORDER BY ALL"
    ).fetchall()
    closing = con.execute(
        f"SELECT t.* FROM {table} t JOIN period_status ps ON ps.contract_id = t.contract_id "
        f"AND ps.period = t.{period} AND ps.closed_run_id = t.run_id "
        f"WHERE ps.status = 'closed' ORDER BY ALL"
    ).fetchall()
    return shown, closing


def test_every_current_view_keeps_the_closing_run_after_an_index_correction(tmp_path):
    contracts, data = _samples(tmp_path)
    db = tmp_path / "settlement.duckdb"
    _settle(contracts, data, db, "2024-01", "2025-06", "2025-07-10")
    workflow.approve(db, parse_period("2024-01"), parse_period("2025-06"), by="test")
    engine.close(db, parse_period("2024-01"), to=parse_period("2025-06"))

    # UK_CPI for 2024-10 (read by ACME-CONTOSO-01's 2025-01 review, now closed) is corrected
    # from 137.5 to 138.5
    path = data / "index_values" / "index_values.parquet"
    values = pq.read_table(path)
    hit = pc.and_(
        pc.equal(values["index_id"], "UK_CPI"),
        pc.equal(values["period"], pa.scalar(dt.date(2024, 10, 1), pa.date32())),
    )
    assert pc.sum(hit.cast("int64")).as_py() == 1
    fixed = pc.if_else(hit, D("138.5"), values["value"]).cast(values.schema.field("value").type)
    pq.write_table(values.set_column(values.schema.get_field_index("value"), "value", fixed), path)

    rerun = _settle(contracts, data, db, "2025-07", "2025-07")
    assert rerun.run_id == 2

    with duckdb.connect(str(db), read_only=True) as con:
        # the rerun read the correction: its 2025-01 review has the new value ...
        review = (
            "SELECT run_id, reference_value FROM {} WHERE contract_id = 'ACME-CONTOSO-01' "
            "AND period = '2025-01-01' AND index_id = 'UK_CPI' ORDER BY run_id"
        )
        assert con.execute(review.format("index_factors")).fetchall() == [
            (1, D("137.5")),
            (2, D("138.5")),
        ]
        # ... and the closed month's current view keeps the closing run's
        assert con.execute(review.format("current_index_factors")).fetchall() == [(1, D("137.5"))]
        # the rerun restates the closed months the new factor prices: billed on 2025-07
        assert con.execute(
            "SELECT count(*) FROM current_adjustments WHERE contract_id = 'ACME-CONTOSO-01' "
            "AND billed_in_period = '2025-07-01'"
        ).fetchone()[0]

        for t in store.RESULT_TABLES:
            shown, closing = _closing_rows(con, f"current_{t.name}", t.name, t.period)
            assert shown == closing, t.name
            # the closed months bill no adjustments, and the samples' one-off charge is billed
            # in 2025-10..12, after them
            unused = {"adjustments", "one_off_instalments"}
            if t.name not in unused:
                assert shown, t.name
        shown, closing = _closing_rows(con, "current_invoice_summary", "invoice_summary", "period")
        assert [r[:-1] for r in shown] == closing and shown

        # the identities the README states hold on every settled sample
        for where, text, query in store.IDENTITIES:
            assert con.execute(f"SELECT count(*) FROM {where}").fetchone()[0], where
            assert con.execute(query).fetchall() == [], text


def test_the_far_future_sentinel_is_defined_once():
    # open terms and "every term agreed so far" both stand for 9999-12: one macro, far_future()
    found = [
        str(p.relative_to(REPO))
        for p in sorted([*(REPO / "pipelines").rglob("*.py"), *(REPO / "sql").glob("*.sql")])
        if "9999-12" in p.read_text() or "9999, 12" in p.read_text()
    ]
    assert found == ["sql/01_macros.sql"]


def test_a_large_table_stored_in_contract_batches_is_stored_exactly_as_in_one_insert(
    tmp_path, monkeypatch
):
    """store.append sorts a large table contract range by contract range (one sort of a million
    wide rows spills under the memory limit). With a batch size of 1 every contract is its own
    INSERT: the stored rows, their values and their order on disk must be those of one sorted
    INSERT of the same run."""
    request = engine.RunRequest(parse_period("2024-01"), parse_period("2025-12"))
    settled = {}
    for name, batch in (("one", 10**12), ("batched", 1)):
        monkeypatch.setattr(store, "STORE_BATCH_ROWS", batch)
        db = tmp_path / f"{name}.duckdb"
        engine.settle(REPO / "contracts_config", REPO / "data_samples", db, request)
        with duckdb.connect(str(db), read_only=True) as con:
            # no ORDER BY: the order the rows were written in
            settled[name] = {
                t.name: con.execute(f"SELECT * FROM {t.name}").fetchall()
                for t in store.RESULT_TABLES
            }
    with duckdb.connect(str(tmp_path / "batched.duckdb"), read_only=True) as con:
        assert (
            con.execute("SELECT count(DISTINCT contract_id) FROM charge_lines").fetchone()[0] == 3
        )
    assert settled["batched"]["charge_lines"], "the samples store charge lines"
    for t in store.RESULT_TABLES:
        assert settled["batched"][t.name] == settled["one"][t.name], t.name
