"""Figures as text for the Dagster UI: Markdown tables, money without going through float."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import dagster as dg

from ..explain.text import num
from ..periods import fmt


def money(value: Decimal | None) -> str:
    """Thousands separators and at least two places; more only when the amount has them (the
    explain reader's text, never rounded)."""
    return "" if value is None else num(value, 2)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return fmt(value) if value.day == 1 else value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 60
) -> dg.MetadataValue:
    """A Markdown table of the first `limit` rows, saying how many were left out."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n{len(rows) - limit} more rows not shown.")
    if not rows:
        lines.append("\n(no rows)")
    return dg.MetadataValue.md("\n".join(lines))
