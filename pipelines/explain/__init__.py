"""`settle explain`: the derivation of each invoice line, in words and numbers, from the database.

Everything is read from the stored tables through the `current_*` views (and, for the indexation
chain and the closing figures of a restated month, the stored rows of the run named by those
views): an auditor holding only the DuckDB file gets the same text. The file is opened read-only.
Nothing is recomputed or inferred: every number printed is a stored column of the run that stands
for the month (or, where the text says so, their sum), and the arithmetic shown between them is the
rule that links them, so a reader can check it by hand. The rounding terms, clamp flags, minimum
split, package count, bonus level and the credits an earn-back returns are all stored by the
settlement SQL for this purpose.

One module per line type (usage, surge, minimum, fixed, credit, earn_back, bonus, gain_share,
adjustment; for the terms beyond the month true_up, credit_cap, pass_through, one_off, fx_share);
`readers` holds the database access and `Month`, `text` the number formatting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from ..errors import SettleError
from ..periods import fmt
from .adjustment import explain_adjustment
from .bonus import explain_bonus
from .credit import explain_credit
from .credit_cap import explain_credit_cap_refund
from .earn_back import explain_earn_back
from .fixed import explain_fixed_fee
from .fx_share import explain_fx_share
from .gain_share import explain_gain_share
from .minimum import explain_minimum
from .one_off import explain_one_off
from .pass_through import explain_pass_through
from .readers import Month, Row, connect_read_only, has_settled_figures, rows
from .reconciliation import reconciliation_lines
from .surge import explain_surge
from .text import money, num, pct
from .true_up import explain_true_up
from .usage import explain_usage

__all__ = ["connect_read_only", "explain", "has_settled_figures", "money", "num", "pct", "rows"]

Explainer = Callable[[Month, Row, str], list[str]]

# charge lines are explained from their stored charge row, the others from the invoice line
CHARGE_EXPLAINERS: dict[str, Explainer] = {
    "usage": explain_usage,
    "surge": explain_surge,
    "minimum": explain_minimum,
    "fixed_fee": explain_fixed_fee,
}
LINE_EXPLAINERS: dict[str, Explainer] = {
    "credit": explain_credit,
    "earn_back": explain_earn_back,
    "bonus": explain_bonus,
    "gain_share": explain_gain_share,
    "adjustment": explain_adjustment,
    # terms beyond the month (SPEC 10)
    "true_up": explain_true_up,
    "credit_cap_refund": explain_credit_cap_refund,
    "pass_through": explain_pass_through,
    "one_off": explain_one_off,
    "fx_share": explain_fx_share,
}


def explain_line(m: Month, line: Row) -> list[str]:
    indent = "    "
    out = [
        f"  {line['line_key']}: {line['description']}",
        f"{indent}Amount: {money(line['amount'])} {line['currency']} ({line['line_type']})",
    ]
    charge = m.charges.get(line["line_key"])
    if line["line_type"] in CHARGE_EXPLAINERS and charge:
        out += CHARGE_EXPLAINERS[line["line_type"]](m, charge, indent)
    elif line["line_type"] in LINE_EXPLAINERS:
        out += LINE_EXPLAINERS[line["line_type"]](m, line, indent)
    else:
        out.append(f"{indent}(no stored derivation for this line type)")
    return out + reconciliation_lines(m, line["line_key"], indent)


def _header(m: Month) -> list[str]:
    run = m.run
    known = f", as known at {run['as_known_at']}" if run.get("as_known_at") else ""
    s = m.summary
    return [
        f"{m.contract_id} {fmt(m.period)} ({m.currency})",
        f"Figures of run {m.run_id} ({run.get('mode')} {run.get('periods')}{known}; code "
        f"{run.get('code_version')}); the month is {m.status}.",
        f"Invoice: {s['lines']} line(s), amount due {money(s['amount_due'])} {m.currency} (the sum "
        "of the rounded lines).",
    ]


def _unbilled_terms(m: Month) -> list[Row]:
    """The terms beyond the month settled on this month with a zero amount, so with no line: a
    commitment window that was met, an FX movement inside the band, a contract year whose credits
    stayed within the annual cap. Explained all the same, from their stored rows."""
    billed = {line["line_key"] for line in m.lines}

    def row(key: str, line_type: str, description: str) -> Row:
        return {
            "line_key": key,
            "line_type": line_type,
            "description": description,
            "amount": 0,
            "currency": m.currency,
        }

    out = [
        row(f"true_up:{sl}", "true_up", f"{w.get('description') or sl} commitment")
        for sl, w in m.commitments.items()
        if not w["amount"] and f"true_up:{sl}" not in billed
    ]
    if any(not f["amount"] for f in m.fx) and "fx_share" not in billed:
        out.append(row("fx_share", "fx_share", "Currency risk-sharing"))
    if any(not y["capped"] for y in m.annual_caps) and "credit_cap_refund" not in billed:
        out.append(row("credit_cap_refund", "credit_cap_refund", "Annual credit cap"))
    return out


def explain(db_path: Path, contract_id: str, period: dt.date, line_key: str | None = None) -> str:
    """The derivation of one line, or of every line, of a contract's invoice for a month."""
    con = connect_read_only(db_path)
    try:
        if not has_settled_figures(con):
            raise SettleError(f"{db_path}: no settled figures yet; run `settle run` first")
        m = Month(con, contract_id, period)
        # gain-share windows billed on this month whose amount is zero have no invoice line
        # (gated, below the threshold, an overrun not shared): they are explained all the same
        unbilled = [
            {
                "line_key": "gain_share",
                "line_type": "gain_share",
                "description": g.get("description") or "Gain-share",
                "amount": g["provider_amount"],
                "currency": m.currency,
            }
            for g in m.gain_share
            if not any(line["line_key"] == "gain_share" for line in m.lines)
        ][:1] + _unbilled_terms(m)
        lines = m.lines
        if line_key is not None:
            lines = [line for line in m.lines + unbilled if line["line_key"] == line_key]
            if not lines:
                raise SettleError(
                    f"no line {line_key!r} on the {fmt(period)} invoice of {contract_id}; its "
                    "lines are: " + ", ".join(line["line_key"] for line in m.lines)
                )
        out = _header(m)
        for line in lines:
            out.append("")
            out += explain_line(m, line)
        if line_key is None and unbilled:
            out += ["", "Settled this month with no invoice line (the amount is zero):"]
            for i, line in enumerate(unbilled):
                out += ([""] if i else []) + explain_line(m, line)
        return "\n".join(out) + "\n"
    finally:
        con.close()
