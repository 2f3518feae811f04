"""The benchmark's yardstick and the run's memory settings.

bench/plain_loop.py is the loop a user would write by hand; the benchmark's ratio is only fair if
it settles the same lines as the engine, so it is checked here on a small generated portfolio, line
for line. DuckDB's memory limit and spill folder come from the environment."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import pytest

from pipelines import engine
from pipelines.config import Contract, Pricing
from pipelines.errors import SettleError

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import generate  # noqa: E402
import plain_loop  # noqa: E402


def test_the_plain_loop_settles_what_the_engine_settles_line_for_line(tmp_path):
    generate.generate(tmp_path, 25, 20_000, log=lambda _: None)
    contracts, data, db = tmp_path / "contracts", tmp_path / "inputs", tmp_path / "e.duckdb"
    engine.settle(contracts, data, db, engine.RunRequest(generate.MONTHS[0], generate.MONTHS[-1]))
    result = plain_loop.run(contracts, data, db, generate.MONTHS[-1])
    assert result["charge_differences"] == []
    assert result["credit_differences"] == []
    # not an empty comparison: 25 contracts x 36 months have a line each month at least
    assert result["lines"] >= 25 * 36
    assert result["credits"] > 0


def test_the_loop_prices_a_graduated_month_by_hand():
    p = Pricing.model_validate(
        {
            "effective_from": "2024-01",
            "model": "graduated",
            "bands": [{"up_to": 50000, "rate": "2.40"}, {"rate": "1.90"}],
            "surge": {"over_forecast_pct": "0.10", "rate": "2.90"},
        }
    )
    # 60,000 units, forecast 50,000: surge above 55,000, so 5,000 x 2.90 = 14,500.00; the banded
    # 55,000 are 50,000 x 2.40 + 5,000 x 1.90 = 120,000 + 9,500 = 129,500.00.
    lines = plain_loop.price_line(
        "voice", p, D(60000), D(50000), D(1), False, 2, 4, "half_up", False
    )
    assert lines == [("usage:voice", D("129500.00")), ("surge:voice", D("14500.00"))]


def test_the_loop_credits_a_measured_kpi_from_its_counts_not_its_shown_value():
    # B0280 of the 1,000-contract bench, 2026-12: 153 abandoned of 1,890 offered (shown 0.080952)
    # against target 0.08, minimum 0.102, allocation 0.25, at risk 10% of 364,634.41 charges.
    # Severity (153/1890 - 0.08) / 0.022 = (1/1050) / 0.022 = 10/231; the credit is
    # 36,463.441 x 0.25 x 10/231 = 91,158.6025 / 231 = 394.62598... -> 394.63 (half_up). The
    # shown 0.080952 would give 0.000952 / 0.022 x 9,115.86025 = 394.4717... -> 394.47.
    c = Contract.model_validate(
        {
            "contract_id": "T1", "client": "C", "provider": "P", "currency": "GBP",
            "start": "2026-01", "end": "2026-12",
            "rounding": {"mode": "half_up", "amount_scale": 2, "rate_scale": 4},
            "service_lines": [{"id": "chat", "unit": "contact", "pricing": [
                {"effective_from": "2026-01", "model": "per_unit", "bands": [{"rate": "1.00"}]}
            ]}],
            "service_credits": {
                "regime": "at_risk_pool", "at_risk_pct": "0.10", "monthly_cap_pct": "0.08",
                "kpis": [{
                    "id": "abandon", "direction": "lower_is_better",
                    "target": [{"effective_from": "2026-01", "value": "0.08"}],
                    "allocation_pct": "0.25", "minimum": "0.102", "credit": {"model": "linear"},
                }],
            },
        }
    )  # fmt: skip
    month = dt.date(2026, 12, 1)
    kpis = {("abandon", month): Fraction(153, 1890)}
    assert plain_loop.credits(c, month, D("364634.41"), kpis, set(), {}) == [
        ("abandon", D("394.63"))
    ]


def test_the_memory_limit_and_spill_folder_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SETTLE_MEMORY_LIMIT", "256MiB")
    monkeypatch.setenv("SETTLE_TEMP_DIR", str(tmp_path / "spill"))
    con = engine.connect_memory()
    limit, temp = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchone()
    con.close()
    assert limit == "256.0 MiB"
    assert temp == str(tmp_path / "spill")


def test_a_run_writes_under_the_default_limit_and_leaves_no_spill_folder(ws, monkeypatch):
    monkeypatch.delenv("SETTLE_MEMORY_LIMIT", raising=False)
    monkeypatch.delenv("SETTLE_TEMP_DIR", raising=False)
    # the documented default (README: 768MB)
    assert engine.memory_settings(ws.db)["memory_limit"] == "768MB"
    ws.contract(
        """
        contract_id: C1
        currency: GBP
        start: 2024-01
        service_lines:
          - id: voice
            pricing: [{effective_from: 2024-01, model: per_unit, bands: [{rate: 2.40}]}]
        """
    )
    ws.volumes([("C1", "voice", "2024-01", "100")])
    ws.settle("2024-01")
    assert ws.one("SELECT amount FROM current_invoice_lines") == D("240.00")  # 100 x 2.40
    assert not list(ws.db.parent.glob(".settle-spill-*"))


def test_a_bad_memory_limit_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("SETTLE_MEMORY_LIMIT", "lots")
    with pytest.raises(SettleError, match="SETTLE_MEMORY_LIMIT"):
        engine.connect_memory()


def test_the_engine_connections_draw_no_progress_bar_on_stdout():
    # DuckDB prints its progress bar to stdout during long queries; settle's stdout is its output
    con = engine.connect_memory()
    assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False
    con.close()
