"""Exact money policy for Settle.

Every amount, rate, share and factor is a `decimal.Decimal` in Python and a `DECIMAL(38, s)`
in DuckDB: never a float. Rounding happens once, at the invoice line, with the contract's
rounding mode, in SQL only (the macros in `sql/01_macros.sql`); the tests hold them to an exact
reference of their own (`tests/helpers.py`).
"""

from __future__ import annotations

from decimal import Decimal

ZERO = Decimal(0)
ONE = Decimal(1)

# Storage scales of the output tables (DECIMAL(38, s)); a contract's own scales must fit in them.
AMOUNT_SCALE = 4  # DECIMAL(38, 4): invoice and charge amounts
RATE_SCALE = 8  # DECIMAL(38, 8): unit rates, shares, percentages
FACTOR_SCALE = 10  # DECIMAL(38, 10): index factors and KPI values
QUANTITY_SCALE = 6  # DECIMAL(38, 6): units, index values, KPI inputs
CONFIG_SCALE = 6  # DECIMAL(38, 6): every number in a contract file (rates, shares, targets)

# The largest scales a contract may ask for (they must fit the storage scales above).
MAX_AMOUNT_SCALE = AMOUNT_SCALE
MAX_RATE_SCALE = RATE_SCALE
MAX_FACTOR_SCALE = FACTOR_SCALE


def D(value: object) -> Decimal:
    """The one constructor: from str, int or Decimal. Floats are refused, not converted."""
    if isinstance(value, float):
        raise TypeError(f"refusing float {value!r}: money must come from text or Decimal")
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))
