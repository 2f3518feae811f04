"""What several test files share: the spec's rounding worked out in exact rationals, the SQL
steps on an in-memory database, and the CLI refusing with the database left as it was.

The references here never call the product's code: a figure a test asserts is worked out from
the spec with `Fraction`, not recomputed by what is under test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import cli, engine
from pipelines.config import load_contract
from pipelines.inputs import COLUMNS, InputSet

# --------------------------------------------------------------------------- the spec's rounding

# a Decimal context wide enough for every stored figure (DECIMAL(38, s)) and its products: the
# default context keeps 28 significant digits and rounds past them
EXACT = decimal.Context(prec=100)


def round_int(x: Fraction, mode: str) -> int:
    """x rounded once to a whole number: half_up is half away from zero, half_even to even,
    down toward zero, ceiling toward +infinity. Worked in integers, at any size."""
    if mode == "ceiling":
        return -((-x.numerator) // x.denominator)
    whole, rest = divmod(abs(x.numerator), x.denominator)
    twice = 2 * rest
    if mode != "down" and (
        twice > x.denominator or (twice == x.denominator and (mode == "half_up" or whole % 2 == 1))
    ):
        whole += 1
    return -whole if x < 0 else whole


def round_at(x: Fraction | Decimal | int, scale: int, mode: str) -> Decimal:
    """x rounded once to `scale` places with a contract rounding mode (SPEC 1)."""
    units = round_int(Fraction(x) * 10**scale, mode)
    return Decimal(units).scaleb(-scale, EXACT)


def largest_remainder(total: Decimal, weights: list[Fraction], scale: int) -> list[Decimal]:
    """SPEC 4: each share cut toward zero to the scale, the missing units of the last place one
    each to the largest remainders, ties to the one listed first."""
    units = int(total.scaleb(scale, EXACT))
    whole = sum(weights)
    if whole == 0:
        return [Decimal(0).scaleb(-scale)] * len(weights)
    exact = [Fraction(units) * w / whole for w in weights]
    floors = [e.numerator // e.denominator for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[: units - sum(floors)]:
        floors[i] += 1
    return [Decimal(f).scaleb(-scale, EXACT) for f in floors]


def text(x: Fraction) -> str:
    """A Fraction with a finite decimal expansion, as YAML / Parquet text."""
    return str(EXACT.divide(Decimal(x.numerator), Decimal(x.denominator)))


# --------------------------------------------------------------------------- SQL steps in memory


def sql_steps(
    contract_texts: list[str],
    rows: dict[str, list[tuple]],
    through: str,
    period_to: dt.date,
) -> duckdb.DuckDBPyConnection:
    """Terms and inputs registered as the engine registers them, then sql/01..`through` on an
    in-memory database for every contract from 2024-01 to `period_to`: many contracts settled in
    one set-based pass, fast enough for property tests. `rows` maps an input folder to tuples in
    its column order (trailing nullable columns may be left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        loaded = []
        for i, body in enumerate(contract_texts):
            path = Path(tmp) / f"contract_{i}.yaml"
            path.write_text(body)
            loaded.append(load_contract(path))
    con = duckdb.connect()
    engine.ensure_schema(con)
    engine.run_script(con, engine.SQL_DIR / "01_macros.sql")
    engine.register_terms(con, loaded)
    frames = {}
    for folder, spec in COLUMNS.items():
        schema = {c: t for c, (t, _, _) in spec.items()}
        frame = pl.DataFrame(
            [list(r) + [None] * (len(schema) - len(r)) for r in rows.get(folder, [])],
            schema=list(schema),
            orient="row",
        )
        frames[folder] = frame.cast(schema).with_columns(
            pl.lit("test").alias("_file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row")
        )
    engine.register_inputs(con, InputSet(Path("."), frames))
    con.execute(
        "CREATE TEMP TABLE run_params AS SELECT DATE '2024-01-01' AS period_from, "
        "?::DATE AS period_to, far_future() AS as_known_at, 'settle' AS mode",
        [period_to],
    )
    con.execute("CREATE TEMP TABLE run_contracts AS SELECT contract_id FROM cfg_contracts")
    for path in engine.sql_files():
        if path.name[:2] <= through:
            engine.run_script(con, path)
    return con


# --------------------------------------------------------------------------- refusals


def db_bytes(db: Path) -> bytes | None:
    return db.read_bytes() if db.exists() else None


@contextlib.contextmanager
def database_unchanged(db: Path) -> Iterator[None]:
    """The block may fail; the database file is byte for byte what it was, with no WAL left."""
    before = db_bytes(db)
    yield
    assert db_bytes(db) == before
    assert not Path(f"{db}.wal").exists()


def entry_exits(monkeypatch, capfd, args: list[str], code: int = 1) -> tuple[str, str]:
    """`settle <args>` through the console script's entry point; asserts its exit code and
    returns (stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["settle", *args])
    with pytest.raises(SystemExit) as exited:
        cli.entry()
    assert exited.value.code == code
    return capfd.readouterr()


def copy_workspace(source, target) -> None:
    """`target` becomes a copy of the settled workspace `source`: contracts, inputs and database."""
    import shutil

    shutil.copytree(source.contracts_dir, target.contracts_dir, dirs_exist_ok=True)
    shutil.copytree(source.data_dir, target.data_dir, dirs_exist_ok=True)
    shutil.copy(source.db, target.db)


def edit_file(name: str, old: str, new: str):
    """A breakage: the first `old` of contract file `name` replaced by `new` (it must be there)."""

    def apply(ws) -> None:
        path = ws.contracts_dir / name
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))

    return apply
