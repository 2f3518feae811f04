"""Write a portfolio-scale benchmark data set into bench/data/ (gitignored: never commit it).

    python bench/generate.py [--contracts 1000] [--interactions 10000000] [--out bench/data]

    bench/data/contracts/B0001.yaml ...      1,000 contracts, 2024-01..2026-12 (36 months)
    bench/data/inputs/volumes/ kpis/ exclusions/ index_values/ vendor_invoices/
    bench/data/inputs/interactions/period=2026-12/part-NNN.parquet   10M rows, one month

The contracts mix every pricing model (per_unit, graduated, volume, stairstep, package), minimums,
maximums, surge, itemised bands, mid-term re-pricing, indexation (chained, capped; base_relative
baskets), both credit regimes (at-risk pool with binary / linear / bands credits, repeat
multipliers, earn-back and bonuses; points), KPIs from input and measured from interactions
(every metric and abandon treatment), and gain-share (unit cost, total cost, volume; monthly,
quarterly and yearly windows; pain-share, caps, gates).

The provider's invoices are the engine's own expected lines (one settle of the whole history into a
scratch database) with a few percent of them mis-billed, so that reconciliation works as it does in
real life: mostly matches, some exceptions.

Deterministic for a given seed. Interactions are drawn with numpy and streamed to Parquet in
batches of a million rows, so memory stays flat whatever --interactions is.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipelines import engine  # noqa: E402
from pipelines.periods import add_months  # noqa: E402

SEED = 20260101
START = dt.date(2024, 1, 1)
MONTHS = [add_months(START, i) for i in range(36)]
INDEX_MONTHS = [add_months(dt.date(2023, 1, 1), i) for i in range(48)]
INTERACTION_MONTH = MONTHS[-1]

DEC = pa.decimal128(28, 6)
DEC8 = pa.decimal128(28, 8)
DEC4 = pa.decimal128(28, 4)
TS = pa.timestamp("us")
US = 1_000_000
BATCH = 1_000_000
ROWS_PER_FILE = 2_500_000

INDICES = {"UK_CPI": "0.0030", "EU_HICP": "0.0025", "US_CPI": "0.0028", "LABOUR": "0.0035"}


def D(value: object) -> Decimal:
    return Decimal(str(value))


def money(value: float, places: str = "0.01") -> Decimal:
    return D(f"{value:.6f}").quantize(D(places), rounding=ROUND_HALF_UP)


class _Dumper(yaml.SafeDumper):
    """Decimals as plain YAML numbers (the loader reads them back exactly from the text)."""

    def ignore_aliases(self, data: object) -> bool:
        return True  # contract files may not use anchors or aliases: write every value out


_Dumper.add_representer(
    Decimal, lambda d, v: d.represent_scalar("tag:yaml.org,2002:float", format(v, "f"))
)


def ym(period: dt.date) -> str:
    return f"{period:%Y-%m}"


# --------------------------------------------------------------------------- contracts


class Portfolio:
    """The generated contracts and what the input generators need to know about them."""

    def __init__(self, count: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.contracts: list[dict] = []
        self.lines: list[tuple[str, str, str, float]] = []  # contract, line, unit, volume
        self.input_kpis: list[tuple[str, str, str, Decimal]] = []  # contract, kpi, dir, target
        self.measured: list[tuple[str, str]] = []  # contract, kpi
        self.sl_mean_wait: dict[str, float] = {}  # contract -> mean answer wait (s)
        for i in range(1, count + 1):
            self.contracts.append(self._contract(f"B{i:04d}"))

    # ---- service lines and pricing
    def _bands(self, volume: float, rate: float, model: str) -> list[dict]:
        r = self.rng
        up1 = max(100, int(volume * r.uniform(0.5, 0.8) / 100) * 100)
        up2 = up1 + max(100, int(volume * r.uniform(0.4, 0.7) / 100) * 100)
        if model == "stairstep":
            base = money(volume * rate, "1")
            return [
                {"up_to": D(up1), "flat_fee": base},
                {"up_to": D(up2), "flat_fee": money(float(base) * 1.3, "1")},
                {"flat_fee": money(float(base) * 1.6, "1")},
            ]
        bands = [
            {"up_to": D(up1), "rate": money(rate, "0.0001")},
            {"up_to": D(up2), "rate": money(rate * 0.92, "0.0001")},
            {"rate": money(rate * 0.85, "0.0001")},
        ]
        if r.random() < 0.4:
            bands[1]["flat_fee"] = money(volume * rate * 0.02, "1")
        return bands

    def _pricing(self, volume: float, rate: float, unit: str) -> tuple[list[dict], bool]:
        r = self.rng
        model = r.choices(
            ["graduated", "volume", "per_unit", "stairstep", "package"], [35, 20, 25, 10, 10]
        )[0]
        entry: dict = {"effective_from": "2024-01", "model": model}
        itemise = False
        if model == "package":
            size = 100 if unit != "fte" else 5
            entry["package_size"] = D(size)
            entry["package_price"] = money(size * rate)
        elif model == "per_unit":
            entry["bands"] = [{"rate": money(rate, "0.0001")}]
        else:
            entry["bands"] = self._bands(volume, rate, model)
        if model in ("graduated", "per_unit", "volume") and r.random() < 0.25:
            entry["minimum_units"] = D(int(volume * 0.92))
        if model != "package" and r.random() < 0.15:
            entry["minimum_charge"] = money(volume * rate * 0.75, "1")
        if model in ("graduated", "volume", "per_unit") and r.random() < 0.3:
            entry["surge"] = {"over_forecast_pct": D("0.10"), "rate": money(rate * 1.2, "0.0001")}
        if model == "graduated" and r.random() < 0.3:
            itemise = True
        elif model in ("volume", "per_unit") and r.random() < 0.15:
            entry["maximum_charge"] = money(volume * rate * 1.15, "1")
            entry.pop("minimum_charge", None)
        entries = [entry]
        if r.random() < 0.2:  # re-priced mid-term, agreed before it took effect
            later = copy.deepcopy(entry)
            later["effective_from"] = "2025-07"
            later["agreed_on"] = "2025-06-15"
            later["reason"] = "rate card review"
            for band in later.get("bands", []):
                if "rate" in band:
                    band["rate"] = money(float(band["rate"]) * 0.97, "0.0001")
            entries.append(later)
        return entries, itemise

    def _line(self, cid: str, line_id: str, unit: str, volume: float, rate: float) -> dict:
        pricing, itemise = self._pricing(volume, rate, unit)
        self.lines.append((cid, line_id, unit, volume))
        line = {"id": line_id, "unit": unit, "pricing": pricing}
        if itemise:
            line["itemise_bands"] = True
        return line

    # ---- KPIs
    def _kpi(self, cid: str, kid: str, direction: str, target: Decimal, regime: str,
             allocation: Decimal, measure: dict | None) -> dict:  # fmt: skip
        r = self.rng
        kpi: dict = {"id": kid, "direction": direction, "target": [
            {"effective_from": "2024-01", "value": target}
        ]}  # fmt: skip
        worse = (
            (lambda x: target - x) if direction == "higher_is_better" else (lambda x: target + x)
        )
        if regime == "at_risk_pool":
            kpi["allocation_pct"] = allocation
            model = r.choice(["binary", "linear", "bands"])
            if model == "linear":
                kpi["minimum"] = worse(abs(target) * D("0.15") + D("0.01"))
            if model == "bands":
                kpi["credit"] = {"model": "bands", "bands": [
                    {"worse_than": worse(abs(target) * D("0.02")), "pct": D("0.5")},
                    {"worse_than": worse(abs(target) * D("0.06")), "pct": D("1.0")},
                ]}  # fmt: skip
            else:
                kpi["credit"] = {"model": model}
            if r.random() < 0.5:
                kpi["repeat_multiplier"] = D("2.0")
            if r.random() < 0.3:
                kpi["earn_back_months"] = 3
            if r.random() < 0.2:
                better = target + abs(target) * D("0.05") * (
                    1 if direction == "higher_is_better" else -1
                )
                kpi["bonus"] = {"at_or_better": better, "pct_of_charges": D("0.005")}
        else:
            kpi["points_bands"] = [
                {"worse_than": target, "points": D(1)},
                {"worse_than": worse(abs(target) * D("0.05")), "points": D(3)},
            ]
            kpi["repeat_multiplier"] = D("2.0")
        if measure is not None:
            kpi["measure"] = measure
            self.measured.append((cid, kid))
        else:
            self.input_kpis.append((cid, kid, direction, target))
        return kpi

    def _measure(self, lines: list[str]) -> tuple[str, str, Decimal, dict]:
        """A measured KPI on voice (or chat): kpi id, direction, target, measure."""
        r = self.rng
        line = "chat" if "chat" in lines and r.random() < 0.2 else "voice"
        kind = r.choices(
            ["sl", "abandon", "asa", "aht", "fcr", "csat_top", "csat"], [45, 15, 10, 8, 8, 8, 6]
        )[0]
        if kind == "sl":
            threshold = r.choice([20, 20, 20, 30, 60])
            abandons = r.choice(
                ["ignore", "count_as_failed", "exclude_short", "exclude_within_threshold",
                 "count_as_met"]
            )  # fmt: skip
            m = {"metric": "service_level", "service_line": line, "threshold_s": threshold,
                 "abandons": abandons}  # fmt: skip
            if abandons == "exclude_short":
                m["short_abandon_s"] = 5
            return f"sl_{threshold}", "higher_is_better", D("0.80"), m
        if kind == "abandon":
            m = {"metric": "abandon_rate", "service_line": line}
            if r.random() < 0.5:
                m.update(abandons="exclude_short", short_abandon_s=5)
            return "abandon_measured", "lower_is_better", D("0.08"), m
        if kind == "asa":
            return "asa", "lower_is_better", D(30), {"metric": "asa_s", "service_line": line}
        if kind == "aht":
            return "aht", "lower_is_better", D(420), {"metric": "aht_s", "service_line": line}
        if kind == "fcr":
            return "fcr_measured", "higher_is_better", D("0.70"), {
                "metric": "fcr", "service_line": line
            }  # fmt: skip
        if kind == "csat_top":
            return "csat_top_box", "higher_is_better", D("0.60"), {
                "metric": "csat", "service_line": line, "csat_top_box": 4
            }  # fmt: skip
        return "csat_mean", "higher_is_better", D("3.2"), {"metric": "csat", "service_line": line}

    # ---- one contract
    def _contract(self, cid: str) -> dict:
        r = self.rng
        voice_volume = r.uniform(20_000, 150_000)
        lines = [self._line(cid, "voice", "contact", voice_volume, r.uniform(1.8, 3.2))]
        if r.random() < 0.6:
            lines.append(
                self._line(cid, "chat", "contact", voice_volume * 0.3, r.uniform(1.2, 2.0))
            )
        if r.random() < 0.3:
            lines.append(self._line(cid, "email", "transaction", voice_volume * 0.2, 1.4))
        if r.random() < 0.3:
            unit = r.choice(["fte", "hour"])
            volume = r.uniform(20, 80) if unit == "fte" else r.uniform(500, 3000)
            rate = r.uniform(3500, 5200) if unit == "fte" else r.uniform(28, 45)
            lines.append(self._line(cid, "back_office", unit, volume, rate))
        line_ids = [line["id"] for line in lines]
        c: dict = {
            "contract_id": cid,
            "client": f"Client {cid}",
            "provider": "Contoso Customer Services",
            "currency": r.choice(["GBP", "GBP", "EUR", "USD"]),
            "start": "2024-01",
            "end": "2026-12",
            "rounding": {
                "mode": "half_even" if r.random() < 0.3 else "half_up",
                "amount_scale": 2,
                "rate_scale": 4,
            },  # fmt: skip
            "reconciliation": {"tolerance_abs": D("1.00"), "tolerance_pct": D("0.001")},
            "service_lines": lines,
        }
        fees = []
        for k in range(r.choice([0, 1, 1, 2])):
            fees.append({"id": f"fee_{k + 1}", "amount": money(r.uniform(2000, 25000)),
                         "indexed": r.random() < 0.6})  # fmt: skip
        if fees:
            c["fixed_fees"] = fees
        u = r.random()
        if u < 0.55:
            c["indexation"] = {
                "index_id": r.choice(["UK_CPI", "EU_HICP", "US_CPI"]), "base_period": "2023-10",
                "first_review": "2025-01", "review_every_months": 12, "lag_months": 3,
                "cap": D("0.05"), "floor": D("0.0"), "indexed_share": D("0.70"),
                "factor_scale": 6, "method": "chained",
            }  # fmt: skip
        elif u < 0.7:
            c["indexation"] = {
                "basket": [{"index_id": "LABOUR", "weight": D("0.50")},
                           {"index_id": "UK_CPI", "weight": D("0.20")}],
                "base_period": "2023-10", "first_review": "2025-01", "review_every_months": 12,
                "lag_months": 3, "cap": D("0.06"), "floor": D("0.0"), "method": "base_relative",
            }  # fmt: skip
        u = r.random()
        kpis: list[dict] = []
        if u < 0.85:
            regime = "points" if u < 0.15 else "at_risk_pool"
            count = r.choice([2, 3, 3, 4])
            allocation = (D(1) / count).quantize(D("0.01"), rounding="ROUND_DOWN")
            used: set[str] = set()
            for k in range(count):
                if regime == "at_risk_pool" and k < 2 and r.random() < 0.6:
                    kid, direction, target, measure = self._measure(line_ids)
                else:
                    kid, direction, target = r.choice([
                        ("sl_input", "higher_is_better", D("0.80")),
                        ("abandon_rate", "lower_is_better", D("0.06")),
                        ("quality", "higher_is_better", D("0.92")),
                        ("backlog_days", "lower_is_better", D("2.0")),
                        ("csat", "higher_is_better", D("0.85")),
                    ])  # fmt: skip
                    measure = None
                if kid in used:
                    continue
                used.add(kid)
                kpis.append(self._kpi(cid, kid, direction, target, regime, allocation, measure))
            credits: dict = {"regime": regime}
            if regime == "at_risk_pool":
                credits.update(at_risk_pct=D("0.10"), pool_pct=D("1.0"),
                               monthly_cap_pct=D("0.08"))  # fmt: skip
            else:
                credits.update(monthly_cap_pct=D("0.05"), points_to_credit_pct=[
                    {"from_points": D(1), "pct": D("0.01")},
                    {"from_points": D(4), "pct": D("0.03")},
                ])  # fmt: skip
            credits["kpis"] = kpis
            c["service_credits"] = credits
        if r.random() < 0.3:
            measure = r.choice(["unit_cost", "unit_cost", "total_cost", "volume"])
            rate = float(_first_rate(lines[0]))
            gs: dict = {"scope": ["voice"], "measure": measure,
                        "settle_every": r.choice(["month", "quarter", "year"])}  # fmt: skip
            if measure == "unit_cost":
                gs["baselines"] = [{"effective_from": "2024-01", "value": money(rate * 1.08)}]
                if r.random() < 0.3:
                    gs["baselines"].append(
                        {
                            "effective_from": "2025-04",
                            "value": money(rate * 1.04),
                            "agreed_on": "2025-03-20",
                            "reason": "rebased",
                        }
                    )
            elif measure == "total_cost":
                gs["baselines"] = [
                    {"effective_from": "2024-01", "value": money(voice_volume * rate * 1.05, "1")}
                ]
            else:
                gs["baselines"] = [
                    {"effective_from": "2024-01", "value": D(int(voice_volume * 1.05))}
                ]
                gs["value_per_unit"] = D("1.50")
            gs["threshold_pct"] = D("0.01")
            gs["tiers"] = [
                {"up_to": D(50000), "provider_share": D("0.50")},
                {"provider_share": D("0.30")},
            ]
            gs["pain_share"] = r.random() < 0.4
            if r.random() < 0.5:
                gs["cap"] = D(60000)
            gates = [k["id"] for k in kpis if k["id"].startswith("sl")]
            if gates and r.random() < 0.5:
                gs["gates"] = gates[:1]
            c["gain_share"] = gs
        return c


def _first_rate(line: dict) -> Decimal:
    p = line["pricing"][0]
    if p["model"] == "package":
        return p["package_price"] / p["package_size"]
    first = p["bands"][0]
    return first.get("rate") or first["flat_fee"] / first["up_to"]


def write_contracts(portfolio: Portfolio, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for c in portfolio.contracts:
        text = yaml.dump(c, Dumper=_Dumper, sort_keys=False, width=100)
        (folder / f"{c['contract_id'].lower()}.yaml").write_text(text)


# --------------------------------------------------------------------------- monthly inputs


def write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def make_volumes(p: Portfolio) -> pa.Table:
    r = random.Random(SEED + 1)
    rows: dict[str, list] = {k: [] for k in ("contract_id", "service_line_id", "period", "units",
                                              "forecast_units")}  # fmt: skip
    for cid, line, unit, volume in p.lines:
        quantum = D("0.01") if unit in ("fte", "hour") else D(1)
        for i, period in enumerate(MONTHS):
            season = 1 + 0.12 * ((i % 12) in (10, 11)) - 0.05 * ((i % 12) in (6, 7))
            units = D(f"{volume * season * r.uniform(0.85, 1.15):.6f}").quantize(quantum)
            forecast = None
            if r.random() < 0.8:
                forecast = D(f"{float(units) * r.uniform(0.85, 1.08):.6f}").quantize(quantum)
            rows["contract_id"].append(cid)
            rows["service_line_id"].append(line)
            rows["period"].append(period)
            rows["units"].append(units)
            rows["forecast_units"].append(forecast)
    types = [pa.string(), pa.string(), pa.date32(), DEC, DEC]
    return pa.table({k: pa.array(v, t) for (k, v), t in zip(rows.items(), types, strict=True)})


def make_kpis(p: Portfolio) -> pa.Table:
    r = random.Random(SEED + 2)
    rows: dict[str, list] = {k: [] for k in ("contract_id", "kpi_id", "period", "value")}
    for cid, kid, direction, target in p.input_kpis:
        for period in MONTHS:
            fail = r.random() < 0.12
            spread = float(abs(target)) * (r.uniform(0.01, 0.12) if fail else r.uniform(0, 0.06))
            sign = -1 if (direction == "higher_is_better") == fail else 1
            value = max(D(0), D(f"{float(target) + sign * spread:.4f}"))
            if target <= 1 and value > 1:
                value = D(1)
            rows["contract_id"].append(cid)
            rows["kpi_id"].append(kid)
            rows["period"].append(period)
            rows["value"].append(value)
    types = [pa.string(), pa.string(), pa.date32(), DEC]
    return pa.table({k: pa.array(v, t) for (k, v), t in zip(rows.items(), types, strict=True)})


def make_exclusions(p: Portfolio) -> pa.Table:
    """Whole months excused for some input KPIs, and outage windows in the interaction month."""
    r = random.Random(SEED + 3)
    rows: dict[str, list] = {k: [] for k in ("contract_id", "kpi_id", "period", "reason",
                                              "starts_at", "ends_at")}  # fmt: skip

    def add(cid, kid, period, reason, starts=None, ends=None):
        for k, v in zip(rows, (cid, kid, period, reason, starts, ends), strict=True):
            rows[k].append(v)

    for cid, kid, _, _ in p.input_kpis:
        if r.random() < 0.05:
            add(cid, kid, r.choice(MONTHS), "relief event")
    measured_contracts = sorted({cid for cid, _ in p.measured})
    for cid in r.sample(measured_contracts, min(40, len(measured_contracts))):
        day = r.randint(1, 27)
        starts = dt.datetime(INTERACTION_MONTH.year, INTERACTION_MONTH.month, day, r.randint(8, 16))
        ends = starts + dt.timedelta(minutes=r.choice([45, 90, 180]))
        kid = None
        if r.random() < 0.3:
            kid = next(k for c, k in p.measured if c == cid)
        add(cid, kid, INTERACTION_MONTH, "carrier outage", starts, ends)
        if r.random() < 0.25:  # an overlapping second window
            add(cid, None, INTERACTION_MONTH, "site evacuation", starts + dt.timedelta(minutes=30),
                ends + dt.timedelta(minutes=30))  # fmt: skip
    types = [pa.string(), pa.string(), pa.date32(), pa.string(), TS, TS]
    return pa.table({k: pa.array(v, t) for (k, v), t in zip(rows.items(), types, strict=True)})


def make_index_values() -> pa.Table:
    ids, periods, values = [], [], []
    for index_id, monthly in INDICES.items():
        value = D(100)
        for i, period in enumerate(INDEX_MONTHS):
            wobble = D("0.0008") * ((i * 7) % 5 - 2)
            value = (value * (1 + D(monthly) + wobble)).quantize(D("0.001"))
            ids.append(index_id)
            periods.append(period)
            values.append(value)
    return pa.table({"index_id": pa.array(ids), "period": pa.array(periods, pa.date32()),
                     "value": pa.array(values, DEC)})  # fmt: skip


# --------------------------------------------------------------------------- interactions

INTERACTION_SCHEMA = pa.schema(
    [
        ("contract_id", pa.string()),
        ("service_line_id", pa.string()),
        ("arrived_at", TS),
        ("answered_at", TS),
        ("abandoned_at", TS),
        ("handle_s", pa.int32()),
        ("first_contact_resolved", pa.bool_()),
        ("csat", pa.int8()),
    ]
)


def write_interactions(
    p: Portfolio, folder: Path, rows: int, seed: int, month: dt.date = INTERACTION_MONTH
) -> int:
    """`rows` interactions arriving in `month` (INTERACTION_MONTH unless told), spread over every
    contract's voice line (and chat where it exists), in files of ROWS_PER_FILE rows; returns the
    number of files."""
    rng = np.random.default_rng(seed)
    contracts = [c["contract_id"] for c in p.contracts]
    has_chat = np.array([any(s["id"] == "chat" for s in c["service_lines"]) for c in p.contracts])
    # each contract's queue: a mean wait that makes some of them miss 80% in 20 s
    mean_wait = rng.uniform(4, 16, len(contracts))
    size = rng.uniform(0.3, 1.7, len(contracts))
    weights = size / size.sum()
    ids = np.array(contracts, dtype=object)
    start = np.datetime64(month.isoformat(), "us").astype(np.int64)
    days = (add_months(month, 1) - month).days
    target = folder / f"period={ym(month)}"
    target.mkdir(parents=True, exist_ok=True)
    written, files, writer, in_file = 0, 0, None, 0
    while written < rows:
        n = min(BATCH, rows - written)
        who = rng.choice(len(contracts), n, p=weights)
        chat = has_chat[who] & (rng.random(n) < 0.25)
        day = rng.integers(0, days, n)
        second = rng.integers(8 * 3600, 20 * 3600, n)
        arrived = start + (day * 86_400 + second) * US + rng.integers(0, US, n)
        u = rng.random(n)
        answered = u < 0.89
        abandoned = (u >= 0.89) & (u < 0.97)  # the rest: neither (queued at the cut-off)
        wait = (rng.exponential(mean_wait[who]) * US).astype(np.int64)
        handle = rng.gamma(4.0, 85.0, n).astype(np.int32)
        fcr = rng.random(n) < 0.74
        csat = rng.integers(1, 6, n).astype(np.int8)
        table = pa.table(
            {
                "contract_id": pa.array(ids[who], pa.string()),
                "service_line_id": pa.array(np.where(chat, "chat", "voice"), pa.string()),
                "arrived_at": pa.array(arrived, TS),
                "answered_at": pa.array(arrived + wait, TS, mask=~answered),
                "abandoned_at": pa.array(arrived + wait, TS, mask=~abandoned),
                "handle_s": pa.array(handle, pa.int32(), mask=~answered | (rng.random(n) < 0.03)),
                "first_contact_resolved": pa.array(
                    fcr, pa.bool_(), mask=~answered | (rng.random(n) < 0.05)
                ),
                "csat": pa.array(csat, pa.int8(), mask=~answered | (rng.random(n) < 0.78)),
            },
            schema=INTERACTION_SCHEMA,
        )
        if writer is None:
            writer = pq.ParquetWriter(target / f"part-{files:03d}.parquet", INTERACTION_SCHEMA,
                                      compression="zstd")  # fmt: skip
            files += 1
        writer.write_table(table, row_group_size=BATCH)
        written += n
        in_file += n
        if in_file >= ROWS_PER_FILE:
            writer.close()
            writer, in_file = None, 0
    if writer is not None:
        writer.close()
    return files


# --------------------------------------------------------------------------- vendor invoices


def make_vendor_invoices(contracts_dir: Path, data_dir: Path) -> pa.Table:
    """The engine's expected lines for the whole history, with a few percent mis-billed."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "expected.duckdb"
        engine.settle(contracts_dir, data_dir, db, engine.RunRequest(MONTHS[0], MONTHS[-1]))
        with duckdb.connect(str(db), read_only=True) as con:
            lines = con.execute(
                "SELECT contract_id, period, line_key, description, quantity, rate, amount "
                "FROM current_invoice_lines WHERE line_type <> 'adjustment' "
                "ORDER BY contract_id, period, line_key"
            ).fetchall()
    r = random.Random(SEED + 4)
    columns = ("contract_id", "period", "invoice_id", "line_key", "description", "quantity",
               "rate", "amount")  # fmt: skip
    rows: dict[str, list] = {k: [] for k in columns}
    for cid, period, key, description, quantity, rate, amount in lines:
        u = r.random()
        if u < 0.01:
            continue  # not billed
        if u < 0.03 and quantity is not None and rate is not None:
            quantity = quantity + 1  # over-billed volume
            amount = (quantity * rate).quantize(D("0.01"), rounding=ROUND_HALF_UP)
        elif u < 0.04:
            amount = amount + D("0.40")  # a rounding difference inside tolerance
        values = (cid, period, f"INV-{cid}-{period:%Y%m}", key, description,
                  None if quantity is None else D(quantity).quantize(D("0.000001")),
                  None if rate is None else D(rate).quantize(D("0.00000001")),
                  D(amount).quantize(D("0.0001")))  # fmt: skip
        for k, v in zip(rows, values, strict=True):
            rows[k].append(v)
    types = [pa.string(), pa.date32(), pa.string(), pa.string(), pa.string(), DEC, DEC8, DEC4]
    return pa.table({k: pa.array(v, t) for (k, v), t in zip(rows.items(), types, strict=True)})


# --------------------------------------------------------------------------- main


def generate(out: Path, contracts: int, interactions: int, seed: int = SEED, log=print) -> None:
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    contracts_dir, data_dir = out / "contracts", out / "inputs"
    portfolio = Portfolio(contracts, seed)
    write_contracts(portfolio, contracts_dir)
    write(make_volumes(portfolio), data_dir / "volumes" / "volumes.parquet")
    write(make_kpis(portfolio), data_dir / "kpis" / "kpis.parquet")
    write(make_exclusions(portfolio), data_dir / "exclusions" / "exclusions.parquet")
    write(make_index_values(), data_dir / "index_values" / "index_values.parquet")
    log(f"contracts and monthly inputs written ({time.perf_counter() - started:.1f}s)")
    files = write_interactions(portfolio, data_dir / "interactions", interactions, seed)
    log(f"{interactions:,} interactions in {files} file(s) ({time.perf_counter() - started:.1f}s)")
    write(make_vendor_invoices(contracts_dir, data_dir),
          data_dir / "vendor_invoices" / "vendor_invoices.parquet")  # fmt: skip
    log(f"vendor invoices from the expected lines ({time.perf_counter() - started:.1f}s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--contracts", type=int, default=1000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    generate(args.out, args.contracts, args.interactions, args.seed)


if __name__ == "__main__":
    main()
