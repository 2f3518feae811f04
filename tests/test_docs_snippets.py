"""docs/inputs.md's CSV-to-Parquet snippets, run as written, and `settle validate` on their output.

The CSV, the DuckDB SQL and the Polars code are read from the page (the fenced block after each
`<!-- snippet: NAME -->` marker), so the test breaks when the page drifts from what works.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "inputs.md"
SETTLE = Path(sys.executable).with_name("settle")


def snippet(name: str) -> str:
    text = PAGE.read_text()
    match = re.search(rf"<!-- snippet: {name} -->\n```\w*\n(.*?)```", text, re.S)
    assert match, f"docs/inputs.md has no snippet {name!r}"
    return match.group(1)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The samples' other folders plus the page's CSV; volumes/ comes from the snippet alone."""
    shutil.copytree(
        REPO / "data_samples",
        tmp_path / "data",
        ignore=shutil.ignore_patterns("*.py", "volumes"),
    )
    (tmp_path / "volumes_2025-12.csv").write_text(snippet("csv"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def validate(workdir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    return subprocess.run(
        [str(SETTLE), "validate", "--contracts", str(REPO / "contracts_config"), "--data", "data"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def written(workdir: Path) -> list[tuple]:
    path = workdir / "data" / "volumes" / "period=2025-12" / "volumes.parquet"
    # the folder name is not a column here: the file's own period column is checked
    source = f"read_parquet('{path}', hive_partitioning = false)"
    with duckdb.connect() as con:
        types = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        rows = con.execute(f"SELECT * FROM {source} ORDER BY service_line_id DESC").fetchall()
    assert {name: dtype for name, dtype, *_ in types} == {
        "contract_id": "VARCHAR",
        "service_line_id": "VARCHAR",
        "period": "DATE",
        "units": "DECIMAL(18,6)",
        "forecast_units": "DECIMAL(18,6)",
    }
    return [(r[1], r[3], r[4]) for r in rows]


# the CSV's figures, digit for digit; chat's empty forecast is null
EXPECTED = [
    ("voice", Decimal("41250.000000"), Decimal("39800.500000")),
    ("chat", Decimal("18020.000000"), None),
]


def test_duckdb_snippet_writes_decimal_parquet_that_validates(workdir):
    (workdir / "data" / "volumes" / "period=2025-12").mkdir(parents=True)
    duckdb.sql(snippet("duckdb"))
    assert written(workdir) == EXPECTED
    result = validate(workdir)
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr


def test_polars_snippet_writes_decimal_parquet_that_validates(workdir):
    exec(compile(snippet("polars"), "docs/inputs.md", "exec"), {})
    assert written(workdir) == EXPECTED
    result = validate(workdir)
    assert result.returncode == 0, result.stderr


def test_the_naive_conversion_is_refused_as_the_page_says(workdir):
    (workdir / "data" / "volumes").mkdir()
    duckdb.sql(
        "COPY (SELECT * FROM read_csv('volumes_2025-12.csv')) "
        "TO 'data/volumes/naive.parquet' (FORMAT parquet)"
    )
    result = validate(workdir)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message in PAGE.read_text()
    assert "forecast_units is a float" in message


# --------------------------------------------------------------------------- docs/contracts.md

CONTRACTS_PAGE = REPO / "docs" / "contracts.md"


@pytest.mark.parametrize("name", ["minimal", "full", "points"])
def test_the_example_contracts_load(name, tmp_path):
    from pipelines.config import load_contract

    text = CONTRACTS_PAGE.read_text()
    match = re.search(rf"<!-- contract: {name} -->\n```yaml\n(.*?)```", text, re.S)
    assert match, f"docs/contracts.md has no contract {name!r}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(match.group(1))
    contract = load_contract(path).terms
    assert contract.contract_id.startswith("EXAMPLE-")


def test_every_contract_key_has_an_entry():
    """Every key the contract model accepts, at any depth, is named in docs/contracts.md."""
    from pydantic import BaseModel

    from pipelines.config import Contract

    def keys(model: type[BaseModel], seen: set[type]) -> set[str]:
        out: set[str] = set()
        for name, field in model.model_fields.items():
            out.add(name)
            pending = [field.annotation]
            while pending:
                kind = pending.pop()
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    if kind not in seen:
                        seen.add(kind)
                        out |= keys(kind, seen)
                else:
                    pending.extend(getattr(kind, "__args__", ()))
        return out

    text = CONTRACTS_PAGE.read_text()
    undocumented = sorted(k for k in keys(Contract, set()) if f"`{k}`" not in text)
    assert not undocumented, f"keys without an entry in docs/contracts.md: {undocumented}"


@pytest.mark.parametrize(
    "bands",
    [
        # the third band repeats the second's up_to
        "[{up_to: 50000, rate: 2.40}, {up_to: 80000, rate: 2.10}, {up_to: 80000, rate: 2.00},"
        " {rate: 1.90}]",
        "[{rte: 2.40}]",  # a misspelt key
    ],
)
def test_the_error_messages_shown_are_the_loaders(bands, tmp_path):
    from pipelines.config import ConfigError, load_contract

    model = "per_unit" if "rte" in bands else "graduated"
    folder = tmp_path / "contracts_config"
    folder.mkdir()
    path = folder / "acme.yaml"
    path.write_text(
        "contract_id: EXAMPLE-01\ncurrency: GBP\nstart: 2025-01\nservice_lines:\n"
        f"  - id: voice\n    pricing:\n      - effective_from: 2025-01\n        model: {model}\n"
        f"        bands: {bands}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_contract(path, tmp_path)
    assert f"error: {error.value}\n" in CONTRACTS_PAGE.read_text()


# --------------------------------------------------------------------------- terms inputs


@pytest.mark.parametrize(
    "folder, csv, columns",
    [
        (
            "pass_through",
            "pass_through_2025-12.csv",
            {
                "contract_id": "VARCHAR",
                "period": "DATE",
                "item_id": "VARCHAR",
                "description": "VARCHAR",
                "cost": "DECIMAL(18,4)",
                "reference": "VARCHAR",
            },
        ),
        (
            "fx_rates",
            "fx_rates_2026-01.csv",
            {"currency": "VARCHAR", "period": "DATE", "rate": "DECIMAL(18,8)"},
        ),
    ],
)
def test_the_terms_input_snippets_write_parquet_that_validates(folder, csv, columns, tmp_path):
    """Each snippet's file, added to the samples' own folder, validates with the sample contracts
    (a late re-bill of ACME's telephony; an INR rate for a month no contract reads yet)."""
    shutil.copytree(REPO / "data_samples", tmp_path / "data", ignore=shutil.ignore_patterns("*.py"))
    (tmp_path / csv).write_text(snippet(f"{folder}_csv"))
    month = re.search(r"period=(\d{4}-\d{2})", snippet(f"{folder}_duckdb")).group(1)
    (tmp_path / "data" / folder / f"period={month}").mkdir(parents=True)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        duckdb.sql(snippet(f"{folder}_duckdb"))
    finally:
        os.chdir(cwd)
    path = tmp_path / "data" / folder / f"period={month}" / f"{folder}.parquet"
    with duckdb.connect() as con:
        types = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
        ).fetchall()
    assert {name: dtype for name, dtype, *_ in types} == columns
    result = validate(tmp_path)
    assert result.returncode == 0, result.stderr
