"""gain_share: the windows billed on this month, from the stored gain-share rows."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, month, num, pct, rounding_text

GAIN_SHARE_BASELINE = {
    "unit_cost": "each month's baseline per unit x its units, x its index factor when the "
    "baseline is indexed",
    "total_cost": "each month's baseline, x its index factor when the baseline is indexed",
    "volume": "each month's baseline units x the value per unit",
}
GAIN_SHARE_ACTUAL = {
    "unit_cost": "the scope's charges before credits",
    "total_cost": "the scope's charges before credits",
    "volume": "units x the value per unit",
}


def _gain_share_rows(g: Row, indent: str, m: Month) -> list[str]:
    measure = g.get("measure")
    window = f"{month(g['window_start'])}..{month(g['window_end'])}"
    out = [
        f"{indent}Window {window} ({g.get('months')} month(s), settled every "
        f"{g.get('settle_every')}), billed on {month(g.get('billed_period'))}; measure {measure}",
        f"{indent}Volume {num(g.get('volume'))}; baseline cost {num(g.get('baseline_cost'), 2)} "
        f"({GAIN_SHARE_BASELINE.get(measure, measure)}); actual cost "
        f"{num(g.get('actual_cost'), 2)} ({GAIN_SHARE_ACTUAL.get(measure, measure)})",
        f"{indent}Savings = baseline cost - actual cost = {num(g.get('savings'), 2)}"
        + (" (an overrun)" if g.get("kind") == "pain" else ""),
        f"{indent}Baseline: {g.get('baseline_reason')}",
    ]
    if g.get("threshold_pct") is not None:
        out.append(
            f"{indent}Threshold: {pct(g['threshold_pct'])} of the baseline cost = "
            f"{num(g.get('threshold_amount'), 2)}; "
            + (
                "|savings| is below it: nothing is shared"
                if g.get("below_threshold")
                else "|savings| reaches it"
            )
        )
    if g.get("tiers_applied"):
        kind = "pain tiers (an overrun)" if g.get("kind") == "pain" else "tiers"
        out.append(
            f"{indent}Shared by {kind}: {g['tiers_applied']} = {num(g.get('tiered_amount'), 2)}"
        )
    if g.get("kind") == "pain":
        out.append(
            f"{indent}Pain share: "
            + (
                "yes, the overrun share is credited to the client"
                if g.get("pain_share")
                else "no: an overrun is not shared"
            )
        )
    if g.get("cap") is not None:
        out.append(
            f"{indent}Cap {money(g['cap'])}: " + ("capped" if g.get("capped") else "not reached")
        )
    if g.get("gate_failures"):
        out.append(
            f"{indent}Gates failed: {g['gate_failures']}: "
            + ("the gain is withheld" if g.get("gated") else "a gate withholds a gain only")
        )
    out.append(f"{indent}Outcome: {g.get('outcome')}")
    rounded = rounding_text(
        g.get("provider_amount_unrounded"), g["provider_amount"], m.rounding_mode, m.amount_scale
    )
    out.append(f"{indent}Rounding: {rounded}")
    return out


def explain_gain_share(m: Month, line: Row, indent: str) -> list[str]:
    if not m.gain_share:
        return [f"{indent}(no stored gain-share window is billed on this month)"]
    out = []
    for g in m.gain_share:
        out += _gain_share_rows(g, indent, m)
    return out
