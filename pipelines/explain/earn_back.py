"""earn_back:<kpi>: the service credits the line returns, named by the line itself."""

from __future__ import annotations

from .kpi import kpi_words
from .readers import Month, Row
from .text import money, month


def explain_earn_back(m: Month, line: Row, indent: str) -> list[str]:
    kpi_id = line["line_key"].split(":", 1)[1]
    credits = m.credits_of(kpi_id, list(line.get("earned_back_of") or []))
    out = [f"{indent}{kpi_words(m.kpis.get(kpi_id), kpi_id)}"]
    if not credits:
        return out + [f"{indent}(the credit returned is not among the stored credit rows)"]
    for c in credits:
        out.append(
            f"{indent}Credit of {month(c['period'])}: {money(c['amount'])} "
            f"(earn-back after {c.get('earn_back_months')} assessed months)"
        )
        history = m.kpi_history(kpi_id, c["period"], m.period)
        if history:
            out.append(
                f"{indent}  since then: "
                + ", ".join(f"{month(h['period'])} {h['status']}" for h in history)
            )
    if len(credits) > 1:
        out.append(
            f"{indent}Earn-back: "
            + " + ".join(money(c["amount"]) for c in credits)
            + f" = {money(line['amount'])}, returned in full"
        )
    else:
        out.append(
            f"{indent}Earn-back: the credit of {month(credits[0]['period'])}, "
            f"{money(credits[0]['amount'])}, is returned in full"
        )
    return out
