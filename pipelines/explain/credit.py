"""credit:<kpi>: the service credit of a failed KPI, as the stored credit row gives it."""

from __future__ import annotations

from .kpi import kpi_words, severity_words
from .readers import Month, Row
from .text import money, month, num, pct, rounding_text


def explain_credit(m: Month, line: Row, indent: str) -> list[str]:
    kpi_id = line["line_key"].split(":", 1)[1]
    c = m.credits.get(kpi_id)
    out = [f"{indent}{kpi_words(m.kpis.get(kpi_id), kpi_id)}"]
    if not c:
        return out + [f"{indent}(no stored service-credit row for this KPI and month)"]
    charges = c.get("charges")
    mult = c.get("multiplier")
    if mult is not None and mult != 1:
        mult_words = (
            f"{num(mult)} (consecutive failure {c.get('consecutive_failures')}: the repeat "
            f"multiplier {num(c.get('repeat_multiplier'))})"
        )
    else:
        mult_words = f"{num(mult)} (first failure of a run)"
    if c.get("regime") == "points":
        out.append(
            f"{indent}Points: band {c.get('band')} (worse than {num(c.get('band_worse_than'))}) "
            f"scores {num(c.get('band_points'))} x multiplier {mult_words} = {num(c.get('points'))}"
        )
        out.append(
            f"{indent}Month: {num(c.get('points_total'))} points in all -> "
            f"{pct(c.get('points_pct'))} of charges {money(charges)} = "
            f"{num(c.get('month_uncapped_total'), 2)}, split over the failed KPIs by points: "
            f"this KPI's share {num(c.get('uncapped_amount'), 2)}"
        )
    else:
        out.append(
            f"{indent}At risk: {pct(c.get('at_risk_pct'))} of the month's charges "
            f"{money(charges)} = {num(c.get('at_risk_amount'), 2)}"
        )
        out.append(
            f"{indent}Allocation {pct(c.get('allocation_pct'))}; severity {severity_words(c)}; "
            f"multiplier {mult_words}"
        )
        out.append(
            f"{indent}Uncapped credit: {num(c.get('at_risk_amount'), 2)} x "
            f"{num(c.get('allocation_pct'))} x {num(c.get('severity'))} x {num(mult)} = "
            f"{num(c.get('uncapped_amount'), 2)}"
        )
    cap = c.get("cap_amount")
    if cap is None:
        out.append(f"{indent}Monthly cap: none")
    elif c.get("capped"):
        out.append(
            f"{indent}Monthly cap: {pct(c.get('monthly_cap_pct'))} of charges = {num(cap, 2)}; the "
            f"month's credits before the cap, {num(c.get('month_uncapped_total'), 2)}, exceed it"
        )
    else:
        out.append(
            f"{indent}Monthly cap: {pct(c.get('monthly_cap_pct'))} of charges = {num(cap, 2)}; "
            f"the month's credits before the cap, {num(c.get('month_uncapped_total'), 2)}, "
            "are within it"
        )
    if c.get("split_total") is not None:
        out.append(
            f"{indent}Split: the total is rounded once to {money(c['split_total'])} and shared "
            f"by the largest-remainder method: this KPI's share cut to "
            f"{num(c.get('floor_units'))} units of the last place "
            f"({c.get('amount_scale')} places), "
            + (
                "plus one unit of the last place for a largest remainder"
                if c.get("extra_unit")
                else "no extra unit"
            )
            + f" -> {money(c['amount'])}"
        )
    else:
        out.append(
            f"{indent}Rounding: "
            + rounding_text(
                c.get("uncapped_amount"), c["amount"], c.get("rounding_mode"), c.get("amount_scale")
            )
        )
    out.append(f"{indent}Credit: {money(line['amount'])} (a credit to the client is negative)")
    if c.get("earn_back_months"):
        status = c.get("earn_back_status")
        where = {
            "earned_back": f"earned back in {month(c.get('earned_back_in'))}",
            "broken": f"broken by a failure in {month(c.get('earn_back_broken_in'))}",
        }.get(status, status or "pending")
        out.append(
            f"{indent}Earn-back: returned in full if the KPI meets target in each of the next "
            f"{c['earn_back_months']} assessed months; {where}"
        )
    return out
