"""adjustment:<line>:<YYYY-MM>: a restated closed month billed on this invoice."""

from __future__ import annotations

from ..periods import fmt
from .readers import Month, Row
from .text import money, num


def explain_adjustment(m: Month, line: Row, indent: str) -> list[str]:
    # adjustment:<original line key>:<YYYY-MM>
    _, rest = line["line_key"].split(":", 1)
    original, month_text = rest.rsplit(":", 1)
    found = [
        a for a in m.adjustments if a["line_key"] == original and fmt(a["period"]) == month_text
    ]
    if not found:
        return [f"{indent}(no stored adjustment row for {original} of {month_text})"]
    a = found[0]
    out = [
        f"{indent}Restates {original} of {month_text}, a closed month"
        + (f" (closed at run {a['closed_run_id']})" if a.get("closed_run_id") else "")
        + "; the closed invoice is not rewritten",
        f"{indent}Closed amount {money(a['closed_amount'])}; previously adjusted "
        f"{money(a['previously_adjusted'])}; restated {money(a['restated_amount'])}",
        f"{indent}Delta = restated - closed - previously adjusted = {money(a['restated_amount'])} "
        f"- {money(a['closed_amount'])} - {money(a['previously_adjusted'])} = {money(a['delta'])}",
        f"{indent}Reason: {a.get('reason')}",
        f"{indent}Restated line: {a.get('description')}",
    ]
    if original == "gain_share" and a.get("closed_run_id"):
        for g in m.closing_gain_share(a["closed_run_id"], a["period"]):
            out.append(
                f"{indent}As closed: savings {num(g.get('savings'), 2)} on "
                f"{g.get('baseline_reason')}, provider amount {money(g.get('provider_amount'))}"
            )
    return out
