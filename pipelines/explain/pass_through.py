"""pass_through:<item>: a month's costs passed on at cost plus the contract's margin."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, num, pct


def explain_pass_through(m: Month, line: Row, indent: str) -> list[str]:
    item = line["line_key"].split(":", 1)[1]
    p = m.pass_through.get(item)
    if not p:
        return [f"{indent}(no stored pass-through cost of {item} for this month)"]
    out = [
        f"{indent}Cost: {money(p['cost'])}, the month's {num(p['cost_rows'])} pass_through/ "
        f"row(s) of {item}",
        f"{indent}Margin {pct(p['margin_pct'])}: cost x {num(line.get('rate'))}, rounded once "
        f"({m.amount_scale} places, {m.rounding_mode}) = {money(p['amount'])}",
    ]
    if p.get("in_charges"):
        out.append(
            f"{indent}In the charges before credits (in_charges): the at-risk amount, the caps "
            "and the bonus read it"
        )
    else:
        out.append(
            f"{indent}Billed after credits: not in the charges before credits, so not in the "
            "at-risk amount"
        )
    return out
