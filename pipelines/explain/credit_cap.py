"""credit_cap_refund: a contract year's credits above the annual cap, returned in its last month."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, month, num, pct


def explain_credit_cap_refund(m: Month, line: Row, indent: str) -> list[str]:
    if not m.annual_caps:
        return [f"{indent}(no stored annual credit cap is settled on this month)"]
    y = m.annual_caps[0]
    out = [
        f"{indent}Contract year {month(y['year_start'])}..{month(y['year_end'])}"
        + (
            f", {month(y['term_start'])}..{month(y['term_end'])} in the term"
            if (y["term_start"], y["term_end"]) != (y["year_start"], y["year_end"])
            else ""
        )
        + f": settled in its last month in the term, {month(y['billed_period'])}",
        f"{indent}Charges before credits over the year: {money(y['year_charges'])}; credits net of "
        f"earn-back: {money(y['year_credits'])}",
    ]
    pct_cap, amount_cap = y.get("annual_cap_pct"), y.get("annual_cap_amount")
    if pct_cap is not None and amount_cap is not None:
        basis = (
            f"the lower of {money(amount_cap)} and {pct(pct_cap)} of the year's charges "
            f"{money(y['year_charges'])}"
        )
    elif pct_cap is not None:
        basis = f"{pct(pct_cap)} of the year's charges {money(y['year_charges'])}"
    else:
        basis = f"the annual cap amount {money(amount_cap)}"
    out.append(f"{indent}Annual cap: {basis} = {num(y['cap_amount'], 2)}")
    if not y.get("capped"):
        out.append(
            f"{indent}The year's credits, {money(y['year_credits'])}, are within the cap: "
            "nothing is returned"
        )
        return out
    out.append(
        f"{indent}The year's credits, {money(y['year_credits'])}, exceed the cap in absolute "
        f"value: the excess is returned, rounded once ({m.amount_scale} places, "
        f"{m.rounding_mode}) = {money(y['amount'])}"
    )
    out.append(
        f"{indent}The monthly cap applied to each month first; this line is billed after credits"
    )
    return out
