"""Validated contracts -> relational term tables (`cfg_*`) that the settlement SQL joins against.

Python only reshapes here; it computes nothing and resolves no default (`config.py` hands over
terms with every default filled in, see `_resolve_defaults`). Each table is one grain of the
contract YAML, so the SQL can resolve effective-dated entries for every contract and month at
once (an ASOF join), and an auditor can read the terms in force next to the figures they produced
(the tables are stored with each run in `run_terms`). Numbers stay `Decimal` and land as
`DECIMAL(20, 6)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from .config import Contract, Kpi, LoadedContract

# DECIMAL(20, 6), not (38, 6): see the note on widths in inputs.py
NUM = pa.decimal128(20, 6)
STR = pa.string()
DATE = pa.date32()
INT = pa.int32()
BOOL = pa.bool_()

SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "cfg_contracts": {
        "contract_id": STR,
        "client": STR,
        "provider": STR,
        "currency": STR,
        "start_period": DATE,
        "end_period": DATE,
        "rounding_mode": STR,
        "amount_scale": INT,
        "rate_scale": INT,
        "tolerance_abs": NUM,
        "tolerance_pct": NUM,
        "config_file": STR,
        "config_sha256": STR,
        "has_credits": BOOL,
        "contract_order": INT,
        "contract_year_start": DATE,
    },
    "cfg_service_lines": {
        "contract_id": STR,
        "service_line_id": STR,
        "description": STR,
        "unit": STR,
        "indexed": BOOL,
        "line_order": INT,
    },
    "cfg_pricing": {
        "contract_id": STR,
        "service_line_id": STR,
        "effective_from": DATE,
        "agreed_on": DATE,
        "reason": STR,
        "entry": INT,
        "model": STR,
        "package_size": NUM,
        "package_price": NUM,
        "minimum_units": NUM,
        "minimum_charge": NUM,
        "maximum_charge": NUM,
        "surge_over_forecast_pct": NUM,
        "surge_rate": NUM,
        "itemise_bands": BOOL,
    },
    "cfg_bands": {
        "contract_id": STR,
        "service_line_id": STR,
        "effective_from": DATE,
        "band": INT,
        "lower_bound": NUM,
        "up_to": NUM,
        "rate": NUM,
        "flat_fee": NUM,
    },
    "cfg_fixed_fees": {
        "contract_id": STR,
        "fee_id": STR,
        "description": STR,
        "effective_from": DATE,
        "agreed_on": DATE,
        "reason": STR,
        "amount": NUM,
        "indexed": BOOL,
        "fee_order": INT,
    },
    "cfg_indexation": {
        "contract_id": STR,
        "base_period": DATE,
        "first_review": DATE,
        "review_every_months": INT,
        "lag_months": INT,
        "cap": NUM,
        "floor": NUM,
        "factor_scale": INT,
        "method": STR,
    },
    "cfg_index_weights": {"contract_id": STR, "index_id": STR, "weight": NUM},
    "cfg_credit_regimes": {
        "contract_id": STR,
        "regime": STR,
        "at_risk_pct": NUM,
        "pool_pct": NUM,
        "monthly_cap_pct": NUM,
        "annual_cap_pct": NUM,
        "annual_cap_amount": NUM,
    },
    "cfg_points_to_credit": {"contract_id": STR, "from_points": NUM, "pct": NUM},
    "cfg_kpis": {
        "contract_id": STR,
        "kpi_id": STR,
        "description": STR,
        "direction": STR,
        "minimum": NUM,
        "allocation_pct": NUM,
        "credit_model": STR,
        "repeat_multiplier": NUM,
        "earn_back_months": INT,
        "bonus_at_or_better": NUM,
        "bonus_pct": NUM,
        "critical_below": NUM,
        "no_data_fails": BOOL,
        "required": BOOL,
        "measured": BOOL,
        "kpi_order": INT,
    },
    "cfg_kpi_measures": {
        "contract_id": STR,
        "kpi_id": STR,
        "metric": STR,
        "service_line_id": STR,
        "threshold_s": INT,
        "abandons": STR,
        "short_abandon_s": INT,
        "csat_top_box": INT,
    },
    "cfg_kpi_targets": {
        "contract_id": STR,
        "kpi_id": STR,
        "effective_from": DATE,
        "agreed_on": DATE,
        "reason": STR,
        "target": NUM,
    },
    "cfg_kpi_bands": {
        "contract_id": STR,
        "kpi_id": STR,
        "band": INT,
        "worse_than": NUM,
        "pct": NUM,
        "points": NUM,
    },
    "cfg_gain_share": {
        "contract_id": STR,
        "measure": STR,
        "baseline_indexed": BOOL,
        "value_per_unit": NUM,
        "settle_every": STR,
        "threshold_pct": NUM,
        "pain_share": BOOL,
        "cap": NUM,
    },
    "cfg_gain_scope": {"contract_id": STR, "item_id": STR},
    "cfg_baselines": {
        "contract_id": STR,
        "effective_from": DATE,
        "agreed_on": DATE,
        "reason": STR,
        "value": NUM,
    },
    "cfg_gain_tiers": {
        "contract_id": STR,
        "kind": STR,
        "tier": INT,
        "lower_bound": NUM,
        "up_to": NUM,
        "provider_share": NUM,
    },
    "cfg_gain_gates": {"contract_id": STR, "kpi_id": STR},
    # Every effective-dated entry with a fingerprint of its terms: stored with each run
    # (run_terms), so a restatement can name the entries its closing run did not have.
    "cfg_commitments": {
        "contract_id": STR,
        "service_line_id": STR,
        "effective_from": DATE,
        "agreed_on": DATE,
        "over": STR,
        "minimum_units": NUM,
        "minimum_charge": NUM,
    },
    "cfg_pass_through": {
        "contract_id": STR,
        "item_id": STR,
        "description": STR,
        "margin_pct": NUM,
        "in_charges": BOOL,
        "item_order": INT,
    },
    "cfg_one_offs": {
        "contract_id": STR,
        "one_off_id": STR,
        "description": STR,
        "amount": NUM,
        "first_period": DATE,
        "instalments": INT,
        "indexed": BOOL,
        "in_charges": BOOL,
        "agreed_on": DATE,
        "item_order": INT,
    },
    "cfg_fx_sharing": {
        "contract_id": STR,
        "delivery_currency": STR,
        "base_rate": NUM,
        "band_pct": NUM,
        "client_share": NUM,
        "lag_months": INT,
    },
    "cfg_fx_lines": {"contract_id": STR, "service_line_id": STR},
    "cfg_accounting": {
        "contract_id": STR,
        "supplier_id": STR,
        "cost_centre": STR,
        "line_type": STR,
        "account": STR,
    },
    "cfg_dated_entries": {
        "contract_id": STR,
        "kind": STR,
        "item_id": STR,
        "effective_from": DATE,
        "agreed_on": DATE,
        "reason": STR,
        "fingerprint": STR,
    },
}


def _ladder(items: Iterable[Any]) -> list[tuple[int, Any, Any]]:
    """(1-based position, lower bound, item) for bands and tiers."""
    out, lower = [], 0
    for k, item in enumerate(items, start=1):
        out.append((k, lower, item))
        lower = item.up_to
    return out


def _indexed_items(c: Contract) -> set[str]:
    return set(c.indexation.applies_to or []) if c.indexation is not None else set()


def _kpi_rows(cid: str, k: Kpi, order: int) -> dict[str, Any]:
    return {
        "contract_id": cid,
        "kpi_id": k.id,
        "description": k.description,
        "direction": k.direction,
        "minimum": k.minimum,
        "allocation_pct": k.allocation_pct,
        "credit_model": k.credit.model,
        "repeat_multiplier": k.repeat_multiplier,
        "earn_back_months": k.earn_back_months,
        "bonus_at_or_better": k.bonus.at_or_better if k.bonus else None,
        "bonus_pct": k.bonus.pct_of_charges if k.bonus else None,
        "critical_below": k.critical_below,
        "no_data_fails": k.no_data == "fail",
        "required": k.required,
        "measured": k.measure is not None,
        "kpi_order": order,
    }


def _dated(cid: str, kind: str, item: str, entry: Any) -> dict[str, Any]:
    text = entry.model_dump_json(exclude={"agreed_on", "reason"})
    return {
        "contract_id": cid,
        "kind": kind,
        "item_id": item,
        "effective_from": entry.effective_from,
        "agreed_on": entry.agreed_on,
        "reason": entry.reason,
        "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16],
    }


def _dated_entries(cid: str, c: Contract) -> list[dict[str, Any]]:
    out = []
    for sl in c.service_lines:
        out += [_dated(cid, "pricing", sl.id, p) for p in sl.pricing]
    out += [_dated(cid, "fixed_fee", fee.id, fee) for fee in c.fixed_fees]
    for k in c.service_credits.kpis if c.service_credits else []:
        out += [_dated(cid, "target", k.id, t) for t in k.target]
    if c.gain_share is not None:
        out += [_dated(cid, "baseline", "gain_share", b) for b in c.gain_share.baselines]
    for sl in c.service_lines:
        out += [_dated(cid, "commitment", sl.id, cm) for cm in sl.commitments]
    for o in c.one_off_charges:
        text = o.model_dump_json(exclude={"agreed_on", "reason"})
        out.append(
            {
                "contract_id": cid,
                "kind": "one_off",
                "item_id": o.id,
                "effective_from": o.first_period,
                "agreed_on": o.agreed_on,
                "reason": o.reason,
                "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16],
            }
        )
    return out


def build_rows(contracts: list[LoadedContract]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
    for order, loaded in enumerate(contracts):
        c, cid = loaded.terms, loaded.contract_id
        indexed = _indexed_items(c)
        rows["cfg_dated_entries"] += _dated_entries(cid, c)
        rows["cfg_contracts"].append(
            {
                "contract_id": cid,
                "client": c.client,
                "provider": c.provider,
                "currency": c.currency,
                "start_period": c.start,
                "end_period": c.end,
                "rounding_mode": c.rounding.mode,
                "amount_scale": c.rounding.amount_scale,
                "rate_scale": c.rounding.rate_scale,
                "tolerance_abs": c.reconciliation.tolerance_abs,
                "tolerance_pct": c.reconciliation.tolerance_pct,
                "config_file": loaded.file,
                "config_sha256": loaded.sha256,
                "has_credits": bool(c.service_credits and c.service_credits.kpis),
                "contract_order": order,
                "contract_year_start": c.contract_year_start,
            }
        )
        for sl in c.service_lines:
            for cm in sl.commitments:
                rows["cfg_commitments"].append(
                    {
                        "contract_id": cid,
                        "service_line_id": sl.id,
                        "effective_from": cm.effective_from,
                        "agreed_on": cm.agreed_on,
                        "over": cm.over,
                        "minimum_units": cm.minimum_units,
                        "minimum_charge": cm.minimum_charge,
                    }
                )
        for item_order, pt in enumerate(c.pass_through):
            rows["cfg_pass_through"].append(
                {
                    "contract_id": cid,
                    "item_id": pt.id,
                    "description": pt.description,
                    "margin_pct": pt.margin_pct,
                    "in_charges": pt.in_charges,
                    "item_order": item_order,
                }
            )
        for item_order, o in enumerate(c.one_off_charges):
            rows["cfg_one_offs"].append(
                {
                    "contract_id": cid,
                    "one_off_id": o.id,
                    "description": o.description,
                    "amount": o.amount,
                    "first_period": o.first_period,
                    "instalments": o.instalments,
                    "indexed": o.indexed,
                    "in_charges": o.in_charges,
                    "agreed_on": o.agreed_on,
                    "item_order": item_order,
                }
            )
        if c.fx_sharing is not None:
            fx = c.fx_sharing
            rows["cfg_fx_sharing"].append(
                {
                    "contract_id": cid,
                    "delivery_currency": fx.delivery_currency,
                    "base_rate": fx.base_rate,
                    "band_pct": fx.band_pct,
                    "client_share": fx.client_share,
                    "lag_months": fx.lag_months,
                }
            )
            for line_id in fx.applies_to:
                rows["cfg_fx_lines"].append({"contract_id": cid, "service_line_id": line_id})
        for line_order, sl in enumerate(c.service_lines):
            rows["cfg_service_lines"].append(
                {
                    "contract_id": cid,
                    "service_line_id": sl.id,
                    "description": sl.description,
                    "unit": sl.unit,
                    "indexed": sl.id in indexed,
                    "line_order": line_order,
                }
            )
            for entry, p in enumerate(sl.pricing):
                key = {
                    "contract_id": cid,
                    "service_line_id": sl.id,
                    "effective_from": p.effective_from,
                }
                rows["cfg_pricing"].append(
                    {
                        **key,
                        "agreed_on": p.agreed_on,
                        "reason": p.reason,
                        "entry": entry,
                        "model": p.model,
                        "package_size": p.package_size,
                        "package_price": p.package_price,
                        "minimum_units": p.minimum_units,
                        "minimum_charge": p.minimum_charge,
                        "maximum_charge": p.maximum_charge,
                        "surge_over_forecast_pct": p.surge.over_forecast_pct if p.surge else None,
                        "surge_rate": p.surge.rate if p.surge else None,
                        "itemise_bands": p.itemise_bands,
                    }
                )
                for band, lower, b in _ladder(p.bands):
                    rows["cfg_bands"].append(
                        {
                            **key,
                            "band": band,
                            "lower_bound": lower,
                            "up_to": b.up_to,
                            "rate": b.rate,
                            "flat_fee": b.flat_fee,
                        }
                    )
        for fee_order, fee in enumerate(c.fixed_fees):
            rows["cfg_fixed_fees"].append(
                {
                    "contract_id": cid,
                    "fee_id": fee.id,
                    "description": fee.description,
                    "effective_from": fee.effective_from,
                    "agreed_on": fee.agreed_on,
                    "reason": fee.reason,
                    "amount": fee.amount,
                    "indexed": fee.id in indexed,
                    "fee_order": fee_order,
                }
            )
        if c.indexation is not None:
            ix = c.indexation
            rows["cfg_indexation"].append(
                {
                    "contract_id": cid,
                    "base_period": ix.base_period,
                    "first_review": ix.first_review,
                    "review_every_months": ix.review_every_months,
                    "lag_months": ix.lag_months,
                    "cap": ix.cap,
                    "floor": ix.floor,
                    "factor_scale": ix.factor_scale,
                    "method": ix.method,
                }
            )
            weights = (
                [(b.index_id, b.weight) for b in ix.basket]
                if ix.basket is not None
                else [(ix.index_id, ix.indexed_share)]
            )
            for index_id, weight in weights:
                rows["cfg_index_weights"].append(
                    {"contract_id": cid, "index_id": index_id, "weight": weight}
                )
        if c.service_credits is not None:
            sc = c.service_credits
            rows["cfg_credit_regimes"].append(
                {
                    "contract_id": cid,
                    "regime": sc.regime,
                    "at_risk_pct": sc.at_risk_pct,
                    "pool_pct": sc.pool_pct,
                    "monthly_cap_pct": sc.monthly_cap_pct,
                    "annual_cap_pct": sc.annual_cap_pct,
                    "annual_cap_amount": sc.annual_cap_amount,
                }
            )
            for step in sc.points_to_credit_pct or []:
                rows["cfg_points_to_credit"].append(
                    {"contract_id": cid, "from_points": step.from_points, "pct": step.pct}
                )
            for kpi_order, k in enumerate(sc.kpis):
                rows["cfg_kpis"].append(_kpi_rows(cid, k, kpi_order))
                for t in k.target:
                    rows["cfg_kpi_targets"].append(
                        {
                            "contract_id": cid,
                            "kpi_id": k.id,
                            "effective_from": t.effective_from,
                            "agreed_on": t.agreed_on,
                            "reason": t.reason,
                            "target": t.value,
                        }
                    )
                for band, b in enumerate(k.credit.bands or [], start=1):
                    rows["cfg_kpi_bands"].append(
                        {
                            "contract_id": cid,
                            "kpi_id": k.id,
                            "band": band,
                            "worse_than": b.worse_than,
                            "pct": b.pct,
                            "points": None,
                        }
                    )
                for band, b in enumerate(k.points_bands or [], start=1):
                    rows["cfg_kpi_bands"].append(
                        {
                            "contract_id": cid,
                            "kpi_id": k.id,
                            "band": band,
                            "worse_than": b.worse_than,
                            "pct": None,
                            "points": b.points,
                        }
                    )
                if k.measure is not None:
                    m = k.measure
                    rows["cfg_kpi_measures"].append(
                        {
                            "contract_id": cid,
                            "kpi_id": k.id,
                            "metric": m.metric,
                            "service_line_id": m.service_line,
                            "threshold_s": m.threshold_s,
                            "abandons": m.abandons,
                            "short_abandon_s": m.short_abandon_s,
                            "csat_top_box": m.csat_top_box,
                        }
                    )
        if c.gain_share is not None:
            gs = c.gain_share
            rows["cfg_gain_share"].append(
                {
                    "contract_id": cid,
                    "measure": gs.measure,
                    "baseline_indexed": gs.baseline_indexed,
                    "value_per_unit": gs.value_per_unit,
                    "settle_every": gs.settle_every,
                    "threshold_pct": gs.threshold_pct,
                    "pain_share": gs.pain_share,
                    "cap": gs.cap,
                }
            )
            rows["cfg_gain_scope"] += [{"contract_id": cid, "item_id": i} for i in gs.scope]
            rows["cfg_gain_gates"] += [{"contract_id": cid, "kpi_id": g} for g in gs.gates]
            for b in gs.baselines:
                rows["cfg_baselines"].append(
                    {
                        "contract_id": cid,
                        "effective_from": b.effective_from,
                        "agreed_on": b.agreed_on,
                        "reason": b.reason,
                        "value": b.value,
                    }
                )
            for kind, tiers in (("gain", gs.tiers), ("pain", gs.pain_tiers)):
                for tier, lower, t in _ladder(tiers):
                    rows["cfg_gain_tiers"].append(
                        {
                            "contract_id": cid,
                            "kind": kind,
                            "tier": tier,
                            "lower_bound": lower,
                            "up_to": t.up_to,
                            "provider_share": t.provider_share,
                        }
                    )
        if c.accounting is not None:
            for line_type, account in sorted(c.accounting.accounts.items()):
                rows["cfg_accounting"].append(
                    {
                        "contract_id": cid,
                        "supplier_id": c.accounting.supplier_id,
                        "cost_centre": c.accounting.cost_centre,
                        "line_type": line_type,
                        "account": account,
                    }
                )
    return rows


def build_tables(contracts: list[LoadedContract]) -> dict[str, pa.Table]:
    rows = build_rows(contracts)
    # column by column: Table.from_pylist takes a slow path per decimal value (4.2 s against
    # 0.16 s for 1,000 contracts' rows); a key a row lacks is NULL either way
    return {
        name: pa.table(
            {col: pa.array([r.get(col) for r in rows[name]], type=t) for col, t in schema.items()}
        )
        for name, schema in SCHEMAS.items()
    }
