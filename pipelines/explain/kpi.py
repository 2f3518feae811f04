"""A KPI's result and a credit's severity in words, from the stored rows."""

from __future__ import annotations

from .readers import Row
from .text import month, num


def kpi_words(k: Row | None, kpi_id: str) -> str:
    if not k:
        return f"KPI {kpi_id}: no stored result this month"
    direction = (k.get("direction") or "").replace("_", " ")
    actual = "no data" if k.get("value") is None else f"actual {num(k['value'])}"
    text = (
        f"KPI {kpi_id} ({direction}): {actual} vs target {num(k.get('target'))}"
        f" (target from {month(k.get('target_from'))}): {k.get('status')}"
    )
    if k.get("consecutive_failures") is not None:
        text += f"; consecutive failures {k['consecutive_failures']}"
    if k.get("excused"):
        text += f"; excused ({k.get('exclusion_reason')})"
    if k.get("critical"):
        text += f"; CRITICAL (worse than {num(k.get('critical_below'))})"
    if k.get("source"):
        text += f"; source {k['source']}"
        if k.get("numerator") is not None and k.get("denominator") is not None:
            text += f" ({num(k['numerator'])} / {num(k['denominator'])})"
    return text


def severity_words(c: Row) -> str:
    model = c.get("credit_model")
    sev = num(c.get("severity"))
    if model == "binary":
        return f"{sev} (binary)"
    if model == "linear":
        if c.get("value") is None:
            return f"{sev} (linear; no data counts as the worst case)"
        if c.get("direction") == "lower_is_better":
            formula = (
                f"({num(c['value'])} - {num(c['target'])}) / "
                f"({num(c.get('minimum'))} - {num(c['target'])})"
            )
        else:
            formula = (
                f"({num(c['target'])} - {num(c['value'])}) / "
                f"({num(c['target'])} - {num(c.get('minimum'))})"
            )
        return f"{sev} (linear: {formula}, clamped to [0, 1])"
    if model == "bands":
        return f"{sev} (bands: band {c.get('band')}, worse than {num(c.get('band_worse_than'))})"
    return sev
