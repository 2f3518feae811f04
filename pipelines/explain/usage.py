"""usage:<service line>[:band<n>]: units, the pricing model, the bands and the one rounding."""

from __future__ import annotations

from .indexation import factor_lines, indexation_effect_lines
from .readers import Month, Row
from .text import grid, line_rounding, money, month, num

MODEL_RULES = {
    "per_unit": "units x rate",
    "graduated": "marginal bands: each band prices the units inside it, and adds its flat fee "
    "once when any unit falls in it",
    "volume": "all units at the rate of the band the month's total falls in, plus that band's "
    "flat fee",
    "stairstep": "the flat fee of the band the month's total falls in, nothing per unit",
    "package": "ceil(units / package size) x package price",
}

BAND_HEADERS = [
    "band",
    "above",
    "up to",
    "units",
    "base rate",
    "rate",
    "flat fee",
    "amount (unrounded)",
]


def bands_for(m: Month, charge: Row) -> list[Row]:
    band = charge.get("band") if ":band" in charge["line_key"] else None
    return [
        b
        for b in m.bands
        if b["service_line_id"] == charge["service_line_id"] and (band is None or b["band"] == band)
    ]


def pricing_lines(charge: Row, indent: str) -> list[str]:
    model = charge.get("pricing_model")
    if not model:
        return []
    return [
        f"{indent}Pricing: {model} ({MODEL_RULES.get(model, model)}); the entry in force is "
        f"effective from {month(charge.get('pricing_from'))}"
    ]


def explain_usage(m: Month, charge: Row, indent: str) -> list[str]:
    sl = charge["service_line_id"]
    units = charge["units"]
    where = f"in band {charge.get('band')}" if ":band" in charge["line_key"] else "in the bands"
    out = []
    if charge.get("line_units") != units:
        text = (
            f"{indent}Units: {num(units)} {where}, of the month's {num(charge.get('line_units'))} "
            f"units of {sl}"
        )
        surge = m.charges.get(f"surge:{sl}")
        if surge:
            text += f" ({num(surge['units'])} above the surge threshold are billed on surge:{sl})"
        out.append(text)
    else:
        out.append(f"{indent}Units: {num(units)} (the month's volume of {sl})")
    if f"minimum:{sl}" in m.charges:
        out.append(f"{indent}Below the line's minimum: see minimum:{sl}")
    out += pricing_lines(charge, indent)
    model = charge.get("pricing_model")
    bands = bands_for(m, charge)
    if bands:
        out.append(f"{indent}Bands:")
        body = [
            [
                str(b["band"]),
                num(b["lower_bound"]),
                num(b["up_to"]) if b["up_to"] is not None else "open",
                num(b["units"]),
                num(b["base_rate"], 2),
                num(b["rate"], 2),
                money(b["flat_fee"]),
                num(b["amount_unrounded"], 2),
            ]
            for b in bands
        ]
        out += grid(BAND_HEADERS, body, indent + "  ")
        if model == "stairstep":
            out.append(
                f"{indent}  (stairstep: the units shown are the month's total, which picks the "
                "band; only its flat fee is billed)"
            )
        if len(bands) > 1:
            out.append(
                f"{indent}  sum of the bands: "
                + " + ".join(num(b["amount_unrounded"], 2) for b in bands)
                + f" = {num(charge['amount_unrounded'], 2)}"
            )
    elif model == "package":
        base = charge.get("base_package_price")
        indexed = charge.get("indexed") and charge.get("index_factor") != 1
        out.append(
            f"{indent}Packages: {num(units)} units / package size {num(charge.get('package_size'))}"
            f", rounded up -> {num(charge.get('package_count'))} package(s) x package price "
            f"{money(charge.get('rate'))}"
            + (f" (base {money(base)}, indexed)" if indexed else "")
            + f" = {num(charge['amount_unrounded'], 2)}"
        )
    factor = charge.get("index_factor")
    out += factor_lines(m, charge, indent)
    if charge.get("indexed") and bands:
        out.append(
            f"{indent}Indexed prices: rate = round(base rate x {num(factor)}, rate scale "
            f"{charge.get('rate_scale')}), flat fee = round(base flat fee x factor, amount scale "
            f"{charge.get('amount_scale')})"
        )
        for b in bands:
            out.append(
                f"{indent}  band {b['band']}: {num(b['base_rate'], 2)} x {num(factor)} -> "
                f"{num(b['rate'], 2)}"
                + (
                    f"; flat fee {money(b['base_flat_fee'])} -> {money(b['flat_fee'])}"
                    if b.get("base_flat_fee")
                    else ""
                )
            )
    if charge.get("capped"):
        out.append(
            f"{indent}Maximum charge: the usage charge {num(charge['amount_unrounded'], 2)} is "
            f"above the line's maximum charge, so it is capped at {money(charge['amount'])}"
        )
    else:
        out.append(f"{indent}Rounding: {line_rounding(charge)}")
    out += indexation_effect_lines(charge, indent)
    return out
