"""Test workspace: real contract YAML files, real Parquet inputs, a real DuckDB file.

def test_something(ws):
    ws.contract(MINIMAL_CONTRACT)                       # YAML text or a dict
    ws.volumes([("C1", "voice", "2024-01", "100")])      # rows as tuples of text
    ws.settle("2024-01")
    assert ws.one("SELECT amount FROM current_invoice_lines") == Decimal("240.00")
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import engine, workflow
from pipelines.periods import parse_period

# the on-disk contract cache stays out of the tests (tests/test_contract_cache.py sets its own)
os.environ.setdefault("SETTLE_CACHE_DIR", "off")

DEC6 = pa.decimal128(38, 6)
DEC8 = pa.decimal128(38, 8)
DEC4 = pa.decimal128(38, 4)

FOLDERS: dict[str, list[tuple[str, pa.DataType]]] = {
    "volumes": [
        ("contract_id", pa.string()),
        ("service_line_id", pa.string()),
        ("period", pa.date32()),
        ("units", DEC6),
        ("forecast_units", DEC6),
    ],
    "kpis": [
        ("contract_id", pa.string()),
        ("kpi_id", pa.string()),
        ("period", pa.date32()),
        ("value", DEC6),
        ("numerator", DEC6),
        ("denominator", DEC6),
    ],
    "exclusions": [
        ("contract_id", pa.string()),
        ("kpi_id", pa.string()),
        ("period", pa.date32()),
        ("reason", pa.string()),
        ("starts_at", pa.timestamp("us")),
        ("ends_at", pa.timestamp("us")),
    ],
    "index_values": [("index_id", pa.string()), ("period", pa.date32()), ("value", DEC6)],
    "vendor_invoices": [
        ("contract_id", pa.string()),
        ("period", pa.date32()),
        ("invoice_id", pa.string()),
        ("line_key", pa.string()),
        ("description", pa.string()),
        ("quantity", DEC6),
        ("rate", DEC8),
        ("amount", DEC4),
    ],
    "pass_through": [
        ("contract_id", pa.string()),
        ("period", pa.date32()),
        ("item_id", pa.string()),
        ("description", pa.string()),
        ("cost", DEC4),
        ("reference", pa.string()),
    ],
    "fx_rates": [("currency", pa.string()), ("period", pa.date32()), ("rate", DEC8)],
    "interactions": [
        ("contract_id", pa.string()),
        ("service_line_id", pa.string()),
        ("arrived_at", pa.timestamp("us")),
        ("answered_at", pa.timestamp("us")),
        ("abandoned_at", pa.timestamp("us")),
        ("handle_s", pa.int32()),
        ("first_contact_resolved", pa.bool_()),
        ("csat", pa.int8()),
    ],
}


def _convert(value: Any, dtype: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_decimal(dtype):
        return Decimal(str(value))
    if pa.types.is_date32(dtype):
        return parse_period(value) if isinstance(value, str) else value
    if pa.types.is_timestamp(dtype) and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


class Workspace:
    """A contracts folder, a data folder and a database file in a temporary directory."""

    def __init__(self, root: Path):
        self.root = root
        self.contracts_dir = root / "contracts_config"
        self.data_dir = root / "data"
        self.db = root / "settlement.duckdb"
        self.contracts_dir.mkdir()
        (self.data_dir / "volumes").mkdir(parents=True)

    # ---- inputs
    def contract(self, terms: str | dict, name: str | None = None) -> Path:
        text = textwrap.dedent(terms) if isinstance(terms, str) else yaml.safe_dump(terms)
        if name is None:
            name = str(yaml.safe_load(text)["contract_id"]).lower() + ".yaml"
        path = self.contracts_dir / name
        path.write_text(text)
        return path

    def write(self, folder: str, rows: list[tuple], name: str = "part.parquet") -> Path:
        """Rows as tuples in the folder's column order; trailing nullable columns may be omitted."""
        columns = FOLDERS[folder]
        data: dict[str, list] = {c: [] for c, _ in columns}
        for row in rows:
            padded = list(row) + [None] * (len(columns) - len(row))
            for (c, t), v in zip(columns, padded, strict=True):
                data[c].append(_convert(v, t))
        table = pa.table({c: pa.array(data[c], t) for c, t in columns})
        path = self.data_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return path

    def volumes(self, rows: list[tuple], name: str = "part.parquet") -> Path:
        return self.write("volumes", rows, name)

    def kpis(self, rows: list[tuple], name: str = "part.parquet") -> Path:
        return self.write("kpis", rows, name)

    def index_values(self, rows: list[tuple]) -> Path:
        return self.write("index_values", rows)

    def vendor_invoices(self, rows: list[tuple]) -> Path:
        return self.write("vendor_invoices", rows)

    def exclusions(self, rows: list[tuple]) -> Path:
        return self.write("exclusions", rows)

    def pass_through(self, rows: list[tuple]) -> Path:
        return self.write("pass_through", rows)

    def fx_rates(self, rows: list[tuple]) -> Path:
        return self.write("fx_rates", rows)

    def interactions(self, rows: list[tuple], name: str = "part.parquet") -> Path:
        return self.write("interactions", rows, name)

    # ---- running
    def settle(
        self,
        period: str,
        to: str | None = None,
        contracts: set[str] | None = None,
        as_known_at: str | None = None,
        dry_run: bool = False,
    ) -> engine.RunResult:
        request = engine.RunRequest(
            parse_period(period),
            parse_period(to or period),
            contracts,
            dt.date.fromisoformat(as_known_at) if as_known_at else None,
            dry_run,
        )
        return engine.settle(self.contracts_dir, self.data_dir, self.db, request)

    def close(self, period: str, contracts: set[str] | None = None):
        """Approve the month's current invoices, then close it (the month-end order)."""
        workflow.approve(self.db, parse_period(period), contract_ids=contracts, by="test")
        return engine.close(self.db, parse_period(period), contracts)

    # ---- reading
    def rows(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def one(self, sql: str, params: list | None = None) -> Any:
        result = self.rows(sql, params)
        assert len(result) == 1, f"expected one row, got {len(result)}: {result}"
        return next(iter(result[0].values()))

    def lines(self, period: str, contract: str | None = None) -> dict[str, Decimal]:
        """line_key -> amount of the current invoice of a month."""
        sql = "SELECT line_key, amount FROM current_invoice_lines WHERE period = ?"
        params: list[Any] = [parse_period(period)]
        if contract:
            sql += " AND contract_id = ?"
            params.append(contract)
        return {r["line_key"]: r["amount"] for r in self.rows(sql, params)}

    def db_bytes(self) -> bytes | None:
        return self.db.read_bytes() if self.db.exists() else None


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture(scope="module")
def macros():
    """An in-memory connection with sql/01_macros.sql, for the macros' own tests."""
    con = duckdb.connect()
    engine.run_script(con, engine.SQL_DIR / "01_macros.sql")
    yield con
    con.close()
