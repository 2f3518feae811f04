"""Numbers as text, exactly as stored: never rounded, never recomputed."""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal

from ..periods import fmt


def num(value: Decimal | int | None, min_dp: int = 0, sep: bool = True) -> str:
    """A decimal as text, exact: trailing zeros dropped down to `min_dp` places, never rounded."""
    if value is None:
        return "n/a"
    d = Decimal(value)
    if d == 0:
        d = Decimal(0)  # no "-0.00"
    return f"{d:,.{places(d, min_dp)}f}" if sep else f"{d:.{places(d, min_dp)}f}"


def places(d: Decimal, min_dp: int = 0) -> int:
    """The places `d` needs to print exactly, at least `min_dp`. Counted on the digits:
    `Decimal.normalize()` rounds to the context's 28 digits, and a stored DECIMAL(38, 22) such as
    a gain-share baseline cost of 1,234,567.1234567890123456789012 has 29."""
    _, digits, exponent = d.as_tuple()
    if not isinstance(exponent, int):
        return min_dp  # NaN or infinity: never stored, printed as Python prints them
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(-(exponent + zeros), min_dp, 0)


def money(value: Decimal | None) -> str:
    return num(value, 2)


def pct(value: Decimal | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    # moving the point is exact at any length; `* 100` would round to the context's 28 digits
    text = num(Decimal(value).scaleb(2, decimal.Context(prec=80))) + "%"
    return ("+" + text) if signed and value > 0 else text


def month(value: dt.date | None) -> str:
    return fmt(value) if value else "n/a"


def grid(headers: list[str], body: list[list[str]], indent: str) -> list[str]:
    """A plain-text table: the first column left-aligned, numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in body)]


def rounding_text(
    unrounded: Decimal | None, rounded: Decimal, mode: str | None, scale: int | None
) -> str:
    """'unrounded -> rounded (scale, mode)': the one rounding of a line, with its stored terms."""
    if unrounded is None:
        return f"{money(rounded)} (no unrounded amount stored)"
    if unrounded == rounded:
        return f"{num(unrounded, 2)} is exact: no rounding needed"
    terms = f"{scale} places, {mode}" if mode and scale is not None else "terms not stored"
    return f"{num(unrounded, 2)} -> {money(rounded)} ({terms}, the contract's rounding)"


def line_rounding(row: dict) -> str:
    """The one rounding of a charge line, with the rounding terms stored on it."""
    return rounding_text(
        row.get("amount_unrounded"),
        row["amount"],
        row.get("rounding_mode"),
        row.get("amount_scale"),
    )
