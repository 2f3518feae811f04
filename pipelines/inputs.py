"""Parquet inputs -> validated frames -> DuckDB.

Each folder of SPEC section 6 is read file by file (hive `period=YYYY-MM/` folders allowed), its
columns are cast to one canonical type per column (exact: a decimal that would lose digits, or a
float, is refused), and the whole folder is validated with a Pandera schema: types, nullability,
ranges and key uniqueness. Referential rules against the contracts follow (ids exist, months inside
the term). The first failing rule is reported with the file, the column, the first offending rows
and the rule, and nothing is computed or written.

`interactions/` is the exception: it can hold tens of millions of rows, so it is never loaded into
Python; `pipelines.interactions` validates and aggregates it in DuckDB.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandera.polars as pa
import polars as pl

from .errors import SettleError
from .periods import fmt

os.environ.setdefault("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA")

# Width 28, not 38: DuckDB gives CASE, greatest, least and coalesce over DECIMAL(38, a) and
# DECIMAL(38, b) the SMALLER scale (it keeps 38 - min scale integer digits), silently rounding the
# finer operand. Inputs and terms narrower than the computed values keep every digit.
DEC6 = pl.Decimal(28, 6)
DEC8 = pl.Decimal(28, 8)
DEC4 = pl.Decimal(28, 4)
TS = pl.Datetime("us")

# folder -> column -> (dtype, required column, nullable)
COLUMNS: dict[str, dict[str, tuple[pl.DataType, bool, bool]]] = {
    "volumes": {
        "contract_id": (pl.String, True, False),
        "service_line_id": (pl.String, True, False),
        "period": (pl.Date, True, False),
        "units": (DEC6, True, False),
        "forecast_units": (DEC6, False, True),
    },
    "kpis": {
        "contract_id": (pl.String, True, False),
        "kpi_id": (pl.String, True, False),
        "period": (pl.Date, True, False),
        "value": (DEC6, True, False),
        "numerator": (DEC6, False, True),
        "denominator": (DEC6, False, True),
    },
    "exclusions": {
        "contract_id": (pl.String, True, False),
        "kpi_id": (pl.String, False, True),
        "period": (pl.Date, True, False),
        "reason": (pl.String, True, False),
        "starts_at": (TS, False, True),
        "ends_at": (TS, False, True),
    },
    "index_values": {
        "index_id": (pl.String, True, False),
        "period": (pl.Date, True, False),
        "value": (DEC6, True, False),
    },
    "vendor_invoices": {
        "contract_id": (pl.String, True, False),
        "period": (pl.Date, True, False),
        "invoice_id": (pl.String, True, False),
        "line_key": (pl.String, True, False),
        "description": (pl.String, False, True),
        "quantity": (DEC6, False, True),
        "rate": (DEC8, False, True),
        "amount": (DEC4, True, False),
    },
    "pass_through": {
        "contract_id": (pl.String, True, False),
        "period": (pl.Date, True, False),
        "item_id": (pl.String, True, False),
        "description": (pl.String, False, True),
        "cost": (DEC4, True, False),
        "reference": (pl.String, False, True),
    },
    "fx_rates": {
        "currency": (pl.String, True, False),
        "period": (pl.Date, True, False),
        "rate": (DEC8, True, False),
    },
}

KEYS = {
    "volumes": ["contract_id", "service_line_id", "period"],
    "kpis": ["contract_id", "kpi_id", "period"],
    "index_values": ["index_id", "period"],
    "vendor_invoices": ["contract_id", "period", "line_key"],
    "pass_through": ["contract_id", "period", "item_id", "reference"],
    "fx_rates": ["currency", "period"],
}

_first_of_month = pa.Check(
    lambda data: data.lazyframe.select(pl.col(data.key).dt.day() == 1),
    name="period is the first day of its month",
)


def _schema(folder: str) -> pa.DataFrameSchema:
    columns: dict[str, pa.Column] = {}
    for name, (dtype, _, nullable) in COLUMNS[folder].items():
        checks = []
        if name == "period":
            checks.append(_first_of_month)
        if name in {"units", "forecast_units", "numerator", "denominator", "quantity"}:
            checks.append(pa.Check.ge(0))
        if (name == "value" and folder == "index_values") or (
            name == "rate" and folder == "fx_rates"
        ):
            checks.append(pa.Check.gt(0))
        if name == "currency":
            checks.append(pa.Check.str_matches(r"^[A-Z]{3}$"))
        if name in {"contract_id", "service_line_id", "kpi_id", "index_id", "line_key"}:
            checks.append(pa.Check.str_length(min_value=1))
        columns[name] = pa.Column(dtype, checks=checks, nullable=nullable)
    checks = []
    if folder == "exclusions":
        checks.append(
            pa.Check(
                lambda data: data.lazyframe.select(
                    pl.col("starts_at").is_null()
                    | pl.col("ends_at").is_null()
                    | (pl.col("starts_at") < pl.col("ends_at"))
                ),
                name="starts_at is before ends_at",
            )
        )
    return pa.DataFrameSchema(columns, unique=KEYS.get(folder), checks=checks, strict=True)


@dataclass
class InputSet:
    """The validated inputs of one run, with the files they came from."""

    data_dir: Path
    frames: dict[str, pl.DataFrame]
    file_hashes: dict[str, str] = field(default_factory=dict)
    interaction_files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet")) if folder.is_dir() else []


def _hive_period(path: Path, root: Path) -> dt.date | None:
    for part in path.relative_to(root).parts[:-1]:
        match = re.fullmatch(r"period=(\d{4})-(\d{2})(?:-01)?", part)
        if match:
            return dt.date(int(match.group(1)), int(match.group(2)), 1)
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cast_column(series: pl.Series, target: pl.DataType, file: str) -> pl.Series:
    """Cast one column to its canonical type, refusing anything that is not exact."""
    source = series.dtype
    name = series.name
    if source == target:
        return series
    reason = None
    if isinstance(target, pl.Decimal):
        if source.is_float():
            reason = "is a float; amounts, units and KPI values must be decimal or integer"
        elif isinstance(source, pl.Decimal) and (source.scale or 0) > (target.scale or 0):
            reason = f"has {source.scale} decimal places; at most {target.scale} are kept exactly"
        elif not (isinstance(source, pl.Decimal) or source.is_integer() or source == pl.Null):
            reason = f"is {source}, expected a decimal"
    elif target == pl.Date:
        if source == pl.Datetime or isinstance(source, pl.Datetime):
            reason = "is a timestamp; a period is the date of the first day of its month"
        elif source != pl.Null:
            reason = f"is {source}, expected a date (the first day of the month)"
    elif target == pl.String:
        if source not in (pl.Categorical, pl.Enum, pl.Null) and not isinstance(
            source, pl.Categorical | pl.Enum
        ):
            reason = f"is {source}, expected text"
    elif isinstance(target, pl.Datetime) and not (
        isinstance(source, pl.Datetime) or source == pl.Null
    ):
        reason = f"is {source}, expected a timestamp"
    if reason:
        raise SettleError(f"{file}: column {name} {reason} (rule: column type).")
    return series.cast(target)


def _read_file(path: Path, root: Path, folder: str, data_dir: Path) -> pl.DataFrame:
    name = (
        str(path.relative_to(data_dir.parent))
        if path.is_relative_to(data_dir.parent)
        else str(path)
    )
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # a corrupt or non-Parquet file
        raise SettleError(f"{name}: not a readable Parquet file ({exc}).") from None
    spec = COLUMNS[folder]
    hive = _hive_period(path, root)
    if "period" not in frame.columns and hive is not None:
        frame = frame.with_columns(pl.lit(hive, dtype=pl.Date).alias("period"))
    unknown = [c for c in frame.columns if c not in spec]
    if unknown:
        raise SettleError(
            f"{name}: unknown column(s) {', '.join(unknown)}; {folder}/ takes "
            f"{', '.join(spec)} (rule: schema)."
        )
    missing = [c for c, (_, required, _) in spec.items() if required and c not in frame.columns]
    if missing:
        raise SettleError(f"{name}: missing column(s) {', '.join(missing)} (rule: schema).")
    columns = []
    for column, (dtype, _, _) in spec.items():
        if column in frame.columns:
            columns.append(_cast_column(frame[column], dtype, name))
        else:
            columns.append(pl.Series(column, [None] * frame.height, dtype=dtype))
    out = pl.DataFrame(columns)
    if hive is not None:
        bad = out.filter(pl.col("period") != hive)
        if bad.height:
            raise SettleError(
                f"{name}: rows with period {fmt(bad['period'][0])} inside folder "
                f"period={fmt(hive)} (rule: hive partition)."
            )
    return out.with_columns(
        pl.lit(name).alias("_file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row")
    )


def _show(column: str, value: object) -> str:
    # a period is shown as its month, unless the day is the problem
    if column == "period" and isinstance(value, dt.date) and value.day == 1:
        return fmt(value)
    return str(value)


def _describe_rows(
    frame: pl.DataFrame, indices: list[int], columns: list[str], with_file: bool = False
) -> str:
    rows = frame[indices]
    shown = []
    for row in rows.iter_rows(named=True):
        values = ", ".join(f"{c}={_show(c, row[c])}" for c in columns if c in row)
        where = f"{row['_file']} row" if with_file else "row"
        shown.append(f"{where} {row['_row']} ({values})")
    return "; ".join(shown)


_CHECK_WORDS = {
    "greater_than_or_equal_to": ">=",
    "greater_than": ">",
    "less_than_or_equal_to": "<=",
    "less_than": "<",
}


def _rule_text(check: str, column: str | None, folder: str) -> str:
    """Pandera's check name in the words of the input contract."""
    if check == "multiple_fields_uniqueness":
        return f"one row per {', '.join(KEYS[folder])}"
    if check == "not_nullable":
        return f"{column} must have a value"
    if check.startswith("str_length"):
        return f"{column} must not be empty"
    match = re.fullmatch(r"(\w+)\((.*)\)", check)
    if match and match.group(1) in _CHECK_WORDS:
        return f"{column} {_CHECK_WORDS[match.group(1)]} {match.group(2)}"
    return check


def _validate(folder: str, frame: pl.DataFrame) -> None:
    schema = _schema(folder)
    try:
        schema.validate(frame.drop("_file", "_row"), lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.filter(pl.col("index").is_not_null())
        if cases.height == 0:
            raise SettleError(f"{folder}/: {exc}") from None
        first = cases.row(0, named=True)
        same = cases.filter(
            (pl.col("check") == first["check"])
            & (pl.col("column").fill_null("") == (first["column"] or ""))
        )
        indices = sorted(set(same["index"].to_list()))
        column = first["column"] or ", ".join(KEYS.get(folder, []))
        rule = _rule_text(first["check"], first["column"], folder)
        shown = KEYS.get(folder, []) + ([first["column"]] if first["column"] else [])
        shown = list(dict.fromkeys(shown or list(COLUMNS[folder])))
        files = sorted(set(frame[indices]["_file"].to_list()))
        rows = _describe_rows(frame, indices[:3], shown, with_file=len(files) > 1)
        raise SettleError(
            f"{', '.join(files)}: column {column}: {len(indices)} row(s) break the rule "
            f"'{rule}'; first: {rows}."
        ) from None


def read_inputs(data_dir: Path) -> InputSet:
    if not data_dir.is_dir():
        raise SettleError(f"{data_dir}: data folder not found")
    if not _files(data_dir / "volumes"):
        raise SettleError(f"{data_dir / 'volumes'}: no Parquet files; volumes/ is required")
    frames: dict[str, pl.DataFrame] = {}
    hashes: dict[str, str] = {}
    for folder, spec in COLUMNS.items():
        root = data_dir / folder
        parts = []
        for path in _files(root):
            parts.append(_read_file(path, root, folder, data_dir))
            hashes[str(path.relative_to(data_dir))] = sha256_file(path)
        if parts:
            frame = pl.concat(parts, how="vertical")
        else:
            frame = pl.DataFrame(
                schema={
                    **{c: t for c, (t, _, _) in spec.items()},
                    "_file": pl.String,
                    "_row": pl.Int64,
                }
            )
        _validate(folder, frame)
        frames[folder] = frame
    interaction_files = _files(data_dir / "interactions")
    for path in interaction_files:
        hashes[str(path.relative_to(data_dir))] = sha256_file(path)
    return InputSet(
        data_dir=data_dir,
        frames=frames,
        file_hashes=hashes,
        interaction_files=[str(p) for p in interaction_files],
    )
