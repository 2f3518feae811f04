"""Settlement periods: calendar months written `YYYY-MM`, stored as the date of their first day.

Months and dates from the user are parsed strictly: ASCII digits only, exactly `YYYY-MM` or
`YYYY-MM-DD`, nothing around them. Python's own parsers are looser (`\\d` matches full-width
digits, `date.fromisoformat` accepts week dates such as `2025W281`), and a loose parse here
settles a month the user did not mean.
"""

from __future__ import annotations

import datetime as dt
import re

from .errors import SettleError

_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)


def parse_period(text: str) -> dt.date:
    match = _PERIOD.fullmatch(text) if isinstance(text, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def parse_date(text: str) -> dt.date:
    match = _DATE.fullmatch(text) if isinstance(text, str) else None
    try:
        if not match:
            raise ValueError
        return dt.date(*(int(g) for g in match.groups()))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


# Months a user may name: the engine steps a year or more either side of a month (gain-share
# windows, runs of KPI failures, the next open month), which must stay inside Python's years 1-9999.
FIRST_MONTH = dt.date(1900, 1, 1)
LAST_MONTH = dt.date(9998, 12, 1)


def period_arg(text: str, option: str = "--period") -> dt.date:
    try:
        month = parse_period(text)
    except ValueError as exc:
        raise SettleError(f"{option} {exc}") from None
    if not FIRST_MONTH <= month <= LAST_MONTH:
        raise SettleError(f"{option} {text!r} is outside {fmt(FIRST_MONTH)}..{fmt(LAST_MONTH)}")
    return month


def date_arg(text: str, option: str) -> dt.date:
    try:
        day = parse_date(text)
    except ValueError as exc:
        raise SettleError(f"{option} {exc}") from None
    if day < FIRST_MONTH:
        raise SettleError(f"{option} {text!r} is before {FIRST_MONTH}")
    return day


def add_months(period: dt.date, months: int) -> dt.date:
    index = period.year * 12 + period.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    count = (last.year - first.year) * 12 + last.month - first.month
    return [add_months(first, i) for i in range(count + 1)]


def fmt(period: dt.date) -> str:
    # not strftime: glibc's %Y drops the leading zeros of a year before 1000
    return f"{period.year:04d}-{period.month:02d}"
