"""one_off:<id>: a one-off charge, or its instalments billed this month (largest remainder)."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, month, num


def explain_one_off(m: Month, line: Row, indent: str) -> list[str]:
    one_off_id = line["line_key"].split(":", 1)[1]
    parts = [i for i in m.one_offs if i["one_off_id"] == one_off_id]
    if not parts:
        return [f"{indent}(no stored instalment of {one_off_id} is billed on this month)"]
    head = parts[0]
    n = head["instalments"]
    scale = head.get("amount_scale")
    out = []
    if n == 1:
        out.append(f"{indent}One-off charge {money(head['one_off_amount'])}, billed once")
    else:
        remainder = head.get("remainder_units")
        out.append(
            f"{indent}One-off charge {money(head['one_off_amount'])} in {n} monthly instalments: "
            f"each {money(head.get('base_instalment'))} (the amount / {n} cut to {scale} "
            f"places), and the {num(remainder)} unit(s) of the last place left over go one each "
            "to the earliest instalments, so the instalments add up to the amount exactly"
        )
    for i in parts:
        words = f"{indent}Instalment {i['instalment']} of {n}"
        if i["due_period"] != i["period"]:
            words += f" (due {month(i['due_period'])}, after the term: billed in its last month)"
        if n > 1:
            words += (
                ": one extra unit of the last place" if i.get("extra_unit") else ": no extra unit"
            )
        out.append(f"{words} -> {money(i['instalment_amount'])}")
    if len(parts) > 1:
        out.append(
            f"{indent}This month: "
            + " + ".join(money(i["instalment_amount"]) for i in parts)
            + (f" = {money(line['amount'])}" if not head.get("indexed") else "")
        )
    if head.get("indexed"):
        out.append(
            f"{indent}Indexed: each instalment x the month's factor {num(head['index_factor'])}, "
            f"rounded once ({scale} places, {head.get('rounding_mode')}) = {money(line['amount'])}"
        )
    out.append(
        f"{indent}"
        + (
            "In the charges before credits (in_charges)"
            if head.get("in_charges")
            else "Billed after credits: not in the charges before credits"
        )
    )
    return out
