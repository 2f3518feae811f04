"""`settle explain`: the derivation of each invoice line, in words and numbers, from the database.

Everything here is read from the stored tables through the `current_*` views (and, for the
indexation chain and the closing figures of a restated month, the stored rows of the run named by
those views): an auditor holding only the DuckDB file gets the same text. The file is opened
read-only. Nothing is recomputed: the figures printed are the engine's, and the arithmetic shown
between them is the rule that links them, so a reader can check it by hand.

Some terms are not stored by the engine (the rounding mode and amount scale of a charge line, the
forecast behind a surge threshold, the cap and floor of an indexation review, a bonus level): the
text then says what the stored figures imply and how (for instance the scale a line was rounded to
is the one at which its unrounded amount gives its rounded amount), never a guess presented as a
term.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from .errors import SettleError
from .money import quantize
from .periods import fmt

Row = dict[str, Any]

CHARGE_TYPES = ("usage", "fixed_fee", "minimum", "surge")

MODEL_RULES = {
    "per_unit": "units x rate",
    "graduated": "marginal bands: each band prices the units inside it, and adds its flat fee "
    "once when any unit falls in it",
    "volume": "all units at the rate of the band the month's total falls in, plus that band's "
    "flat fee",
    "stairstep": "the flat fee of the band the month's total falls in, nothing per unit",
    "package": "ceil(units / package size) x package price",
}


# --------------------------------------------------------------------------- database access


def connect_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    """Open the settlement database for reading only; a clear error if it is missing or busy."""
    path = Path(db_path)
    if not path.exists():
        raise SettleError(f"{path}: no such database; settle a month first (`settle run`)")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        # another process writing (a lock), or this process holding it open for writing
        if "lock" in str(exc).lower() or "different configuration" in str(exc).lower():
            raise SettleError(
                f"{path}: the database is in use by a running settlement (DuckDB allows no "
                "reader while a writer holds the file); try again when it has finished"
            ) from None
        raise SettleError(f"{path}: cannot open the database: {exc}") from None


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[Row]:
    """Rows as dicts; an absent table or view (a database from before it existed) reads as empty."""
    try:
        cur = con.execute(sql, params or [])
    except duckdb.CatalogException:
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def keyed(con: duckdb.DuckDBPyConnection, key: str, sql: str, params: list) -> dict[str, Row]:
    """rows() indexed by one column, in query order."""
    return {r[key]: r for r in rows(con, sql, params)}


def has_settled_figures(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'current_invoice_lines'"
    ).fetchone()
    return bool(found and found[0])


# --------------------------------------------------------------------------- number text


def num(value: Decimal | int | None, min_dp: int = 0, sep: bool = True) -> str:
    """A decimal as text, exact: trailing zeros dropped down to `min_dp` places, never rounded."""
    if value is None:
        return "n/a"
    d = Decimal(value)
    if d == 0:
        d = Decimal(0)  # no "-0.00"
    places = max(-d.normalize().as_tuple().exponent, min_dp, 0)
    return f"{d:,.{places}f}" if sep else f"{d:.{places}f}"


def money(value: Decimal | None) -> str:
    return num(value, 2)


def pct(value: Decimal | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    text = num(Decimal(value) * 100) + "%"
    return ("+" + text) if signed and value > 0 else text


def _month(value: dt.date | None) -> str:
    return fmt(value) if value else "n/a"


def _grid(headers: list[str], body: list[list[str]], indent: str) -> list[str]:
    """A plain-text table: the first column left-aligned, numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in body)]


# --------------------------------------------------------------------------- rounding


def _inferred_scale(unrounded: Decimal, rounded: Decimal) -> int | None:
    """The fewest places at which the unrounded amount rounds (either mode) to the stored one."""
    for scale in range(0, 11):
        if rounded in (
            quantize(unrounded, scale, "half_up"),
            quantize(unrounded, scale, "half_even"),
        ):
            return scale
    return None


def rounding_text(
    unrounded: Decimal | None, rounded: Decimal, mode: str | None, scale: int | None
) -> str:
    """'unrounded -> rounded (scale, mode)': the one rounding of a line, as stored."""
    if unrounded is None:
        return f"{money(rounded)} (no unrounded amount stored)"
    if unrounded == rounded:
        return f"{num(unrounded, 2)} is exact: no rounding needed"
    if scale is None or rounded not in (
        quantize(unrounded, scale, "half_up"),
        quantize(unrounded, scale, "half_even"),
    ):
        scale = _inferred_scale(unrounded, rounded)
    if scale is None:
        return f"{num(unrounded, 2)} -> {money(rounded)}"
    tie = abs(unrounded.scaleb(scale) % 1) == Decimal("0.5")
    if mode:
        how = f"{mode}, the contract's rounding" + ("; a tie" if tie else "")
    elif not tie:
        how = "to nearest; not a tie, so half_up and half_even agree"
    elif quantize(unrounded, scale, "half_up") == quantize(unrounded, scale, "half_even"):
        how = "a tie: half_up and half_even agree"
    elif rounded == quantize(unrounded, scale, "half_up"):
        how = "a tie rounded half away from zero: half_up"
    else:
        how = "a tie rounded half to even: half_even"
    return f"{num(unrounded, 2)} -> {money(rounded)} ({scale} places, {how})"


# --------------------------------------------------------------------------- the month's figures


class Month:
    """Every stored figure of one contract and month that an explanation may need."""

    def __init__(self, con: duckdb.DuckDBPyConnection, contract_id: str, period: dt.date):
        self.contract_id = contract_id
        self.period = period
        p = [contract_id, period]
        stands = rows(
            con,
            "SELECT run_id, status FROM current_run_periods WHERE contract_id = ? AND period = ?",
            p,
        )
        self.lines = rows(
            con,
            "SELECT * FROM current_invoice_lines WHERE contract_id = ? AND period = ? "
            "ORDER BY sort_order, line_key",
            p,
        )
        if not stands or not self.lines:
            raise SettleError(_nothing_settled(con, contract_id, period))
        self.run_id = stands[0]["run_id"]
        self.status = stands[0]["status"]
        self.run = rows(con, "SELECT * FROM settlement_runs WHERE run_id = ?", [self.run_id])[0]
        self.currency = self.lines[0]["currency"]
        self.charges = keyed(
            con,
            "line_key",
            "SELECT * FROM current_charge_lines WHERE contract_id = ? AND period = ?",
            p,
        )
        self.bands = rows(
            con,
            "SELECT * FROM current_charge_bands WHERE contract_id = ? AND period = ? "
            "ORDER BY service_line_id, band",
            p,
        )
        self.kpis = keyed(
            con,
            "kpi_id",
            "SELECT * FROM current_kpi_results WHERE contract_id = ? AND period = ? "
            "ORDER BY kpi_order",
            p,
        )
        self.credits = keyed(
            con,
            "kpi_id",
            "SELECT * FROM current_service_credits WHERE contract_id = ? AND period = ?",
            p,
        )
        self.month_charges = con.execute(
            "SELECT sum(amount) FROM current_invoice_lines WHERE contract_id = ? AND period = ? "
            "AND line_type IN ('usage', 'fixed_fee', 'minimum', 'surge')",
            p,
        ).fetchone()[0]
        self.gain_share = rows(
            con,
            "SELECT * FROM current_gain_share WHERE contract_id = ? AND billed_period = ? "
            "ORDER BY window_start",
            p,
        )
        self.adjustments = rows(
            con,
            "SELECT a.*, s.closed_run_id FROM current_adjustments a "
            "LEFT JOIN period_status s ON s.contract_id = a.contract_id AND s.period = a.period "
            "WHERE a.contract_id = ? AND a.billed_in_period = ? ORDER BY a.period, a.line_key",
            p,
        )
        self.recon = keyed(
            con,
            "line_key",
            "SELECT * FROM current_invoice_reconciliation WHERE contract_id = ? AND period = ?",
            p,
        )
        # the reviews the run standing for this month used, up to this month
        self.reviews = rows(
            con,
            "SELECT * FROM index_factors WHERE run_id = ? AND contract_id = ? AND period <= ? "
            "ORDER BY period, index_id",
            [self.run_id, contract_id, period],
        )
        rounding = rows(
            con,
            "SELECT rounding_mode, amount_scale FROM service_credits WHERE contract_id = ? "
            "ORDER BY run_id DESC LIMIT 1",
            [contract_id],
        )
        self.rounding_mode = rounding[0]["rounding_mode"] if rounding else None
        self.amount_scale = rounding[0]["amount_scale"] if rounding else None
        self._con = con

    def kpi_history(self, kpi_id: str, after: dt.date, upto: dt.date) -> list[Row]:
        return rows(
            self._con,
            "SELECT period, status, value, target FROM current_kpi_results "
            "WHERE contract_id = ? AND kpi_id = ? AND period > ? AND period <= ? ORDER BY period",
            [self.contract_id, kpi_id, after, upto],
        )

    def earned_back(self, kpi_id: str) -> list[Row]:
        """Credits an earn-back line on this month returns (stored as earned back here, or still
        pending in a month closed before the months that earned it back were settled)."""
        found = rows(
            self._con,
            "SELECT * FROM current_service_credits WHERE contract_id = ? AND kpi_id = ? "
            "AND period < ? AND (earned_back_in = ? OR earn_back_status = 'pending') "
            "ORDER BY period",
            [self.contract_id, kpi_id, self.period, self.period],
        )
        exact = [r for r in found if r.get("earned_back_in") == self.period]
        if exact:
            return exact
        return [
            r
            for r in found
            if not any(
                h["status"] == "failed" for h in self.kpi_history(kpi_id, r["period"], self.period)
            )
        ]

    def closing_gain_share(self, run_id: int, month: dt.date) -> list[Row]:
        return rows(
            self._con,
            "SELECT * FROM gain_share WHERE run_id = ? AND contract_id = ? AND billed_period = ?",
            [run_id, self.contract_id, month],
        )

    def round_text(self, unrounded: Decimal | None, rounded: Decimal) -> str:
        return rounding_text(unrounded, rounded, self.rounding_mode, self.amount_scale)


def _nothing_settled(con: duckdb.DuckDBPyConnection, contract_id: str, period: dt.date) -> str:
    months = rows(
        con,
        "SELECT min(period) AS first, max(period) AS last, count(*) AS n "
        "FROM current_run_periods WHERE contract_id = ?",
        [contract_id],
    )
    if months and months[0]["n"]:
        m = months[0]
        return (
            f"no settled figures for {contract_id} in {fmt(period)}: the database holds "
            f"{m['n']} settled month(s) of it, {fmt(m['first'])}..{fmt(m['last'])}"
        )
    known = [
        r["contract_id"]
        for r in rows(con, "SELECT DISTINCT contract_id FROM current_run_periods ORDER BY 1")
    ]
    return f"no settled figures for contract {contract_id}: the database holds " + (
        ", ".join(known) if known else "no settled contract"
    )


# --------------------------------------------------------------------------- indexation


def _review_in_force(m: Month) -> list[Row]:
    if not m.reviews:
        return []
    latest = max(r["period"] for r in m.reviews)
    return [r for r in m.reviews if r["period"] == latest]


def _clamp_words(raw: Decimal, applied: Decimal) -> str:
    # applied changes are stored to 6 places: a smaller gap is that rounding, not a clamp
    if abs(raw - applied) < Decimal("0.000001"):
        return ""
    return " (clamped to the cap)" if applied < raw else " (clamped to the floor)"


def factor_lines(m: Month, line_factor: Decimal | None, indent: str) -> list[str]:
    """The index factor of a line and the index values behind it."""
    in_force = _review_in_force(m)
    if line_factor is None:
        return []
    if not in_force:
        return [
            f"{indent}Index factor {num(line_factor)}: no indexation review applies to this month"
        ]
    head = in_force[0]
    if line_factor != head["factor"] and line_factor == 1:
        return [
            f"{indent}Index factor 1: the line is not indexed (the review of "
            f"{_month(head['period'])} set factor {num(head['factor'])} for the indexed lines)"
        ]
    method = head.get("method") or "chained"
    out = [
        f"{indent}Index factor {num(head['factor'])} ({method}; review {_month(head['period'])}, "
        f"in force from that month):"
    ]
    for r in in_force:
        out.append(
            f"{indent}  {r['index_id']}: {_month(r['reference_period'])} = "
            f"{num(r['reference_value'])} against {_month(r['previous_reference_period'])} = "
            f"{num(r['previous_reference_value'])}: raw change {pct(r['raw_change'], True)}, "
            f"applied {pct(r['applied_change'], True)}"
            + (
                _clamp_words(r["raw_change"], r["applied_change"])
                if method != "base_relative"
                else ""
            )
            + f", weight {num(r.get('weight'))}"
        )
    prev = head.get("previous_factor")
    unrounded = head.get("unrounded_factor")
    if method == "base_relative":
        terms = " + ".join(
            f"{num(r.get('weight'))} x "
            f"{num(r['reference_value'])}/{num(r['previous_reference_value'])}"
            for r in in_force
        )
        total_weight = sum((r.get("weight") or Decimal(0)) for r in in_force)
        text = (
            f"{indent}  factor = (1 - {num(total_weight)}) + {terms} = {num(unrounded)} "
            f"(rounded to the factor scale)"
        )
        if unrounded is not None and head["factor"] != unrounded:
            bound = "cap" if head["factor"] < unrounded else "floor"
            text += (
                f", held at the {bound} from the previous factor {num(prev)}: {num(head['factor'])}"
            )
        else:
            text += f", within the cap and floor from the previous factor {num(prev)}"
        out.append(text)
    else:
        terms = " + ".join(f"{num(r.get('weight'))} x {num(r['applied_change'])}" for r in in_force)
        out.append(
            f"{indent}  factor = previous {num(prev)} x (1 + {terms}) = {num(unrounded)} "
            f"-> {num(head['factor'])} (rounded to the factor scale)"
        )
    earlier = sorted({r["period"] for r in m.reviews} - {head["period"]})
    if earlier:
        factors = {r["period"]: r["factor"] for r in m.reviews}
        out.append(
            f"{indent}  earlier reviews: "
            + ", ".join(f"{_month(p)} factor {num(factors[p])}" for p in earlier)
        )
    return out


# --------------------------------------------------------------------------- line explanations


def _bands_for(m: Month, charge: Row) -> list[Row]:
    key = charge["line_key"]
    band = int(key.rsplit(":band", 1)[1]) if ":band" in key else None
    return [
        b
        for b in m.bands
        if b["service_line_id"] == charge["service_line_id"] and (band is None or b["band"] == band)
    ]


def _surge_units(m: Month, service_line: str) -> Decimal:
    surge = m.charges.get(f"surge:{service_line}")
    return surge["units"] if surge else Decimal(0)


def _banded_units(m: Month, service_line: str) -> Decimal:
    return sum(
        (c["units"] or Decimal(0))
        for c in m.charges.values()
        if c["charge_type"] == "usage" and c["service_line_id"] == service_line
    ) or Decimal(0)


def _pricing_lines(charge: Row, indent: str) -> list[str]:
    model = charge.get("pricing_model")
    if not model:
        return []
    rule = MODEL_RULES.get(model, model)
    return [
        f"{indent}Pricing: {model} ({rule}); the entry in force is effective from "
        f"{_month(charge.get('pricing_from'))}"
    ]


def explain_usage(m: Month, charge: Row, indent: str) -> list[str]:
    sl = charge["service_line_id"]
    out = []
    units = charge["units"] or Decimal(0)
    surge = _surge_units(m, sl)
    banded = _banded_units(m, sl)
    where = f"in band {charge.get('band')}" if ":band" in charge["line_key"] else "in the bands"
    if surge or banded != units:
        text = (
            f"{indent}Units: {num(units)} {where}, of the month's {num(banded + surge)} "
            f"units of {sl}"
        )
        if surge:
            text += f" ({num(surge)} above the surge threshold are billed on surge:{sl})"
        out.append(text)
    else:
        out.append(f"{indent}Units: {num(units)} (the month's volume of {sl})")
    if f"minimum:{sl}" in m.charges:
        out.append(f"{indent}Below the line's minimum: see minimum:{sl}")
    out += _pricing_lines(charge, indent)
    model = charge.get("pricing_model")
    bands = _bands_for(m, charge)
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
        out += _grid(
            [
                "band",
                "above",
                "up to",
                "units",
                "base rate",
                "rate",
                "flat fee",
                "amount (unrounded)",
            ],
            body,
            indent + "  ",
        )
        if model == "stairstep":
            out.append(
                f"{indent}  (a stairstep line stores 0 units: the band is the one the month's "
                "total fell in)"
            )
        if len(bands) > 1:
            out.append(
                f"{indent}  sum of the bands: "
                + " + ".join(num(b["amount_unrounded"], 2) for b in bands)
                + f" = {num(charge['amount_unrounded'], 2)}"
            )
    elif model == "package" and charge.get("rate"):
        packages = charge["amount_unrounded"] / charge["rate"] if charge["rate"] else None
        out.append(
            f"{indent}Packages: {num(units)} units -> {num(packages)} package(s) (the units over "
            f"the package size, rounded up) x package price {money(charge['rate'])}"
            + (
                " (indexed; the base price is not stored)"
                if charge.get("index_factor") not in (None, 1)
                else ""
            )
            + f" = {num(charge['amount_unrounded'], 2)}"
        )
    factor = charge.get("index_factor")
    out += factor_lines(m, factor, indent)
    if factor is not None and factor != 1 and bands:
        out.append(
            f"{indent}Indexed prices: rate = round(base rate x {num(factor)}, rate scale)"
            + ", flat fee = round(base flat fee x factor, amount scale)"
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
        out.append(
            f"{indent}Rounding: {m.round_text(charge['amount_unrounded'], charge['amount'])}"
        )
    return out


def explain_surge(m: Month, charge: Row, indent: str) -> list[str]:
    sl = charge["service_line_id"]
    banded = _banded_units(m, sl)
    units = charge["units"]
    out = [
        f"{indent}Rule: units above forecast x (1 + over_forecast_pct) are taken out of the bands "
        "and billed at the surge rate",
        f"{indent}Units: the month's {num(banded + units)} units of {sl}; the threshold "
        f"forecast x (1 + over_forecast_pct) is {num(banded)} (the units left in the bands; the "
        f"forecast itself is not stored), so {num(units)} are surge units",
    ]
    factor = charge.get("index_factor")
    out += factor_lines(m, factor, indent)
    if factor is not None and factor != 1:
        out.append(
            f"{indent}Surge rate: base {num(charge['base_rate'], 2)} x {num(factor)} -> "
            f"{num(charge['rate'], 2)} (rounded to the rate scale)"
        )
    else:
        out.append(f"{indent}Surge rate: {num(charge['rate'], 2)}")
    out.append(
        f"{indent}Amount: {num(units)} x {num(charge['rate'], 2)} = "
        f"{num(charge['amount_unrounded'], 2)}"
    )
    out.append(f"{indent}Rounding: {m.round_text(charge['amount_unrounded'], charge['amount'])}")
    return out


def explain_minimum(m: Month, charge: Row, indent: str) -> list[str]:
    sl = charge["service_line_id"]
    shortfall = charge["units"] or Decimal(0)
    month_units = _banded_units(m, sl) + _surge_units(m, sl)
    usage = sum(
        (
            c["amount"]
            for c in m.charges.values()
            if c["charge_type"] == "usage" and c["service_line_id"] == sl
        ),
        Decimal(0),
    )
    rate = charge.get("rate") or Decimal(0)
    out = []
    factor = charge.get("index_factor")
    rate_words = f"the first band's rate {num(rate, 2)}"
    if factor is not None and factor != 1:
        rate_words += f" (base {num(charge.get('base_rate'), 2)} x factor {num(factor)})"
    if shortfall > 0:
        out.append(
            f"{indent}Take-or-pay: the month's {num(month_units)} units of {sl} are below the "
            f"minimum of {num(month_units + shortfall)} units"
        )
        out.append(
            f"{indent}Shortfall: {num(shortfall)} units x {rate_words} = {num(shortfall * rate, 2)}"
        )
        scale = m.amount_scale if m.amount_scale is not None else 2
        shortfall_amount = quantize(shortfall * rate, scale, m.rounding_mode or "half_up")
        top_up = charge["amount"] - shortfall_amount
        if top_up > 0:
            out.append(
                f"{indent}Minimum charge: usage {money(usage)} + shortfall "
                f"{money(shortfall_amount)} is below the minimum charge of "
                f"{money(usage + charge['amount'])}; the top-up {money(top_up)} is on this line too"
            )
    else:
        out.append(
            f"{indent}Minimum charge: the usage charge of {sl}, {money(usage)}, is below the "
            f"minimum charge of {money(usage + charge['amount'])}; the difference is billed"
        )
    out += factor_lines(m, factor, indent)
    if shortfall > 0:
        out.append(f"{indent}Rounding: {m.round_text(shortfall * rate, charge['amount'])}")
    return out


def explain_fixed_fee(m: Month, charge: Row, indent: str) -> list[str]:
    factor = charge.get("index_factor")
    base = charge.get("base_rate")
    out = [f"{indent}Fixed fee: {money(base)} a month, billed every month of the term"]
    out += factor_lines(m, factor, indent)
    if factor is not None and factor != 1:
        out.append(
            f"{indent}Indexed: {money(base)} x {num(factor)} = {num(charge['amount_unrounded'], 2)}"
        )
    out.append(f"{indent}Rounding: {m.round_text(charge['amount_unrounded'], charge['amount'])}")
    return out


def _kpi_words(k: Row | None, kpi_id: str) -> str:
    if not k:
        return f"KPI {kpi_id}: no stored result this month"
    direction = (k.get("direction") or "").replace("_", " ")
    actual = "no data" if k.get("value") is None else f"actual {num(k['value'])}"
    text = (
        f"KPI {kpi_id} ({direction}): {actual} vs target {num(k.get('target'))}"
        f" (target from {_month(k.get('target_from'))}): {k.get('status')}"
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


def _severity_words(c: Row) -> str:
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
        return f"{sev} (linear: {formula}, clamped to [0, 1], 6 places)"
    if model == "bands":
        return f"{sev} (bands: band {c.get('band')}, worse than {num(c.get('band_worse_than'))})"
    return sev


def explain_credit(m: Month, line: Row, indent: str) -> list[str]:
    kpi_id = line["line_key"].split(":", 1)[1]
    c = m.credits.get(kpi_id)
    out = [f"{indent}{_kpi_words(m.kpis.get(kpi_id), kpi_id)}"]
    if not c:
        return out + [f"{indent}(no stored service-credit row for this KPI and month)"]
    charges = c.get("charges")
    mult = c.get("multiplier")
    if mult is not None and mult != 1:
        mult_words = (
            f"{num(mult)} (consecutive failure {c.get('consecutive_failures')}: the repeat "
            f"multiplier {num(c.get('repeat_multiplier'))})"
        )
    else:
        mult_words = f"{num(mult)} (first failure of a run)"
    if c.get("regime") == "points":
        out.append(
            f"{indent}Points: band {c.get('band')} (worse than {num(c.get('band_worse_than'))}) "
            f"scores {num(c.get('band_points'))} x multiplier {mult_words} = {num(c.get('points'))}"
        )
        out.append(
            f"{indent}Month: {num(c.get('points_total'))} points in all -> "
            f"{pct(c.get('points_pct'))} of charges {money(charges)} = "
            f"{num(c.get('month_uncapped_total'), 2)}, split over the failed KPIs by points: "
            f"this KPI's share {num(c.get('uncapped_amount'), 2)}"
        )
    else:
        out.append(
            f"{indent}At risk: {pct(c.get('at_risk_pct'))} of the month's charges "
            f"{money(charges)} = {num(c.get('at_risk_amount'), 2)}"
        )
        out.append(
            f"{indent}Allocation {pct(c.get('allocation_pct'))}; severity {_severity_words(c)}; "
            f"multiplier {mult_words}"
        )
        out.append(
            f"{indent}Uncapped credit: {num(c.get('at_risk_amount'), 2)} x "
            f"{num(c.get('allocation_pct'))} x {num(c.get('severity'))} x {num(mult)} = "
            f"{num(c.get('uncapped_amount'), 2)}"
        )
    cap = c.get("cap_amount")
    if cap is None:
        out.append(f"{indent}Monthly cap: none")
    elif c.get("capped"):
        out.append(
            f"{indent}Monthly cap: {pct(c.get('monthly_cap_pct'))} of charges = {num(cap, 2)}; the "
            f"month's credits before the cap, {num(c.get('month_uncapped_total'), 2)}, exceed it"
        )
    else:
        out.append(
            f"{indent}Monthly cap: {pct(c.get('monthly_cap_pct'))} of charges = {num(cap, 2)}; "
            f"the month's credits before the cap, {num(c.get('month_uncapped_total'), 2)}, "
            "are within it"
        )
    if c.get("split_total") is not None:
        scale = c.get("amount_scale") or 0
        cut = Decimal(int(c.get("floor_units") or 0)).scaleb(-scale)
        out.append(
            f"{indent}Split: the total is rounded once to {money(c['split_total'])} and shared "
            f"by the largest-remainder method: this KPI's share cut to {money(cut)}, "
            + (
                "plus one unit of the last place for a largest remainder"
                if c.get("extra_unit")
                else "no extra unit"
            )
            + f" -> {money(c['amount'])}"
        )
    else:
        out.append(
            f"{indent}Rounding: "
            + rounding_text(
                c.get("uncapped_amount"), c["amount"], c.get("rounding_mode"), c.get("amount_scale")
            )
        )
    out.append(f"{indent}Credit: {money(line['amount'])} (a credit to the client is negative)")
    if c.get("earn_back_months"):
        status = c.get("earn_back_status")
        where = {
            "earned_back": f"earned back in {_month(c.get('earned_back_in'))}",
            "broken": f"broken by a failure in {_month(c.get('earn_back_broken_in'))}",
        }.get(status, status or "pending")
        out.append(
            f"{indent}Earn-back: returned in full if the KPI meets target in each of the next "
            f"{c['earn_back_months']} assessed months; {where}"
        )
    return out


def explain_earn_back(m: Month, line: Row, indent: str) -> list[str]:
    kpi_id = line["line_key"].split(":", 1)[1]
    credits = m.earned_back(kpi_id)
    out = [f"{indent}{_kpi_words(m.kpis.get(kpi_id), kpi_id)}"]
    if not credits:
        return out + [f"{indent}(the credit returned is not among the stored credit rows)"]
    for c in credits:
        out.append(
            f"{indent}Credit of {_month(c['period'])}: {money(c['amount'])} "
            f"(earn-back after {c.get('earn_back_months')} assessed months)"
        )
        history = m.kpi_history(kpi_id, c["period"], m.period)
        if history:
            out.append(
                f"{indent}  since then: "
                + ", ".join(f"{_month(h['period'])} {h['status']}" for h in history)
            )
    if len(credits) > 1:
        total = sum((c["amount"] for c in credits), Decimal(0))
        out.append(
            f"{indent}Earn-back: "
            + " + ".join(money(c["amount"]) for c in credits)
            + f" = {money(total)}, returned in full"
        )
    else:
        out.append(
            f"{indent}Earn-back: the credit of {_month(credits[0]['period'])}, "
            f"{money(credits[0]['amount'])}, is returned in full"
        )
    return out


def explain_bonus(m: Month, line: Row, indent: str) -> list[str]:
    kpi_id = line["line_key"].split(":", 1)[1]
    failed = [k for k, r in m.kpis.items() if r.get("status") == "failed"]
    return [
        f"{indent}{_kpi_words(m.kpis.get(kpi_id), kpi_id)}",
        f"{indent}No KPI failed this month"
        if not failed
        else f"{indent}Failed: {', '.join(failed)}",
        f"{indent}Charges before credits: {money(m.month_charges)} (usage, fixed, minimum and "
        "surge lines)",
        f"{indent}Bonus: {money(line['amount'])}, the level's share of those charges, rounded once",
    ]


GAIN_SHARE_BASELINE = {
    "unit_cost": "each month's baseline per unit x its units, x its index factor when the "
    "baseline is indexed",
    "total_cost": "each month's baseline, x its index factor when the baseline is indexed",
    "volume": "each month's baseline units x the value per unit",
}
GAIN_SHARE_ACTUAL = {
    "unit_cost": "the scope's charges before credits",
    "total_cost": "the scope's charges before credits",
    "volume": "units x the value per unit",
}


def _gain_share_rows(g: Row, indent: str, m: Month) -> list[str]:
    measure = g.get("measure")
    window = f"{_month(g['window_start'])}..{_month(g['window_end'])}"
    out = [
        f"{indent}Window {window} ({g.get('months')} month(s), settled every "
        f"{g.get('settle_every')}), billed on {_month(g.get('billed_period'))}; measure {measure}",
        f"{indent}Volume {num(g.get('volume'))}; baseline cost {num(g.get('baseline_cost'), 2)} "
        f"({GAIN_SHARE_BASELINE.get(measure, measure)}); actual cost "
        f"{num(g.get('actual_cost'), 2)} ({GAIN_SHARE_ACTUAL.get(measure, measure)})",
        f"{indent}Savings = baseline cost - actual cost = {num(g.get('savings'), 2)}"
        + (" (an overrun)" if (g.get("savings") or 0) < 0 else ""),
        f"{indent}Baseline: {g.get('baseline_reason')}",
    ]
    if g.get("threshold_pct") is not None:
        out.append(
            f"{indent}Threshold: {pct(g['threshold_pct'])} of the baseline cost = "
            f"{num(g.get('threshold_amount'), 2)}; "
            + (
                "|savings| is below it: nothing is shared"
                if g.get("below_threshold")
                else "|savings| reaches it"
            )
        )
    if g.get("tiers_applied"):
        kind = "pain tiers (an overrun)" if g.get("kind") == "pain" else "tiers"
        out.append(
            f"{indent}Shared by {kind}: {g['tiers_applied']} = {num(g.get('tiered_amount'), 2)}"
        )
    if g.get("kind") == "pain":
        out.append(
            f"{indent}Pain share: "
            + (
                "yes, the overrun share is credited to the client"
                if g.get("pain_share")
                else "no: an overrun is not shared"
            )
        )
    if g.get("cap") is not None:
        out.append(
            f"{indent}Cap {money(g['cap'])}: " + ("capped" if g.get("capped") else "not reached")
        )
    if g.get("gate_failures"):
        out.append(
            f"{indent}Gates failed: {g['gate_failures']}: "
            + ("the gain is withheld" if g.get("gated") else "a gate withholds a gain only")
        )
    out.append(f"{indent}Outcome: {g.get('outcome')}")
    rounded = m.round_text(g.get("provider_amount_unrounded"), g["provider_amount"])
    out.append(f"{indent}Rounding: {rounded}")
    return out


def explain_gain_share(m: Month, line: Row, indent: str) -> list[str]:
    if not m.gain_share:
        return [f"{indent}(no stored gain-share window is billed on this month)"]
    out = []
    for g in m.gain_share:
        out += _gain_share_rows(g, indent, m)
    return out


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


EXPLAINERS = {
    "usage": explain_usage,
    "surge": explain_surge,
    "minimum": explain_minimum,
    "fixed_fee": explain_fixed_fee,
}

LINE_EXPLAINERS = {
    "credit": explain_credit,
    "earn_back": explain_earn_back,
    "bonus": explain_bonus,
    "gain_share": explain_gain_share,
    "adjustment": explain_adjustment,
}


def _reconciliation(m: Month, line_key: str, indent: str) -> list[str]:
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
    return [text]


def explain_line(m: Month, line: Row) -> list[str]:
    indent = "    "
    head = f"  {line['line_key']}: {line['description']}"
    out = [
        head,
        f"{indent}Amount: {money(line['amount'])} {line['currency']} ({line['line_type']})",
    ]
    charge = m.charges.get(line["line_key"])
    if line["line_type"] in EXPLAINERS and charge:
        out += EXPLAINERS[line["line_type"]](m, charge, indent)
    elif line["line_type"] in LINE_EXPLAINERS:
        out += LINE_EXPLAINERS[line["line_type"]](m, line, indent)
    else:
        out.append(f"{indent}(no stored derivation for this line type)")
    out += _reconciliation(m, line["line_key"], indent)
    return out


def _header(m: Month) -> list[str]:
    run = m.run
    known = f", as known at {run['as_known_at']}" if run.get("as_known_at") else ""
    total = sum((line["amount"] for line in m.lines), Decimal(0))
    return [
        f"{m.contract_id} {fmt(m.period)} ({m.currency})",
        f"Figures of run {m.run_id} ({run.get('mode')} {run.get('periods')}{known}; code "
        f"{run.get('code_version')}); the month is {m.status}.",
        f"Invoice: {len(m.lines)} line(s), amount due {money(total)} {m.currency} (the sum of the "
        "rounded lines).",
    ]


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
        ][:1]
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
            out += explain_line(m, unbilled[0])
        return "\n".join(out) + "\n"
    finally:
        con.close()
