"""Settlement periods: calendar months written `YYYY-MM`, stored as the date of their first day."""

from __future__ import annotations

import datetime as dt
import re

from .errors import SettleError

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def parse_period(text: str) -> dt.date:
    match = _PERIOD.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def period_arg(text: str) -> dt.date:
    try:
        return parse_period(text)
    except ValueError as exc:
        raise SettleError(str(exc)) from None


def add_months(period: dt.date, months: int) -> dt.date:
    index = period.year * 12 + period.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    count = (last.year - first.year) * 12 + last.month - first.month
    return [add_months(first, i) for i in range(count + 1)]


def fmt(period: dt.date) -> str:
    return f"{period:%Y-%m}"
