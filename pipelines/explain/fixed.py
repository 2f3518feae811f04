"""fixed:<fee>: the monthly fee, indexed where the contract says so."""

from __future__ import annotations

from .indexation import factor_lines, indexation_effect_lines
from .readers import Month, Row
from .text import line_rounding, money, num


def explain_fixed_fee(m: Month, charge: Row, indent: str) -> list[str]:
    base = charge.get("base_rate")
    out = [f"{indent}Fixed fee: {money(base)} a month, billed every month of the term"]
    out += factor_lines(m, charge, indent)
    if charge.get("indexed") and charge.get("index_factor") != 1:
        out.append(
            f"{indent}Indexed: {money(base)} x {num(charge['index_factor'])} = "
            f"{num(charge['amount_unrounded'], 2)}"
        )
    out.append(f"{indent}Rounding: {line_rounding(charge)}")
    return out + indexation_effect_lines(charge, indent)
