"""Write the sample portfolio's Parquet inputs (SPEC sections 6 and 10) for the three contracts.

    python data_samples/make_samples.py [--out DIR] [--expected EXPECTED_LINES.parquet]

Deterministic: every figure below is either written out by hand (the commercial story of each
contract: which month fails which KPI, where surge and minimums bite) or drawn from one seeded
generator that uses only `random.Random.random()`, the one method whose sequence Python
guarantees across versions, and plain float arithmetic (no transcendental functions). Money-like
values are built as `Decimal`. Re-running writes byte-identical files.

Story (see contracts_config/*.yaml for the terms):

ACME-CONTOSO-01 (retail, GBP, half_up)
  voice: surge in 2024-11, 2024-12, 2025-11 (units > forecast x 1.10); no forecast in 2024-01,
    2024-02, 2025-05; below the 40,000 take-or-pay minimum in 2025-06 and 2025-07 (IVR
    self-service took simple calls from 2025-04).
  chat: exactly 15,000 (top of band 1) in 2024-04 and 25,000 (top of band 2) in 2025-04.
  sl_80_20: fails 2024-02 (earned back in 2024-05), run of three 2024-07..09 (repeat multiplier,
    credits capped in 08 and 09; the 09 credit is earned back in 2025-01 because the excused
    2024-11 is skipped), 2024-11 excused (relief event), 2025-08 (0.810: meets the old 0.80 target
    but not the 0.82 in force from 2025-01; its earn-back is broken by 2025-10), 2025-10.
    Exactly on target (0.800000) in 2024-03.
  abandon_rate: fails 2024-07..09 (run), 2024-11, 2025-10; exactly on target (0.05) in 2025-08.
  email_sla_24h: fails 2024-03 (worse than no band), 2024-12, 2025-05 (second band), 2025-06.
  csat: fails 2024-11, 2025-02; bonus in 2024-05, 2024-06, 2025-04, 2025-09 (at/above 0.90 with
    no failure); not in 2025-06 or 2025-08 (another KPI failed).
  annual cap (1% of the contract year's charges): the 2024 credits return 63,490.64 on 2024-12,
    the 2025 credits 1,054.78 on 2025-12.
  telephony (pass_through/): 4.2p per voice contact, plus seasonal SIP trunks in 2024-11 and
    2025-11; billed at cost + 5% after credits.
NORTHWIND-BACKOFFICE-01 (back office, EUR, default rounding)
  fte_support: fractional FTE; 38.75 FTE in 2024-12 is below the 40 FTE minimum.
  document_processing: exactly 180 packages in 2024-05.
  mi_reporting: 0 hours in 2024-08 (no charge); exactly 40 hours in 2024-04; top band in 2024-12
    and 2025-11.
  points: 2024-03 accuracy; 2024-04 accuracy (repeat) + backlog; 2024-10 MI report late;
    2025-01..03 turnaround run (and backlog: 2025-02 excused, so 2025-03 is a repeat; 14 points,
    capped at 5%); 2025-09 accuracy; 2025-12 turnaround (above every band: first band's points).
    backlog_days exactly on target (2.0) in 2024-09.
  mi_reporting commitment: 120,000.00 a contract year; 2024 bills 106,000.00, so 14,000.00 is
    trued up on 2024-12 (a month with no service credit); 2025 bills 125,000.00 (no true-up).
  fx_rates/ (INR, lag 1, base 0.011, band 3%): fx_share lines in 2024-07, 2024-08 (to the
    provider), 2025-01..03 (to the client) and 2025-10..12 (to the provider).
  one-off: the MI platform migration, 25,000.00 in 2025-10..12 (8,333.34, 8,333.33, 8,333.33).
FABRIKAM-TELCO-01 (telco, GBP, half_even)
  voice: surge in 2024-11 and 2025-01 (over forecast x 1.15); 2025-11 is 13% over forecast, so
    no surge; no forecast in 2024-01 and 2025-06; minimum charge tops up 2024-08 and 2025-08.
  tech_support: maximum charge caps 2024-11, 2025-01, 2025-06 (exactly 350,000 minutes), 2025-11;
    exactly 200,000 minutes (top of band 1) in 2024-06; odd whole minutes on a 0.7650 rate give
    half-cent amounts, where half_even and half_up differ.
  sl_80_20 (measured from interactions): fails 2024-04, 2024-09..10 (run), 2025-06 (0.63:
    critical), 2025-07 (repeat), 2025-11; exactly 0.800000 in 2025-05; 2025-02 passes only
    because the carrier-outage window (an exclusion) is left out of the measure.
  abandon_rate: fails 2024-10, 2025-06 (worse than the 0.12 minimum), 2025-07 (repeat).
  fcr: fails 2024-02 (worse than no band), 2025-06 (second band); bonus 2024-12, 2025-09,
    2025-12; not 2025-11 (sl_80_20 failed).
Vendor invoices: each is what the contract said was due when the provider issued it (see
  settle_expected): up to 2025-06 as known at the 2025-07-10 month-end, so ACME's June 2025 bills
  the Q2 gain-share at the pre-rebase baseline (9,640.25); from 2025-07 as known today, so ACME's
  July bills the restated Q2 as an adjustment (-17,560.07). Then the discrepancies below.
"""

from __future__ import annotations

import argparse
import calendar
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import polars

SEED = 20240101
HERE = Path(__file__).resolve().parent

ACME = "ACME-CONTOSO-01"
NORTHWIND = "NORTHWIND-BACKOFFICE-01"
FABRIKAM = "FABRIKAM-TELCO-01"

MONTHS = [date(2024 + i // 12, i % 12 + 1, 1) for i in range(24)]
INDEX_MONTHS = [date(2023 + i // 12, i % 12 + 1, 1) for i in range(36)]

DEC = pa.decimal128(38, 6)
TS = pa.timestamp("us")
EPOCH = datetime(1970, 1, 1)
US = 1_000_000


def D(value: str | int) -> Decimal:
    """A Decimal from a string or int (never from a float)."""
    return Decimal(value)


def q6(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def ym(period: date) -> str:
    return f"{period.year:04d}-{period.month:02d}"


class Rng:
    """Only `random()` is used: its sequence is stable across Python versions for an int seed."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def random(self) -> float:
        return self._r.random()

    def randint(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return lo + int(self._r.random() * (hi - lo + 1))

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def pick(self, weights: list[float]) -> int:
        u = self._r.random() * sum(weights)
        for i, w in enumerate(weights):
            u -= w
            if u < 0:
                return i
        return len(weights) - 1


# --------------------------------------------------------------------------------------------
# volumes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    contract_id: str
    service_line_id: str
    units: list[str]  # 24 months, 2024-01 .. 2025-12
    forecast_scale: str  # quantum for derived forecasts ("1", "0.25", "0.1")
    forecasts: dict[str, str | None]  # explicit forecasts by YYYY-MM; None = no forecast


def _m(*values: str) -> list[str]:
    assert len(values) == 24, len(values)
    return list(values)


# fmt: off
VOLUME_LINES = [
    Line(ACME, "voice", _m(
        "58420", "54310", "61000", "63180", "60940", "62370",
        "66120", "64480", "67350", "70260", "88040", "84250",
        "62130", "57460", "63020", "50310", "46180", "39240",
        "37860", "41515", "44020", "47190", "61230", "55080"),
        "1", {"2024-01": None, "2024-02": None, "2024-11": "76000", "2024-12": "74000",
              "2025-05": None, "2025-11": "52000"}),
    Line(ACME, "email", _m(
        "18240", "17650", "19020", "18710", "19480", "18930",
        "20150", "19760", "21030", "21480", "24960", "23110",
        "19870", "18940", "19360", "18420", "18850", "17990",
        "18260", "17540", "18780", "19120", "22640", "21350"),
        "1", {"2024-01": None, "2024-02": None, "2025-05": None}),
    Line(ACME, "chat", _m(
        "12480", "13950", "14620", "15000", "15870", "16940",
        "17400", "18150", "19300", "21050", "26400", "24900",
        "22300", "21800", "23600", "25000", "26100", "25800",
        "27300", "27900", "28400", "29100", "33500", "31200"),
        "1", {"2024-01": None, "2024-02": None, "2025-05": None}),
    Line(NORTHWIND, "fte_support", _m(
        "40.00", "40.00", "41.50", "41.50", "42.00", "42.00",
        "43.25", "43.25", "42.50", "41.50", "42.00", "38.75",
        "41.00", "41.00", "42.50", "43.00", "44.50", "44.50",
        "45.00", "43.75", "43.75", "44.00", "44.00", "42.25"),
        "0.25", {"2024-01": None}),
    Line(NORTHWIND, "document_processing", _m(
        "168420", "161950", "176300", "172880", "180000", "174610",
        "169240", "158730", "181560", "186020", "183470", "171290",
        "178940", "175310", "189620", "184070", "187500", "181230",
        "176880", "165410", "190360", "194720", "192050", "180640"),
        "10", {"2024-01": None}),
    Line(NORTHWIND, "mi_reporting", _m(
        "38", "36", "44", "40", "52", "47",
        "41", "0", "58", "63", "71", "96",
        "45", "39.5", "48", "42", "55", "61",
        "44", "24", "66", "74", "82", "88"),
        "0.5", {"2024-01": None, "2024-08": "0"}),
    Line(FABRIKAM, "voice", _m(
        "112400", "98150", "101320", "96480", "93210", "90070",
        "88340", "84000", "99260", "104530", "118400", "109180",
        "121300", "102470", "97310", "92640", "89120", "107050",
        "86240", "79500", "95180", "98360", "112000", "104220"),
        "10", {"2024-01": None, "2024-11": "101000", "2025-01": "104000", "2025-06": None,
               "2025-11": "99000"}),
    Line(FABRIKAM, "tech_support", _m(
        "291407", "198760.5", "276333", "283915", "301227", "200000",
        "268451.5", "259873", "312649", "328201", "361905.5", "331117",
        "372481", "329563", "318207", "306781.5", "297335", "350000",
        "287413", "271059", "322947", "326611", "358227.5", "331999"),
        "100", {"2024-01": None, "2025-06": None}),
]
# fmt: on


def make_volumes(rng: Rng) -> pa.Table:
    rows: dict[str, list] = {k: [] for k in ("c", "s", "p", "u", "f")}
    for line in VOLUME_LINES:
        quantum = D(line.forecast_scale)
        for period, units_s in zip(MONTHS, line.units, strict=True):
            units = D(units_s)
            # the plan is within -6%..+6% of actual, so units never exceed it by 10%
            deviation = D(f"{rng.random() * 0.12 - 0.06:.4f}")
            if ym(period) in line.forecasts:
                explicit = line.forecasts[ym(period)]
                forecast = None if explicit is None else D(explicit)
            else:
                forecast = (units * (1 + deviation) / quantum).quantize(
                    D(1), rounding=ROUND_HALF_UP
                ) * quantum
            rows["c"].append(line.contract_id)
            rows["s"].append(line.service_line_id)
            rows["p"].append(period)
            rows["u"].append(q6(units))
            rows["f"].append(None if forecast is None else q6(forecast))
    schema = pa.schema(
        [
            pa.field("contract_id", pa.string(), nullable=False),
            pa.field("service_line_id", pa.string(), nullable=False),
            pa.field("period", pa.date32(), nullable=False),
            pa.field("units", DEC, nullable=False),
            pa.field("forecast_units", DEC),
        ]
    )
    return pa.Table.from_arrays(
        [pa.array(rows[k], type=f.type) for k, f in zip("cspuf", schema, strict=True)],
        schema=schema,
    )


def units_of(contract_id: str, service_line_id: str) -> list[Decimal]:
    for line in VOLUME_LINES:
        if (line.contract_id, line.service_line_id) == (contract_id, service_line_id):
            return [D(u) for u in line.units]
    raise KeyError((contract_id, service_line_id))


# --------------------------------------------------------------------------------------------
# KPIs (input KPIs only: FABRIKAM's sl_80_20 is measured from interactions)
# --------------------------------------------------------------------------------------------

# fmt: off
KPI_VALUES: dict[tuple[str, str], list[str]] = {
    (ACME, "sl_80_20"): _m(
        "0.812", "0.774", "0.800", "0.815", "0.821", "0.826",
        "0.788", "0.771", "0.783", "0.809", "0.741", "0.812",
        "0.830", "0.825", "0.836", "0.841", "0.848", "0.853",
        "0.839", "0.810", "0.827", "0.805", "0.826", "0.831"),
    (ACME, "abandon_rate"): _m(
        "0.041", "0.047", "0.044", "0.039", "0.036", "0.038",
        "0.052", "0.063", "0.071", "0.043", "0.058", "0.046",
        "0.040", "0.042", "0.039", "0.037", "0.034", "0.033",
        "0.035", "0.050", "0.041", "0.055", "0.049", "0.044"),
    (ACME, "email_sla_24h"): _m(
        "0.968", "0.972", "0.941", "0.975", "0.981", "0.977",
        "0.969", "0.962", "0.958", "0.971", "0.953", "0.918",
        "0.974", "0.979", "0.983", "0.976", "0.887", "0.946",
        "0.972", "0.968", "0.975", "0.981", "0.957", "0.964"),
    (ACME, "csat"): _m(
        "0.872", "0.866", "0.881", "0.889", "0.903", "0.907",
        "0.874", "0.861", "0.858", "0.884", "0.838", "0.879",
        "0.886", "0.846", "0.893", "0.912", "0.897", "0.921",
        "0.888", "0.903", "0.905", "0.894", "0.869", "0.882"),
    (NORTHWIND, "accuracy"): _m(
        "0.986", "0.989", "0.9785", "0.961", "0.984", "0.987",
        "0.990", "0.988", "0.985", "0.991", "0.987", "0.983",
        "0.986", "0.984", "0.982", "0.989", "0.990", "0.992",
        "0.988", "0.986", "0.975", "0.987", "0.989", "0.991"),
    (NORTHWIND, "turnaround_48h"): _m(
        "0.962", "0.958", "0.955", "0.951", "0.967", "0.971",
        "0.964", "0.969", "0.957", "0.961", "0.953", "0.956",
        "0.912", "0.887", "0.846", "0.952", "0.963", "0.968",
        "0.971", "0.966", "0.959", "0.962", "0.957", "0.944"),
    (NORTHWIND, "backlog_days"): _m(
        "1.4", "1.6", "1.9", "2.4", "1.5", "1.3",
        "1.2", "1.7", "2.0", "1.6", "1.8", "1.9",
        "2.3", "3.8", "3.9", "1.7", "1.4", "1.2",
        "1.3", "1.5", "1.6", "1.8", "1.7", "1.9"),
    (NORTHWIND, "mi_report_on_time"): _m(
        "1", "1", "1", "1", "1", "1", "1", "1", "1", "0", "1", "1",
        "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1"),
    (FABRIKAM, "abandon_rate"): _m(
        "0.043", "0.048", "0.045", "0.052", "0.041", "0.039",
        "0.044", "0.038", "0.055", "0.071", "0.058", "0.047",
        "0.053", "0.049", "0.046", "0.042", "0.040", "0.124",
        "0.067", "0.044", "0.041", "0.043", "0.057", "0.045"),
    (FABRIKAM, "fcr"): _m(
        "0.741", "0.712", "0.733", "0.748", "0.752", "0.744",
        "0.739", "0.757", "0.731", "0.726", "0.749", "0.781",
        "0.754", "0.738", "0.762", "0.767", "0.771", "0.652",
        "0.729", "0.758", "0.785", "0.764", "0.782", "0.790"),
}

# Service level planned for FABRIKAM's measured sl_80_20 (A_T / (A + Ab - Ab_short)), before
# the outage window of 2025-02, which is generated on top and excluded by the exclusions input.
FABRIKAM_SL_PLAN = _m(
    "0.812", "0.826", "0.804", "0.785", "0.818", "0.830",
    "0.822", "0.810", "0.776", "0.762", "0.808", "0.815",
    "0.824", "0.812", "0.830", "0.835", "0.800", "0.630",
    "0.785", "0.817", "0.822", "0.810", "0.790", "0.820")
# fmt: on


def _ratio(value: Decimal, denominator: int) -> tuple[Decimal, Decimal, Decimal]:
    """(value, numerator, denominator) with value = numerator / denominator to 6 places."""
    numerator = (value * denominator).quantize(D(1), rounding=ROUND_HALF_UP)
    return q6(numerator / denominator), numerator, D(denominator)


def _abandons(units: Decimal, rate: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Answered calls = billed voice units; abandoned = offered - answered."""
    abandoned = (units * rate / (1 - rate)).quantize(D(1), rounding=ROUND_HALF_UP)
    offered = units + abandoned
    return q6(abandoned / offered), abandoned, offered


def make_kpis(rng: Rng) -> pa.Table:
    rows: dict[str, list] = {k: [] for k in ("c", "k", "p", "v", "n", "d")}
    for (contract_id, kpi_id), values in KPI_VALUES.items():
        for i, (period, value_s) in enumerate(zip(MONTHS, values, strict=True)):
            value = D(value_s)
            numerator: Decimal | None = None
            denominator: Decimal | None = None
            if kpi_id == "sl_80_20":  # answered within 20 s / answered
                voice = units_of(contract_id, "voice")[i]
                value, numerator, denominator = _ratio(value, int(voice))
            elif kpi_id == "abandon_rate":
                voice = units_of(contract_id, "voice")[i]
                value, numerator, denominator = _abandons(voice, value)
            elif kpi_id == "email_sla_24h":
                emails = units_of(contract_id, "email")[i]
                value, numerator, denominator = _ratio(value, int(emails))
            elif kpi_id == "csat":  # top-box responses / survey responses
                value, numerator, denominator = _ratio(value, rng.randint(2200, 2700))
            elif kpi_id == "accuracy":  # error-free cases / QA sample
                value, numerator, denominator = _ratio(value, 2000)
            # turnaround_48h, backlog_days, mi_report_on_time, fcr: value only
            rows["c"].append(contract_id)
            rows["k"].append(kpi_id)
            rows["p"].append(period)
            rows["v"].append(q6(value))
            rows["n"].append(None if numerator is None else q6(numerator))
            rows["d"].append(None if denominator is None else q6(denominator))
    schema = pa.schema(
        [
            pa.field("contract_id", pa.string(), nullable=False),
            pa.field("kpi_id", pa.string(), nullable=False),
            pa.field("period", pa.date32(), nullable=False),
            pa.field("value", DEC, nullable=False),
            pa.field("numerator", DEC),
            pa.field("denominator", DEC),
        ]
    )
    return pa.Table.from_arrays(
        [pa.array(rows[k], type=f.type) for k, f in zip("ckpvnd", schema, strict=True)],
        schema=schema,
    )


# --------------------------------------------------------------------------------------------
# exclusions
# --------------------------------------------------------------------------------------------

OUTAGE_START = datetime(2025, 2, 11, 9, 40)
OUTAGE_END = datetime(2025, 2, 11, 13, 15)

EXCLUSIONS = [
    (
        ACME,
        "sl_80_20",
        date(2024, 11, 1),
        "Relief event (schedule 7 clause 4.2): Black Friday demand 16% above the agreed forecast",
        None,
        None,
    ),
    (
        NORTHWIND,
        "backlog_days",
        date(2025, 2, 1),
        "Client-caused delay: Northwind document-intake system down 3-12 February",
        None,
        None,
    ),
    (
        FABRIKAM,
        None,
        date(2025, 2, 1),
        "Force majeure: upstream carrier network outage 09:40-13:15, calls in the window excluded",
        OUTAGE_START,
        OUTAGE_END,
    ),
]


def make_exclusions() -> pa.Table:
    schema = pa.schema(
        [
            pa.field("contract_id", pa.string(), nullable=False),
            pa.field("kpi_id", pa.string()),
            pa.field("period", pa.date32(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("starts_at", TS),
            pa.field("ends_at", TS),
        ]
    )
    columns = list(zip(*EXCLUSIONS, strict=True))
    return pa.Table.from_arrays(
        [pa.array(list(col), type=f.type) for col, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


# --------------------------------------------------------------------------------------------
# index values
# --------------------------------------------------------------------------------------------

# Month-on-month seasonal offsets (sum to zero over a year), January first.
CPI_SEASONAL = ["-0.006", "0.004", "0.003", "0.004", "0.001", "-0.001",
                "-0.003", "0.002", "-0.001", "0.000", "-0.002", "-0.001"]  # fmt: skip


def _cpi_trend(period: date) -> Decimal:
    """Monthly trend growth of UK_CPI: ~3.5%/yr to 2023-10, a ~5.4% spike to 2024-10, ~2.5%/yr."""
    if period <= date(2023, 10, 1):
        return D("0.0029")
    if period <= date(2024, 10, 1):
        return D("0.0044")
    return D("0.0021")


def _labour_trend(period: date) -> Decimal:
    """Monthly growth of LABOUR (earnings): ~6.8%/yr in 2023, ~6.2% in 2024, ~4% in 2025."""
    return {2023: D("0.0055"), 2024: D("0.0050"), 2025: D("0.0033")}[period.year]


def index_series() -> dict[str, list[Decimal]]:
    cpi = [D("126.0")]
    labour = [D("112.0")]
    for period in INDEX_MONTHS[1:]:
        growth = _cpi_trend(period) + D(CPI_SEASONAL[period.month - 1])
        cpi.append((cpi[-1] * (1 + growth)).quantize(D("0.1"), rounding=ROUND_HALF_UP))
        labour.append(
            (labour[-1] * (1 + _labour_trend(period))).quantize(D("0.1"), rounding=ROUND_HALF_UP)
        )
    return {"UK_CPI": cpi, "LABOUR": labour}


def make_index_values() -> pa.Table:
    series = index_series()
    ids, periods, values = [], [], []
    for index_id in ("LABOUR", "UK_CPI"):
        for period, value in zip(INDEX_MONTHS, series[index_id], strict=True):
            ids.append(index_id)
            periods.append(period)
            values.append(q6(value))
    schema = pa.schema(
        [
            pa.field("index_id", pa.string(), nullable=False),
            pa.field("period", pa.date32(), nullable=False),
            pa.field("value", DEC, nullable=False),
        ]
    )
    return pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.array(periods, pa.date32()), pa.array(values, DEC)],
        schema=schema,
    )


# --------------------------------------------------------------------------------------------
# pass-through costs (ACME telephony) and FX rates (NORTHWIND's offshore delivery, INR)
# --------------------------------------------------------------------------------------------

# ACME's carrier bill: 4.2p per inbound voice contact, to the penny; in the peak months of 2024-11
# and 2025-11 a second row for the extra SIP trunks rented for the season.
TELEPHONY_PER_CONTACT = D("0.042")
SIP_TRUNKS = {"2024-11": D("1850.00"), "2025-11": D("1850.00")}

# The EUR value of 1 INR in each month (the rate of the month before is read, lag 1). Against
# the base 0.011 and the 3% band (0.01067 .. 0.01133): above it in 2024-06..07 and 2025-09..11,
# below it in 2024-12..2025-02, inside it otherwise.
# fmt: off
INR_RATES = {
    "2023-12": "0.011020", "2024-01": "0.010980", "2024-02": "0.010940", "2024-03": "0.011050",
    "2024-04": "0.011120", "2024-05": "0.011210", "2024-06": "0.011390", "2024-07": "0.011420",
    "2024-08": "0.011260", "2024-09": "0.011150", "2024-10": "0.010870", "2024-11": "0.010720",
    "2024-12": "0.010590", "2025-01": "0.010480", "2025-02": "0.010610", "2025-03": "0.010760",
    "2025-04": "0.010850", "2025-05": "0.010930", "2025-06": "0.011040", "2025-07": "0.011180",
    "2025-08": "0.011290", "2025-09": "0.011360", "2025-10": "0.011450", "2025-11": "0.011510",
    "2025-12": "0.011470",
}
# fmt: on
DEC4 = pa.decimal128(38, 4)
DEC8 = pa.decimal128(38, 8)


def make_pass_through() -> pa.Table:
    rows: dict[str, list] = {k: [] for k in ("c", "p", "i", "d", "x", "r")}

    def add(period: date, description: str, cost: Decimal, reference: str) -> None:
        values = (ACME, period, "telephony", description, cost, reference)
        for k, v in zip("cpidxr", values, strict=True):
            rows[k].append(v)

    for period, units in zip(MONTHS, units_of(ACME, "voice"), strict=True):
        cost = (units * TELEPHONY_PER_CONTACT).quantize(D("0.01"), rounding=ROUND_HALF_UP)
        add(period, "Carrier charges: inbound minutes", cost, f"BT-{period:%Y%m}")
        if ym(period) in SIP_TRUNKS:
            add(period, "Seasonal SIP trunks", SIP_TRUNKS[ym(period)], f"BT-{period:%Y%m}-S")
    schema = pa.schema(
        [
            pa.field("contract_id", pa.string(), nullable=False),
            pa.field("period", pa.date32(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("description", pa.string()),
            pa.field("cost", DEC4, nullable=False),
            pa.field("reference", pa.string()),
        ]
    )
    return pa.Table.from_arrays(
        [pa.array(rows[k], type=f.type) for k, f in zip("cpidxr", schema, strict=True)],
        schema=schema,
    )


def make_fx_rates() -> pa.Table:
    periods = [date(int(k[:4]), int(k[5:]), 1) for k in INR_RATES]
    schema = pa.schema(
        [
            pa.field("currency", pa.string(), nullable=False),
            pa.field("period", pa.date32(), nullable=False),
            pa.field("rate", DEC8, nullable=False),
        ]
    )
    return pa.Table.from_arrays(
        [
            pa.array(["INR"] * len(periods), pa.string()),
            pa.array(periods, pa.date32()),
            pa.array([D(v) for v in INR_RATES.values()], DEC8),
        ],
        schema=schema,
    )


# --------------------------------------------------------------------------------------------
# interactions (FABRIKAM voice)
# --------------------------------------------------------------------------------------------


def _us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


@dataclass
class Interaction:
    arrived: int  # microseconds since the epoch
    answered: int | None
    abandoned: int | None
    handle_s: int | None
    fcr: bool | None
    csat: int | None


def _arrival(rng: Rng, period: date, avoid_outage: bool) -> int:
    days = calendar.monthrange(period.year, period.month)[1]
    while True:
        day = rng.randint(1, days)
        second = rng.randint(8 * 3600, 20 * 3600 - 1)
        moment = datetime(period.year, period.month, day) + timedelta(seconds=second)
        if not (avoid_outage and OUTAGE_START <= moment < OUTAGE_END + timedelta(minutes=1)):
            return _us(moment) + rng.randint(0, US - 1)


def _answered(rng: Rng, arrived: int, wait_us: int, fcr_rate: float) -> Interaction:
    handle = None
    if rng.chance(0.97):
        u = rng.random()
        handle = 90 + int(180 * (rng.random() + rng.random() + rng.random())) + int(600 * u**4)
    fcr = rng.chance(fcr_rate) if rng.chance(0.96) else None
    csat = None
    if rng.chance(0.22):
        csat = 1 + rng.pick([0.05, 0.07, 0.13, 0.35, 0.40])
    return Interaction(arrived, arrived + wait_us, None, handle, fcr, csat)


def _abandoned(arrived: int, wait_us: int) -> Interaction:
    return Interaction(arrived, None, arrived + wait_us, None, None, None)


def _month_interactions(rng: Rng, i: int, period: date) -> list[Interaction]:
    planned_sl = D(FABRIKAM_SL_PLAN[i])
    abandon_rate = D(KPI_VALUES[FABRIKAM, "abandon_rate"][i])
    fcr_rate = float(KPI_VALUES[FABRIKAM, "fcr"][i])
    exact = planned_sl == D("0.800")
    is_outage_month = period == date(OUTAGE_START.year, OUTAGE_START.month, 1)

    n = rng.randint(1420, 1580)
    while True:
        abandoned = int((n * abandon_rate).quantize(D(1), rounding=ROUND_HALF_UP))
        short = max(1, int((abandoned * D("0.3")).quantize(D(1), rounding=ROUND_HALF_UP)))
        answered = n - abandoned
        denominator = answered + abandoned - short
        if not exact or denominator % 5 == 0:
            break
        n += 1
    within = int((planned_sl * denominator).quantize(D(1), rounding=ROUND_HALF_UP))
    assert within <= answered
    sl = D(within) / D(denominator)
    assert (sl < D("0.80")) == (planned_sl < D("0.80")), (period, sl)

    def arrival() -> int:
        return _arrival(rng, period, avoid_outage=is_outage_month)

    rows: list[Interaction] = []
    for k in range(within):  # answered within 20 s; three exactly on 20 s
        wait = 20 * US if k < 3 else rng.randint(2, 19) * US + rng.randint(0, 899_999)
        rows.append(_answered(rng, arrival(), wait, fcr_rate))
    for k in range(answered - within):  # answered after 20 s; two exactly on 21 s
        if k < 2:
            wait = 21 * US
        else:
            u = rng.random()
            wait = (21 + int(380 * u * u)) * US + rng.randint(0, 999_999)
        rows.append(_answered(rng, arrival(), wait, fcr_rate))
    for _ in range(short):  # short abandons, 0.5 .. 4.9 s
        rows.append(_abandoned(arrival(), rng.randint(500_000, 4_900_000)))
    for _ in range(abandoned - short):  # abandons after 6 s (some of them within 20 s)
        rows.append(_abandoned(arrival(), (6 + rng.randint(0, 234)) * US + rng.randint(0, US - 1)))

    if is_outage_month:  # the carrier outage: long waits, many abandons
        window_s = int((OUTAGE_END - OUTAGE_START).total_seconds())
        for k in range(72):
            arrived = _us(OUTAGE_START) + rng.randint(60, window_s - 60) * US
            arrived += rng.randint(0, US - 1)
            if k < 30:
                rows.append(_abandoned(arrived, rng.randint(30, 600) * US))
            elif k < 34:
                rows.append(_answered(rng, arrived, rng.randint(10, 19) * US, fcr_rate))
            else:
                rows.append(_answered(rng, arrived, rng.randint(60, 900) * US, fcr_rate))
    return rows


def make_interactions(rng: Rng) -> pa.Table:
    rows: list[Interaction] = []
    for i, period in enumerate(MONTHS):
        rows.extend(sorted(_month_interactions(rng, i, period), key=lambda r: r.arrived))
    schema = pa.schema(
        [
            pa.field("contract_id", pa.string(), nullable=False),
            pa.field("service_line_id", pa.string(), nullable=False),
            pa.field("arrived_at", TS, nullable=False),
            pa.field("answered_at", TS),
            pa.field("abandoned_at", TS),
            pa.field("handle_s", pa.int32()),
            pa.field("first_contact_resolved", pa.bool_()),
            pa.field("csat", pa.int8()),
        ]
    )
    n = len(rows)
    return pa.Table.from_arrays(
        [
            pa.array([FABRIKAM] * n, pa.string()),
            pa.array(["voice"] * n, pa.string()),
            pa.array([r.arrived for r in rows], TS),
            pa.array([r.answered for r in rows], TS),
            pa.array([r.abandoned for r in rows], TS),
            pa.array([r.handle_s for r in rows], pa.int32()),
            pa.array([r.fcr for r in rows], pa.bool_()),
            pa.array([r.csat for r in rows], pa.int8()),
        ],
        schema=schema,
    )


# --------------------------------------------------------------------------------------------
# vendor invoices (built from the engine's expected invoice lines)
# --------------------------------------------------------------------------------------------

# The provider's billing mistakes in the sample portfolio. Each rule names a contract, a month and
# the line keys it may hit, in order of preference (the first one the engine produced is used).
# A rule is skipped when `expected` has no lines for its contract and month, and fails loudly when
# the month is there but none of its line keys is (the engine's line keys have drifted).
STALE_RATE = [  # the provider forgot the January 2025 CPI uplift on email: base rate 1.65
    (ACME, "2025-01", ("usage:email",), D("1.65"), ROUND_HALF_UP),
    # ... and in December 2025 billed email at the new base rate without the uplift
    (ACME, "2025-12", ("usage:email",), D("1.55"), ROUND_HALF_UP),
]
EXTRA_QUANTITY = [  # the provider billed 1.5 FTE more than were deployed
    (NORTHWIND, "2024-10", ("usage:fte_support",), D("1.5"), ROUND_HALF_UP),
    (NORTHWIND, "2025-12", ("usage:fte_support",), D("0.5"), ROUND_HALF_UP),
]
AMOUNT_NUDGE = [  # a 0.50 rounding difference, inside the 1.00 tolerance
    (FABRIKAM, "2024-06", ("usage:voice:band2", "usage:voice"), D("0.50")),
    (FABRIKAM, "2025-12", ("usage:voice:band2", "usage:voice"), D("0.50")),
]
NOT_BILLED = [  # the provider left the platform licence off its May 2025 invoice
    (NORTHWIND, "2025-05", ("fixed:platform_licence",)),
]
UNEXPECTED = [  # (contract, YYYY-MM, line_key, description, quantity, rate, amount)
    (
        ACME,
        "2024-12",
        "expenses:travel",
        "Travel and subsistence: peak-season site visit, Leeds",
        D("1"),
        D("842.60"),
        D("842.60"),
    ),
]
CREDITS_OMITTED = [
    (ACME, "2024-08"),
    (FABRIKAM, "2024-10"),
    (FABRIKAM, "2025-11"),
]  # service credits left off


def _pick(rows: list[dict], contract_id: str, month: str, keys: tuple[str, ...]) -> dict | None:
    """The row of the first of `keys` billed for that contract and month (None: month absent)."""
    month_rows = [r for r in rows if r["contract_id"] == contract_id and ym(r["period"]) == month]
    if not month_rows:
        return None
    for key in keys:
        for row in month_rows:
            if row["line_key"] == key:
                return row
    raise ValueError(f"{contract_id} {month}: expected invoice has none of the lines {keys}")


def make_vendor_invoices(expected: polars.DataFrame) -> polars.DataFrame:
    """The provider's invoice rows for the sample portfolio, from the engine's expected lines.

    `expected` has contract_id, period (date), line_key, description, quantity, rate, amount
    (decimals; quantity and rate nullable). The result is a faithful copy with invoice_id
    `INV-<contract>-<YYYYMM>`, plus the discrepancies above: a stale rate, a volume over-bill, a
    0.50 rounding difference, a missing line, an unexpected line and omitted credit lines.
    Column types follow `expected`; rows are sorted by contract_id, period, line_key.
    """
    import polars as pl

    columns = ["contract_id", "period", "line_key", "description", "quantity", "rate", "amount"]
    dtypes = {c: expected.schema[c] for c in columns}
    rows = expected.select(columns).sort(["contract_id", "period", "line_key"]).to_dicts()

    for contract_id, month, keys, rate, mode in STALE_RATE:
        row = _pick(rows, contract_id, month, keys)
        if row is not None:
            row["rate"] = rate
            row["amount"] = (row["quantity"] * rate).quantize(D("0.01"), rounding=mode)
    for contract_id, month, keys, extra, mode in EXTRA_QUANTITY:
        row = _pick(rows, contract_id, month, keys)
        if row is not None:
            row["quantity"] += extra
            row["amount"] = (row["quantity"] * row["rate"]).quantize(D("0.01"), rounding=mode)
    for contract_id, month, keys, nudge in AMOUNT_NUDGE:
        row = _pick(rows, contract_id, month, keys)
        if row is not None:
            row["amount"] += nudge
    dropped = [_pick(rows, contract_id, month, keys) for contract_id, month, keys in NOT_BILLED]
    rows = [
        r
        for r in rows
        if not any(r is d for d in dropped)
        and not (
            (r["contract_id"], ym(r["period"])) in CREDITS_OMITTED
            and r["line_key"].startswith("credit:")
        )
    ]
    periods = {(r["contract_id"], ym(r["period"])): r["period"] for r in rows}
    for contract_id, month, line_key, description, quantity, rate, amount in UNEXPECTED:
        if (contract_id, month) in periods:
            rows.append(
                {
                    "contract_id": contract_id,
                    "period": periods[contract_id, month],
                    "line_key": line_key,
                    "description": description,
                    "quantity": quantity,
                    "rate": rate,
                    "amount": amount,
                }
            )
    for row in rows:
        row["invoice_id"] = f"INV-{row['contract_id']}-{row['period']:%Y%m}"
    order = ["contract_id", "period", "invoice_id", *columns[2:]]
    schema = {"invoice_id": pl.String(), **dtypes}
    frame = pl.DataFrame(rows, schema={c: schema[c] for c in order}, orient="row")
    return frame.sort(["contract_id", "period", "line_key"])


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (data_samples/)")
    parser.add_argument(
        "--expected",
        type=Path,
        help="Parquet of expected invoice lines: also write vendor_invoices/ from it",
    )
    args = parser.parse_args(argv)
    out: Path = args.out

    rng = Rng(SEED)
    write(make_volumes(rng), out / "volumes" / "volumes.parquet")
    write(make_kpis(rng), out / "kpis" / "kpis.parquet")
    write(make_exclusions(), out / "exclusions" / "exclusions.parquet")
    write(make_index_values(), out / "index_values" / "index_values.parquet")
    write(make_interactions(rng), out / "interactions" / "interactions.parquet")
    write(make_pass_through(), out / "pass_through" / "pass_through.parquet")
    write(make_fx_rates(), out / "fx_rates" / "fx_rates.parquet")
    import polars as pl

    expected = pl.read_parquet(args.expected) if args.expected is not None else settle_expected(out)
    invoices = make_vendor_invoices(expected)
    write(invoices.to_arrow(), out / "vendor_invoices" / "vendor_invoices.parquet")
    print(f"sample inputs written to {out}")


def settle_expected(data_dir: Path) -> polars.DataFrame:
    """The engine's invoice lines for every sample month, as known when the provider issued them.

    The provider copies what the contract said was due when it invoiced. Months up to 2025-06
    were invoiced and closed at the 2025-07-10 month-end, before the gain-share rebasing (agreed
    2025-08-20, effective 2025-04) was known: their lines, June's Q2 gain-share included, are
    settled as known on that date. The July 2025 invoice was issued after the rebasing was agreed,
    so from July on the lines are today's, and July carries the restated Q2 as an adjustment.
    This is the month-end history `make demo` replays.
    """
    import datetime as dt
    import sys
    import tempfile

    import duckdb
    import polars as pl

    sys.path.insert(0, str(HERE.parent))
    from pipelines import engine, workflow

    contracts = HERE.parent / "contracts_config"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "expected.duckdb"
        closed = engine.RunRequest(
            dt.date(2024, 1, 1), dt.date(2025, 6, 1), as_known_at=dt.date(2025, 7, 10)
        )
        engine.settle(contracts, data_dir, db, closed)
        # the provider's invoices do not exist yet: every exception is approved, as the demo does
        workflow.approve(db, dt.date(2024, 1, 1), dt.date(2025, 6, 1), by="make_samples")
        engine.close(db, dt.date(2024, 1, 1), to=dt.date(2025, 6, 1))
        engine.settle(
            contracts, data_dir, db, engine.RunRequest(dt.date(2025, 7, 1), dt.date(2025, 12, 1))
        )
        with duckdb.connect(str(db), read_only=True) as con:
            arrow = con.sql(
                "SELECT contract_id, period, line_key, description, quantity, rate, amount "
                "FROM current_invoice_lines ORDER BY contract_id, period, line_key"
            ).to_arrow_table()
    return pl.from_arrow(arrow)


if __name__ == "__main__":
    main()
