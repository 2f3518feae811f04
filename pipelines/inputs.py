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
import importlib.abc
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as arrow
import pyarrow.parquet as pq

from .errors import SettleError
from .periods import fmt


class _HidePandas(importlib.abc.MetaPathFinder):
    """Reports pandas (and pyspark.pandas) as not installed, while pandera is imported."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas" or name.startswith("pyspark.pandas"):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


def _import_pandera_polars():
    """pandera.polars without pandas. Pandera's top-level package imports pandas, and with it
    pyspark.pandas whenever pyspark is installed, for its pandas API: 1.6 s of CPU in every
    `settle` process, of the 2.4 s all imports take, for an API the Polars schemas never use.
    While pandera is imported, pandas is reported missing, so that pandera takes its documented
    Polars-only path (the one of an install without pandas); afterwards pandas imports as usual.
    If pandas is loaded already, pandera is imported as it is."""
    if "pandera.polars" in sys.modules or "pandas" in sys.modules:
        import pandera.polars

        return pandera.polars
    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        import pandera.polars
    finally:
        sys.meta_path.remove(hide)
    return pandera.polars


pa = _import_pandera_polars()

os.environ.setdefault("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA")

# Width 28, not 38: DuckDB gives CASE, greatest, least and coalesce over DECIMAL(38, a) and
# DECIMAL(38, b) the SMALLER scale (it keeps 38 - min scale integer digits), silently rounding the
# finer operand. Inputs and terms narrower than the computed values keep every digit.
DEC6 = pl.Decimal(28, 6)
DEC8 = pl.Decimal(28, 8)
DEC4 = pl.Decimal(28, 4)
TS = pl.Datetime("us")


def _wide(dtype: pl.DataType) -> pl.DataType:
    """Validation reads decimals at width 38 (any value a Parquet decimal128 holds at the column's
    scale), so that an out-of-range value is reported by its range rule, with its rows, before
    the column is narrowed to width 28 (safe: every declared range fits it)."""
    return pl.Decimal(38, dtype.scale) if isinstance(dtype, pl.Decimal) else dtype


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

# Declared ranges of the numeric columns (inclusive; index values must be above 0). They keep every
# product the settlement SQL forms inside DECIMAL(38): units x rates x index factors, numerators
# against targets x denominators, amounts summed over a portfolio. A KPI value is further bounded
# by its KPI's kind (sql/input_rules.sql, kpis_value_in_kind_range).
UNITS_MAX = 10**10
RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "volumes": {"units": (0, UNITS_MAX), "forecast_units": (0, UNITS_MAX)},
    "kpis": {
        "value": (-UNITS_MAX, UNITS_MAX),
        "numerator": (0, UNITS_MAX),
        "denominator": (0, UNITS_MAX),
    },
    "index_values": {"value": (0, 10**6)},
    "vendor_invoices": {
        "quantity": (0, UNITS_MAX),
        "rate": (-(10**6), 10**6),
        "amount": (-(10**13), 10**13),
    },
    # a pass-through cost may be a credit from the supplier (negative)
    "pass_through": {"cost": (-(10**13), 10**13)},
    "fx_rates": {"rate": (0, 10**6)},
}
# columns whose lower bound is excluded (an index value or FX rate of 0 would divide by zero)
ABOVE_LOW = {("index_values", "value"), ("fx_rates", "rate")}

# KPI kind -> (smallest, largest, whole numbers only) input value
KPI_KINDS: dict[str, tuple[int, int, bool]] = {
    "share": (0, 1, False),
    "seconds": (0, 10**7, False),
    "count": (0, UNITS_MAX, True),
    "score": (-UNITS_MAX, UNITS_MAX, False),
}


def kpi_kinds_table(contracts: list) -> arrow.Table:
    """cfg_kpi_kinds: each KPI's kind and the range of its input values."""
    rows = [
        (c.contract_id, k.id, k.value_kind, *KPI_KINDS[k.value_kind])
        for c in contracts
        for k in (c.terms.service_credits.kpis if c.terms.service_credits else [])
    ]
    columns = zip(*rows, strict=True) if rows else [[]] * 6
    types = [arrow.string(), arrow.string(), arrow.string()]
    types += [arrow.decimal128(38, 0), arrow.decimal128(38, 0), arrow.bool_()]
    names = ["contract_id", "kpi_id", "kind", "low", "high", "whole"]
    return arrow.table(
        {n: arrow.array(list(v), t) for n, v, t in zip(names, columns, types, strict=True)}
    )


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
        if name in RANGES.get(folder, {}):
            low, high = RANGES[folder][name]
            above = (folder, name) in ABOVE_LOW
            checks += [pa.Check.gt(low) if above else pa.Check.ge(low), pa.Check.le(high)]
        if name == "currency":
            checks.append(pa.Check.str_matches(r"^[A-Z]{3}$"))
        if name in {"contract_id", "service_line_id", "kpi_id", "index_id", "line_key"}:
            checks.append(pa.Check.str_length(min_value=1))
        columns[name] = pa.Column(_wide(dtype), checks=checks, nullable=nullable)
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


_HIVE_PART = re.compile(r"period=(\d{4})-(\d{2})(?:-01)?")


def _files(folder: Path, data_dir: Path) -> list[Path]:
    """The folder's *.parquet files, each checked to be a regular file (a directory, FIFO, socket
    or dangling symlink named *.parquet is refused without ever being opened: a FIFO would block)
    in folders whose `period=` names are months."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*.parquet")):
        name = shown_name(path, data_dir)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise SettleError(
                f"{name}: not a readable Parquet file ({exc.strerror or exc}) "
                "(rule: readable Parquet)."
            ) from None
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise SettleError(
                f"{name}: not a readable Parquet file ({kind}) (rule: readable Parquet)."
            )
        _hive_period(path, folder, name)
        found.append(path)
    return found


def shown_name(path: Path, data_dir: Path) -> str:
    """A file as errors name it: from the data folder's name on."""
    root = data_dir.parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _hive_period(path: Path, root: Path, name: str = "") -> dt.date | None:
    """The month of the file's `period=YYYY-MM/` folder, if any; a `period=` folder that is not a
    month (`period=2025-13`, `period=July`) is refused."""
    found = None
    for part in path.relative_to(root).parts[:-1]:
        if not part.startswith("period="):
            continue
        match = _HIVE_PART.fullmatch(part)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise SettleError(
                f"{name or path}: folder {part} is not a month; a partition folder is named "
                "period=YYYY-MM (rule: hive partition)."
            )
        found = dt.date(int(match.group(1)), int(match.group(2)), 1)
    return found


def check_parquet_footer(path: Path, name: str) -> None:
    """Read only the footer: a truncated, empty or non-Parquet file is refused by name before
    DuckDB scans it."""
    try:
        pq.read_metadata(path)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the footer means unreadable
        raise SettleError(
            f"{name}: not a readable Parquet file ({_first_line(exc)}) (rule: readable Parquet)."
        ) from None


def unreadable_file(con: duckdb.DuckDBPyConnection, files: list[str], show) -> str | None:
    """After a scan over many files failed: the error naming the first file whose every column
    cannot be decoded (a footer can be intact over corrupt pages), or None if each file reads."""
    for file in files:
        literal = "'" + file.replace("'", "''") + "'"
        try:
            con.execute(f"SELECT max(hash(COLUMNS(*))) FROM read_parquet({literal})").fetchall()
        except duckdb.Error as exc:
            return (
                f"{show(file)}: not a readable Parquet file ({_first_line(exc)}) "
                "(rule: readable Parquet)."
            )
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


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
    elif isinstance(target, pl.Datetime):
        if isinstance(source, pl.Datetime) and source.time_zone is not None:
            # converting would shift every window by the offset; the local time is the rule
            reason = (
                f"is a timestamp with a time zone ({source.time_zone}); give the contact "
                "centre's local time without one (the local month decides the period)"
            )
        elif not (isinstance(source, pl.Datetime) or source == pl.Null):
            reason = f"is {source}, expected a timestamp"
    if reason:
        raise SettleError(f"{file}: column {name} {reason} (rule: column type).")
    cast = series.cast(target, strict=False)
    if isinstance(target, pl.Decimal):
        # a value with more digits than DECIMAL(38) holds at the column's scale: out of range
        lost = (cast.is_null() & series.is_not_null()).arg_true().to_list()
        if lost:
            shown = "; ".join(f"row {i} ({name}={series[i]})" for i in lost[:3])
            raise SettleError(
                f"{file}: column {name}: {len(lost)} row(s) break the rule '{name} must fit "
                f"DECIMAL(38, {target.scale}) and its declared range'; first: {shown}."
            )
    return cast


def _read_file(path: Path, root: Path, folder: str, data_dir: Path) -> pl.DataFrame:
    name = shown_name(path, data_dir)
    try:
        # Arrow's reader, not Polars': on corrupt pages Polars' Rust reader can panic (a
        # BaseException, with a Rust backtrace on stderr) where Arrow raises ArrowInvalid
        frame = pl.from_arrow(pq.ParquetFile(path).read())
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-Parquet file
        raise SettleError(
            f"{name}: not a readable Parquet file ({_first_line(exc)}) (rule: readable Parquet)."
        ) from None
    spec = COLUMNS[folder]
    hive = _hive_period(path, root, name)
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
            columns.append(_cast_column(frame[column], _wide(dtype), name))
        else:
            columns.append(pl.Series(column, [None] * frame.height, dtype=_wide(dtype)))
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
    if not _files(data_dir / "volumes", data_dir):
        raise SettleError(f"{data_dir / 'volumes'}: no Parquet files; volumes/ is required")
    frames: dict[str, pl.DataFrame] = {}
    hashes: dict[str, str] = {}
    for folder, spec in COLUMNS.items():
        root = data_dir / folder
        parts = []
        for path in _files(root, data_dir):
            parts.append(_read_file(path, root, folder, data_dir))
            hashes[str(path.relative_to(data_dir))] = sha256_file(path)
        if parts:
            frame = pl.concat(parts, how="vertical")
        else:
            frame = pl.DataFrame(
                schema={
                    **{c: _wide(t) for c, (t, _, _) in spec.items()},
                    "_file": pl.String,
                    "_row": pl.Int64,
                }
            )
        _validate(folder, frame)
        # narrowed only now: every value passed its declared range, which width 28 holds
        frames[folder] = frame.with_columns(
            pl.col(c).cast(t) for c, (t, _, _) in spec.items() if isinstance(t, pl.Decimal)
        )
    # interactions/ is hashed by pipelines.closed_months, which opens only the files it must; an
    # unreadable file is named when the scan fails (interactions.unreadable_file)
    interaction_files = _files(data_dir / "interactions", data_dir)
    return InputSet(
        data_dir=data_dir,
        frames=frames,
        file_hashes=hashes,
        interaction_files=[str(p) for p in interaction_files],
    )
