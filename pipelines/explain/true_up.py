"""true_up:<service line>: a commitment over a quarter or a year, settled in its last month."""

from __future__ import annotations

from .readers import Month, Row
from .text import money, month, num

OVER_WORDS = {
    "contract_year": "a contract year",
    "calendar_year": "a calendar year",
    "quarter": "a calendar quarter",
}


def explain_true_up(m: Month, line: Row, indent: str) -> list[str]:
    sl = line["line_key"].split(":", 1)[1]
    w = m.commitments.get(sl)
    if not w:
        return [f"{indent}(no stored commitment window of {sl} is settled on this month)"]
    # a window that met its commitment has no charge line: the month's terms are the same
    charge = m.charges.get(line["line_key"]) or {}
    scale = charge.get("amount_scale", m.amount_scale)
    terms = f"{scale} places, {charge.get('rounding_mode', m.rounding_mode)}"
    window = f"{month(w['window_start'])}..{month(w['window_end'])}"
    out = [
        f"{indent}Commitment over {OVER_WORDS.get(w['over'], w['over'])} (in force from "
        f"{month(w['commitment_from'])}): window {window}, settled in its last month in the term, "
        f"{month(w['billed_period'])}",
    ]
    m_in, n_in = w["months_in_term"], w["months_in_window"]
    if m_in == n_in:
        out.append(f"{indent}The window lies wholly in the term: {m_in} of {n_in} months")
    else:
        out.append(
            f"{indent}The term covers {month(w['term_start'])}..{month(w['term_end'])}, "
            f"{m_in} of the window's {n_in} months: the minimum is prorated by {m_in}/{n_in}, "
            "exactly (divided once, at the line)"
        )
    if w.get("minimum_units") is not None:
        prorated = w.get("minimum_units_prorated")
        out.append(
            f"{indent}Committed {num(w['minimum_units'])} units"
            + (f" x {m_in}/{n_in} = {num(prorated)}" if m_in != n_in else "")
            + f"; the window's actual units of {sl}: {num(w['window_units'])}"
        )
        rate = f"the first band's rate in force {num(w.get('first_rate'), 2)}"
        if w.get("first_rate") != w.get("first_base_rate"):
            rate += f" (base {num(w.get('first_base_rate'), 2)}, indexed)"
        if not w["amount"]:
            out.append(f"{indent}The units reach the commitment: no shortfall, no true-up")
        else:
            out.append(
                f"{indent}Shortfall {num(w['shortfall_units'])} units x {rate}, rounded once "
                f"({terms}) = {money(w['amount'])}"
            )
    else:
        minimum = w.get("minimum_charge_in_force")
        words = f"{money(minimum)}"
        if minimum != w.get("minimum_charge"):
            words += f" (agreed {money(w.get('minimum_charge'))}, indexed)"
        out.append(
            f"{indent}Committed charge {words}; the window's usage charges of {sl}: "
            f"{money(w['window_usage'])} ({num(w['window_units'])} units)"
        )
        proration = f" x {m_in}/{n_in}" if m_in != n_in else ""
        if not w["amount"]:
            out.append(
                f"{indent}The usage charges reach the committed charge{proration}: no true-up"
            )
        else:
            out.append(
                f"{indent}Shortfall: {money(minimum)}{proration} - {money(w['window_usage'])}, "
                f"rounded once ({terms}) = {money(w['amount'])}"
            )
    if not w["amount"]:
        return out
    out.append(
        f"{indent}The true-up counts in the month's charges before credits (the at-risk amount, "
        "the caps and the bonus read it)"
    )
    return out
