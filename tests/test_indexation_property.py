"""Property: every stored index factor can be rebuilt from the stored index values alone.

The rebuild below follows SPEC 4 word for word with Python `Decimal` and reads nothing but the
`index_factors` rows: reference values, weights, clamps, scale and the previous factor. README
states the one precision choice it relies on: an index ratio is rounded to 10 places.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from tests.conftest import Workspace
from tests.helpers import round_at

D = Decimal
q = round_at


def ratio(a: Decimal, b: Decimal) -> Decimal:
    return round_at(Fraction(a) / Fraction(b), 10, "half_up")


def rebuild(reviews: list[list[dict]], mode: str) -> list[Decimal]:
    """Factors from the stored rows of each review (one row per index of the basket)."""
    factors, previous = [], D(1)
    for rows in reviews:
        first = rows[0]
        scale, cap, floor = first["factor_scale"], first["cap"], first["floor"]
        assert first["previous_factor"] == previous  # the chain is the stored chain
        if first["method"] == "chained":
            step = D(1)
            for r in rows:
                change = ratio(r["reference_value"], r["previous_reference_value"]) - 1
                if floor is not None:
                    change = max(change, floor)
                if cap is not None:
                    change = min(change, cap)
                step += r["weight"] * change
            factor = q(previous * step, scale, mode)
        else:
            raw = (
                1
                - sum(r["weight"] for r in rows)
                + sum(
                    r["weight"] * ratio(r["reference_value"], r["previous_reference_value"])
                    for r in rows
                )
            )
            held = q(raw, scale, mode)
            if floor is not None:
                held = max(held, previous * (1 + floor))
            if cap is not None:
                held = min(held, previous * (1 + cap))
            factor = q(held, scale, mode)
        factors.append(factor)
        previous = factor
    return factors


MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025, 2026) for m in range(1, 13)]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["chained", "base_relative"]),
    basket=st.booleans(),
    cap=st.sampled_from([None, "0.03", "0.05"]),
    floor=st.sampled_from([None, "0", "-0.02"]),
    scale=st.sampled_from([4, 6]),
    mode=st.sampled_from(["half_up", "half_even"]),
    lag=st.integers(0, 3),
    cpi=st.lists(st.integers(9000, 15000), min_size=48, max_size=48),
    labour=st.lists(st.integers(9000, 15000), min_size=48, max_size=48),
)
def test_factors_rebuild_from_stored_index_values(
    tmp_path_factory, method, basket, cap, floor, scale, mode, lag, cpi, labour
):
    ws = Workspace(tmp_path_factory.mktemp("ix"))
    index = (
        "basket: [{index_id: LABOUR, weight: 0.5}, {index_id: CPI, weight: 0.25}]"
        if basket
        else "index_id: CPI\n  indexed_share: 0.7"
    )
    clamps = "".join(
        f"\n  {name}: {value}" for name, value in (("cap", cap), ("floor", floor)) if value
    )
    ws.contract(
        f"""
contract_id: IX
currency: GBP
start: 2024-01
rounding: {{mode: {mode}}}
service_lines:
  - id: voice
    pricing: [{{effective_from: 2024-01, model: per_unit, bands: [{{rate: 2.00}}]}}]
indexation:
  {index}
  base_period: 2023-12
  first_review: 2024-07
  review_every_months: 6
  lag_months: {lag}
  factor_scale: {scale}
  method: {method}{clamps}
""",
        name="ix.yaml",
    )
    ws.volumes([("IX", "voice", "2024-01", "1")])
    ws.index_values(
        [("CPI", m, str(D(v) / 100)) for m, v in zip(MONTHS, cpi, strict=True)]
        + [("LABOUR", m, str(D(v) / 100)) for m, v in zip(MONTHS, labour, strict=True)]
    )
    ws.settle("2024-01", to="2026-12")
    rows = ws.rows("SELECT * FROM current_index_factors ORDER BY period, index_id")
    reviews: dict = {}
    for r in rows:
        reviews.setdefault(r["period"], []).append(r)
    assert len(reviews) == 5  # 2024-07, 2025-01, 2025-07, 2026-01, 2026-07
    stored = [group[0]["factor"] for group in reviews.values()]
    assert rebuild(list(reviews.values()), mode) == stored
