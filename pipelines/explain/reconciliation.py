"""The provider's invoice against the line: the stored reconciliation row."""

from __future__ import annotations

from .readers import Month
from .text import money


def reconciliation_lines(m: Month, line_key: str, indent: str) -> list[str]:
    r = m.recon.get(line_key)
    if not r:
        return []
    if r["status"] == "not_billed":
        return [f"{indent}Provider's invoice: not billed (difference {money(r['difference'])})"]
    text = (
        f"{indent}Provider's invoice {r.get('invoice_id')}: billed {money(r['billed_amount'])}, "
        f"difference {money(r['difference'])}: {r['status']}"
    )
    if r.get("rate_variance") is not None:
        text += (
            f" (rate variance {money(r['rate_variance'])}, volume variance "
            f"{money(r['volume_variance'])}, other {money(r.get('other_variance'))})"
        )
    elif r["difference"]:
        text += f" (no quantity x rate split: {r.get('variance_basis') or 'amount only'})"
    return [text]
