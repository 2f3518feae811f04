"""Calendar-month partitions, keyed `YYYY-MM` like the CLI's `--period`."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from ..errors import SettleError
from ..periods import fmt, parse_period

START_ENV = "SETTLE_PARTITIONS_START"
DEFAULT_START = "2024-01"


def monthly_partitions() -> dg.MonthlyPartitionsDefinition:
    """Months from SETTLE_PARTITIONS_START (default 2024-01) to the last complete month."""
    text = os.environ.get(START_ENV, DEFAULT_START)
    try:
        start = parse_period(text)
    except ValueError as exc:
        raise SettleError(f"{START_ENV}: {exc}") from None
    return dg.MonthlyPartitionsDefinition(start_date=fmt(start), fmt="%Y-%m")


MONTHS = monthly_partitions()

# A range backfill is one run and, in it, one engine call: the same as `settle run --to`.
ONE_RUN = dg.BackfillPolicy.single_run()


def months_of(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The first and last month of the partition, or partition range, being materialised."""
    keys = context.partition_key_range
    return parse_period(keys.start), parse_period(keys.end)
