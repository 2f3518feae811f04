"""The index factor of a line: the review in force and the index values behind it, as stored."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, month, num, pct

CLAMP_WORDS = {"cap": " (clamped to the cap)", "floor": " (clamped to the floor)"}


def _review_in_force(m: Month) -> list[Row]:
    if not m.reviews:
        return []
    latest = max(r["period"] for r in m.reviews)
    return [r for r in m.reviews if r["period"] == latest]


def factor_lines(m: Month, charge: Row, indent: str) -> list[str]:
    """The index factor of a charge line and the index values behind it."""
    line_factor = charge.get("index_factor")
    if line_factor is None:
        return []
    in_force = _review_in_force(m)
    if not in_force:
        return [
            f"{indent}Index factor {num(line_factor)}: no indexation review applies to this month"
        ]
    head = in_force[0]
    if charge.get("indexed") is False:
        return [
            f"{indent}Index factor {num(line_factor)}: the line is not indexed (the review of "
            f"{month(head['period'])} set factor {num(head['factor'])} for the indexed lines)"
        ]
    method = head.get("method") or "chained"
    out = [
        f"{indent}Index factor {num(head['factor'])} ({method}; review {month(head['period'])}, "
        f"in force from that month):"
    ]
    for r in in_force:
        out.append(
            f"{indent}  {r['index_id']}: {month(r['reference_period'])} = "
            f"{num(r['reference_value'])} against {month(r['previous_reference_period'])} = "
            f"{num(r['previous_reference_value'])}: raw change {pct(r['raw_change'], True)}, "
            f"applied {pct(r['applied_change'], True)}"
            + CLAMP_WORDS.get(r.get("change_clamped_to"), "")
            + f", weight {num(r.get('weight'))}"
        )
    prev = head.get("previous_factor")
    unrounded = head.get("unrounded_factor")
    scale = head.get("factor_scale")
    mode = head.get("rounding_mode")
    if method == "base_relative":
        terms = " + ".join(
            f"{num(r.get('weight'))} x "
            f"{num(r['reference_value'])}/{num(r['previous_reference_value'])}"
            for r in in_force
        )
        weights = " - ".join(num(r.get("weight")) for r in in_force)
        text = (
            f"{indent}  factor = (1 - {weights}) + {terms} = {num(unrounded)} "
            f"(rounded to {scale} places, {mode})"
        )
        held = head.get("factor_held_at")
        if held:
            text += (
                f", held at the {held} from the previous factor {num(prev)}: {num(head['factor'])}"
            )
        else:
            text += f", within the cap and floor from the previous factor {num(prev)}"
        out.append(text)
    else:
        terms = " + ".join(f"{num(r.get('weight'))} x {num(r['applied_change'])}" for r in in_force)
        out.append(
            f"{indent}  factor = previous {num(prev)} x (1 + {terms}) = {num(unrounded)} "
            f"-> {num(head['factor'])} (rounded to {scale} places, {mode})"
        )
    earlier = sorted({r["period"] for r in m.reviews} - {head["period"]})
    if earlier:
        factors = {r["period"]: r["factor"] for r in m.reviews}
        out.append(
            f"{indent}  earlier reviews: "
            + ", ".join(f"{month(p)} factor {num(factors[p])}" for p in earlier)
        )
    return out


def indexation_effect_lines(charge: Row, indent: str) -> list[str]:
    """What indexation adds to a line: its amount against the same line at base-period prices."""
    effect = charge.get("indexation_effect")
    if not effect:
        return []
    return [
        f"{indent}Indexation effect: {money(charge['amount'])} against "
        f"{money(charge.get('base_amount'))} at base-period prices = {money(effect)}"
    ]
