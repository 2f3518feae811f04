"""fx_share: currency risk-sharing for offshore delivery, from the stored FX row of the month."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, month, num, pct


def explain_fx_share(m: Month, line: Row, indent: str) -> list[str]:
    if not m.fx:
        return [f"{indent}(no stored FX risk-sharing row for this month)"]
    f = m.fx[0]
    cur = f["delivery_currency"]
    shared = f["shared_movement"]
    direction = (
        "to the provider (the delivery currency strengthened)"
        if f["amount"] > 0
        else "to the client (the delivery currency weakened)"
    )
    out = [
        f"{indent}Rate: {cur} {num(f['rate'])} of {month(f['rate_period'])} (the month less the "
        f"lag of {f['lag_months']} month(s)) against the base rate {num(f['base_rate'])}",
        f"{indent}Movement: {pct(f['movement'], True)}; band ±{pct(f['band_pct'])}: shared "
        f"movement (beyond the band) {pct(shared, True)}",
    ]
    if not f["amount"]:
        why = "inside the band: nothing is shared" if not shared else "the share rounds to 0.00"
        return out + [f"{indent}No fx_share line: {why}"]
    return out + [
        f"{indent}Charges it applies to (usage, minimum, surge and true-up of the offshore "
        f"lines): {money(f['charges_base'])}",
        f"{indent}fx_share = charges x shared movement x client share {pct(f['client_share'])}, "
        f"from the exact rate difference, rounded once ({m.amount_scale} places, "
        f"{m.rounding_mode}) = {money(f['amount'])}, {direction}",
        f"{indent}Billed after credits: not in the charges before credits",
    ]
