"""bonus:<kpi>: the level the KPI reached and the share of the month's charges it earns."""

from __future__ import annotations

from .kpi import kpi_words
from .readers import Month, Row
from .text import money, num, pct


def explain_bonus(m: Month, line: Row, indent: str) -> list[str]:
    kpi_id = line["line_key"].split(":", 1)[1]
    failed = [k for k, r in m.kpis.items() if r.get("status") == "failed"]
    return [
        f"{indent}{kpi_words(m.kpis.get(kpi_id), kpi_id)}",
        f"{indent}Bonus level: at or better than {num(line.get('bonus_level'))}",
        f"{indent}No KPI failed this month"
        if not failed
        else f"{indent}Failed: {', '.join(failed)}",
        f"{indent}Charges before credits: {money(line.get('bonus_charges'))} (usage, fixed, "
        "minimum and surge lines)",
        f"{indent}Bonus: {pct(line.get('bonus_pct'))} of those charges, rounded once "
        f"({line.get('amount_scale')} places, {line.get('rounding_mode')}) = "
        f"{money(line['amount'])}",
    ]
