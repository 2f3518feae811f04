"""surge:<service line>: the units above the forecast threshold, at the surge rate."""

from __future__ import annotations

from .indexation import factor_lines, indexation_effect_lines
from .readers import Month, Row
from .text import line_rounding, num, pct


def explain_surge(m: Month, charge: Row, indent: str) -> list[str]:
    sl = charge["service_line_id"]
    units = charge["units"]
    out = [
        f"{indent}Rule: units above forecast x (1 + over_forecast_pct) are taken out of the bands "
        "and billed at the surge rate",
        f"{indent}Units: the month's {num(charge.get('line_units'))} units of {sl}; forecast "
        f"{num(charge.get('forecast_units'))} x (1 + {pct(charge.get('surge_over_forecast_pct'))})"
        f" = threshold {num(charge.get('surge_threshold'))}, so {num(units)} are surge units and "
        f"{num(charge.get('banded_units'))} stay in the bands",
    ]
    factor = charge.get("index_factor")
    out += factor_lines(m, charge, indent)
    if charge.get("indexed"):
        out.append(
            f"{indent}Surge rate: base {num(charge['base_rate'], 2)} x {num(factor)} -> "
            f"{num(charge['rate'], 2)} (rounded to {charge.get('rate_scale')} places)"
        )
    else:
        out.append(f"{indent}Surge rate: {num(charge['rate'], 2)}")
    out.append(
        f"{indent}Amount: {num(units)} x {num(charge['rate'], 2)} = "
        f"{num(charge['amount_unrounded'], 2)}"
    )
    out.append(f"{indent}Rounding: {line_rounding(charge)}")
    return out + indexation_effect_lines(charge, indent)
