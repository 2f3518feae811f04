"""minimum:<service line>: take-or-pay shortfall and the top-up to the minimum charge, as stored."""

from __future__ import annotations

from .indexation import factor_lines, indexation_effect_lines
from .readers import Month, Row
from .text import money, num


def explain_minimum(m: Month, charge: Row, indent: str) -> list[str]:
    sl = charge["service_line_id"]
    shortfall = charge.get("units") or 0
    rate_words = f"the first band's rate {num(charge.get('rate'), 2)}"
    if charge.get("indexed"):
        rate_words += (
            f" (base {num(charge.get('base_rate'), 2)} x factor {num(charge.get('index_factor'))})"
        )
    terms = f"{charge.get('amount_scale')} places, {charge.get('rounding_mode')}"
    out = []
    if shortfall:
        out.append(
            f"{indent}Take-or-pay: the month's {num(charge.get('line_units'))} units of {sl} are "
            f"below the minimum of {num(charge.get('minimum_units'))} units"
        )
        out.append(
            f"{indent}Shortfall: {num(shortfall)} units x {rate_words}, rounded once ({terms}) "
            f"= {money(charge.get('shortfall_amount'))}"
        )
    minimum_charge = charge.get("minimum_charge")
    top_up = charge.get("top_up_amount")
    if minimum_charge is not None:
        if top_up:
            out.append(
                f"{indent}Minimum charge {money(minimum_charge)}: usage "
                f"{money(charge.get('usage_amount'))} + shortfall "
                f"{money(charge.get('shortfall_amount'))} is below it; the top-up "
                f"{money(top_up)} is on this line"
            )
        else:
            out.append(
                f"{indent}Minimum charge {money(minimum_charge)}: usage "
                f"{money(charge.get('usage_amount'))} + shortfall "
                f"{money(charge.get('shortfall_amount'))} reaches it; no top-up"
            )
    if shortfall and top_up:
        out.append(
            f"{indent}Line: shortfall {money(charge.get('shortfall_amount'))} + top-up "
            f"{money(top_up)} = {money(charge['amount'])}"
        )
    out += factor_lines(m, charge, indent)
    return out + indexation_effect_lines(charge, indent)
