"""Calendar-month partitions, keyed `YYYY-MM` like the CLI's `--period`, ending at the last month
with data.

The end is read when the definitions load: the latest `period` in the data folder's volumes/
(SETTLE_DATA), the one input every billed month has. A month past it has nothing to bill and
fails the input checks, so it is not offered. New months appear after the code location is
reloaded (`dagster dev` reloads on restart; the UI has "Reload definitions"). A fixed monthly
definition rather than a dynamic one keeps the time-window semantics the schedule and the
single-run range backfill rely on.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import polars as pl

from ..errors import SettleError
from ..periods import add_months, fmt, parse_period

START_ENV = "SETTLE_PARTITIONS_START"
DEFAULT_START = "2024-01"
DATA_ENV = "SETTLE_DATA"
DEFAULT_DATA = "data_samples"

log = dg.get_dagster_logger("settle")


def volume_months(data_dir: Path) -> set[dt.date]:
    """The months volumes/ has rows for; empty when the folder is missing or unreadable (the
    input checks then say why, with the file and column)."""
    files = sorted((data_dir / "volumes").rglob("*.parquet"))
    if not files:
        return set()
    try:
        frame = (
            pl.scan_parquet(files, hive_partitioning=False)
            .select(pl.col("period").cast(pl.Date).unique())
            .collect()
        )
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the input checks' to report
        log.warning(f"{data_dir / 'volumes'}: months not read ({exc})")
        return set()
    return {d.replace(day=1) for d in frame["period"].drop_nulls()}


def last_data_month(data_dir: Path) -> dt.date | None:
    months = volume_months(data_dir)
    return max(months) if months else None


def monthly_partitions(data_dir: Path | None = None) -> dg.MonthlyPartitionsDefinition:
    """Months from SETTLE_PARTITIONS_START (default 2024-01) to the last month with volumes in
    `data_dir` (default SETTLE_DATA, else data_samples). Without volumes, to the last complete
    month, Dagster's default."""
    text = os.environ.get(START_ENV, DEFAULT_START)
    try:
        start = parse_period(text)
    except ValueError as exc:
        raise SettleError(f"{START_ENV}: {exc}") from None
    data = data_dir if data_dir is not None else Path(os.environ.get(DATA_ENV, DEFAULT_DATA))
    last = last_data_month(data)
    if last is None or last < start:
        return dg.MonthlyPartitionsDefinition(start_date=fmt(start), fmt="%Y-%m")
    # end_date is exclusive: the month after the last one with data
    return dg.MonthlyPartitionsDefinition(
        start_date=fmt(start), end_date=fmt(add_months(last, 1)), fmt="%Y-%m"
    )


MONTHS = monthly_partitions()

# A range backfill is one run and, in it, one engine call: the same as `settle run --to`.
ONE_RUN = dg.BackfillPolicy.single_run()


def months_of(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The first and last month of the partition, or partition range, being materialised."""
    keys = context.partition_key_range
    return parse_period(keys.start), parse_period(keys.end)
