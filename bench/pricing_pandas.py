"""The benchmark's yardstick for sql/04_pricing.sql: the same pricing (SPEC 3) written the way a
per-contract script usually is, with pandas frames and a Python loop over contracts, service lines
and months, and Python Decimal arithmetic.

It is deliberately plain, not deliberately slow: the frames are split by contract once (groupby),
lookups inside a contract are ordinary boolean filters on that contract's small frames, and
amounts are Decimals (exact, as the engine's). It takes the index factor of each month from the
SQL (calc_month_factors), so that it prices exactly what 04_pricing prices, and its lines are
compared with calc_charge_lines to show that it is the same work done right.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import duckdb
import pandas as pd

MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
ZERO = Decimal(0)


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """Through Arrow, so decimals arrive as Python Decimals (never floats). (The copy DuckDB warns
    about is a few thousand rows, and not timed.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return con.execute(sql).to_arrow_table().to_pandas()


def _round(x: Decimal, scale: int, mode: str) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-scale), rounding=MODES[mode])


def load(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The terms, volumes, months and factors the SQL step reads, as pandas frames."""
    known = "(SELECT as_known_at FROM run_params)"
    return {
        "contracts": _frame(con, "SELECT * FROM cfg_contracts"),
        "lines": _frame(con, "SELECT * FROM cfg_service_lines"),
        "pricing": _frame(con, f"SELECT * FROM cfg_pricing WHERE agreed_on <= {known}"),
        "bands": _frame(con, "SELECT * FROM cfg_bands"),
        "fees": _frame(con, f"SELECT * FROM cfg_fixed_fees WHERE agreed_on <= {known}"),
        "volumes": _frame(con, "SELECT * FROM in_volumes"),
        "months": _frame(con, "SELECT contract_id, period FROM calc_months"),
        "factors": _frame(con, "SELECT contract_id, period, factor FROM calc_month_factors"),
    }


def _indexed(x: Decimal | None, indexed: bool, factor: Decimal, scale: int, mode: str):
    """A money term of an indexed line moves with the factor, rounded to the amount scale."""
    return _round(x * factor, scale, mode) if indexed and x is not None else x


def _usage(model, banded, bands, cap, scale, mode, itemise) -> list[tuple[str, Decimal]]:
    """(suffix, rounded amount) of the usage line(s) of one service line and month."""
    amounts: list[tuple[int, Decimal]] = []
    for band in bands:
        lower, up_to = band["lower_bound"], band["up_to"]
        inside = max(min(banded, up_to if up_to is not None else banded) - lower, ZERO)
        holds = (
            banded > 0
            and (banded > lower or band["band"] == 1)
            and (up_to is None or banded <= up_to)
        )
        if model in ("graduated", "per_unit") and inside > 0:
            amounts.append((band["band"], inside * band["rate"] + band["flat_fee"]))
        elif model == "volume" and holds:
            amounts.append((band["band"], banded * band["rate"] + band["flat_fee"]))
        elif model == "stairstep" and holds:
            amounts.append((band["band"], band["flat_fee"]))
    if not amounts:
        return []
    if itemise and model == "graduated":
        return [(f":band{k}", _round(a, scale, mode)) for k, a in amounts]
    total = sum((a for _, a in amounts), ZERO)
    if cap is not None:
        total = min(total, cap)
    return [("", _round(total, scale, mode))]


def price(frames: dict[str, pd.DataFrame]) -> dict[tuple[str, dt.date, str], Decimal]:
    """(contract_id, period, line_key) -> amount, for every charge line of every contract-month."""
    out: dict[tuple[str, dt.date, str], Decimal] = {}
    by_contract = {k: {cid: g for cid, g in f.groupby("contract_id")} for k, f in frames.items()}
    empty = {k: f.iloc[0:0] for k, f in frames.items()}

    def part(name: str, cid: str) -> pd.DataFrame:
        return by_contract[name].get(cid, empty[name])

    for contract in frames["contracts"].itertuples():
        cid, scale, rate_scale, mode = (
            contract.contract_id,
            contract.amount_scale,
            contract.rate_scale,
            contract.rounding_mode,
        )
        months, factors = part("months", cid), part("factors", cid)
        pricing, bands, volumes = part("pricing", cid), part("bands", cid), part("volumes", cid)
        fees = part("fees", cid)
        for period in months["period"]:
            factor = factors.loc[factors["period"] == period, "factor"].iloc[0]
            for line in part("lines", cid).itertuples():
                sl = line.service_line_id
                f = factor if line.indexed else Decimal(1)
                entries = pricing[
                    (pricing["service_line_id"] == sl) & (pricing["effective_from"] <= period)
                ]
                p = entries.sort_values("effective_from").iloc[-1]
                vol = volumes[(volumes["service_line_id"] == sl) & (volumes["period"] == period)]
                units = vol["units"].iloc[0] if len(vol) else ZERO
                forecast = vol["forecast_units"].iloc[0] if len(vol) else None

                surge_rate = p["surge_rate"]
                if line.indexed and surge_rate is not None:
                    surge_rate = _round(surge_rate * f, rate_scale, mode)
                surge_units = ZERO
                if surge_rate is not None and forecast is not None and not pd.isna(forecast):
                    threshold = forecast * (1 + p["surge_over_forecast_pct"])
                    surge_units = max(units - threshold, ZERO)
                banded = units - surge_units
                in_force = bands[
                    (bands["service_line_id"] == sl)
                    & (bands["effective_from"] == p["effective_from"])
                ].sort_values("band")
                priced = []
                for band in in_force.to_dict("records"):
                    if line.indexed:
                        band["rate"] = _round(band["rate"] * f, rate_scale, mode)
                        band["flat_fee"] = _round(band["flat_fee"] * f, scale, mode)
                    priced.append(band)
                cap = _indexed(p["maximum_charge"], line.indexed, f, scale, mode)
                if p["model"] == "package":
                    usage = []
                    if banded > 0:
                        packages = math.ceil(banded / p["package_size"])
                        usage = [
                            (
                                "",
                                _round(
                                    packages
                                    * _indexed(p["package_price"], line.indexed, f, scale, mode),
                                    scale,
                                    mode,
                                ),
                            )
                        ]
                else:
                    usage = _usage(
                        p["model"], banded, priced, cap, scale, mode, bool(p["itemise_bands"])
                    )
                for suffix, value in usage:
                    out[(cid, period, f"usage:{sl}{suffix}")] = value
                if surge_units > 0:
                    out[(cid, period, f"surge:{sl}")] = _round(
                        surge_units * surge_rate, scale, mode
                    )
                usage_amount = sum((v for _, v in usage), ZERO)
                first_rate = priced[0]["rate"] if priced else ZERO
                shortfall_units = ZERO
                if p["minimum_units"] is not None:
                    shortfall_units = max(p["minimum_units"] - units, ZERO)
                shortfall = _round(shortfall_units * first_rate, scale, mode)
                floor = _indexed(p["minimum_charge"], line.indexed, f, scale, mode)
                top_up = max(floor - usage_amount - shortfall, ZERO) if floor is not None else ZERO
                if shortfall_units > 0 or (floor is not None and usage_amount < floor):
                    out[(cid, period, f"minimum:{sl}")] = shortfall + top_up
            for fee_id in fees["fee_id"].unique():
                entries = fees[(fees["fee_id"] == fee_id) & (fees["effective_from"] <= period)]
                if len(entries):
                    fee = entries.sort_values("effective_from").iloc[-1]
                    f = factor if fee["indexed"] else Decimal(1)
                    out[(cid, period, f"fixed:{fee_id}")] = _round(fee["amount"] * f, scale, mode)
    return out
