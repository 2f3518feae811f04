"""The month-end workflow on the sample portfolio (SPEC 11): approve, dispute, close, resolve,
export and read-only SQL.

The state is `make demo`'s: 2024-01..2025-06 settled as known on 2025-07-10, approved and closed;
2025-07..2025-12 settled with today's terms. The sample provider invoices (data_samples/
make_samples.py) leave FABRIKAM-TELCO-01's November 2025 service credit for sl_80_20 off the
invoice, so that line is `not_billed` with difference 0 - (-31,260.00) = 31,260.00.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from pipelines import engine, workflow
from pipelines.cli import main
from pipelines.errors import SettleError
from pipelines.periods import parse_period

REPO = Path(__file__).resolve().parents[1]
SETTLE = Path(sys.executable).parent / "settle"
NOV, DEC = dt.date(2025, 11, 1), dt.date(2025, 12, 1)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("demo") / "settlement.duckdb"
    contracts, data = REPO / "contracts_config", REPO / "data_samples"
    engine.settle(
        contracts,
        data,
        db,
        engine.RunRequest(
            parse_period("2024-01"), parse_period("2025-06"), as_known_at=dt.date(2025, 7, 10)
        ),
    )
    workflow.approve(db, parse_period("2024-01"), parse_period("2025-06"), by="demo")
    engine.close(db, parse_period("2024-01"), to=parse_period("2025-06"), by="demo")
    engine.settle(
        contracts, data, db, engine.RunRequest(parse_period("2025-07"), parse_period("2025-12"))
    )
    return db


@pytest.fixture
def db(demo_db, tmp_path) -> Path:
    copy = tmp_path / "settlement.duckdb"
    shutil.copy(demo_db, copy)
    return copy


def cli(db: Path, *args: str):
    env = {
        "SETTLE_DB": str(db),
        "SETTLE_CONTRACTS": str(REPO / "contracts_config"),
        "SETTLE_DATA": str(REPO / "data_samples"),
    }
    return CliRunner().invoke(main, list(args), env=env, standalone_mode=False)


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def walkthrough_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- month-end walkthrough[^>]*-->\s*```bash\n(.*?)```", text, re.S).group(
        1
    )
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def test_readme_month_end_walkthrough_runs_as_written(db, tmp_path):
    commands = walkthrough_commands()
    assert len(commands) == 9
    env = {
        **os.environ,
        "SETTLE_DB": str(db),
        "SETTLE_CONTRACTS": str(REPO / "contracts_config"),
        "SETTLE_DATA": str(REPO / "data_samples"),
    }
    for command in commands:
        words = shlex.split(command, comments=True)
        assert words[0] == "settle"
        done = subprocess.run(
            [str(SETTLE), *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        expected = 1 if "refused" in command else 0
        assert done.returncode == expected, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr

    # the refused close named the blocked months and closed nothing before the approvals
    # November closed: two by approval, FABRIKAM because its only exception is disputed
    assert rows(
        db,
        "SELECT contract_id, closed_how, closed_by FROM period_status "
        "WHERE period = ? ORDER BY contract_id",
        [NOV],
    ) == [
        ("ACME-CONTOSO-01", "approved", "J. Doe"),
        ("FABRIKAM-TELCO-01", "disputed", "J. Doe"),
        ("NORTHWIND-BACKOFFICE-01", "approved", "J. Doe"),
    ]
    # the dispute's default amount is the line's difference: 0 - (-31,260.00)
    assert rows(db, "SELECT amount, status, outcome, resolution_amount FROM current_disputes") == [
        (Decimal("31260.0000"), "resolved", "settled", Decimal("-31260.0000"))
    ]
    # the settled amount is billed once, on FABRIKAM's next open month, December
    assert rows(
        db,
        "SELECT contract_id, period, line_type, amount FROM current_invoice_lines "
        "WHERE line_key = 'dispute:1'",
    ) == [("FABRIKAM-TELCO-01", DEC, "adjustment", Decimal("-31260.0000"))]

    journal = pl.read_csv(tmp_path / "exports" / "journal_2025-12.csv", infer_schema=False)
    assert journal["account"].null_count() == 0
    totals = dict(
        rows(
            db,
            "SELECT contract_id, sum(amount) FROM current_invoice_lines WHERE period = ? "
            "GROUP BY ALL",
            [DEC],
        )
    )
    by_invoice = {}
    for contract_id, amount in journal.select("contract_id", "amount").iter_rows():
        by_invoice[contract_id] = by_invoice.get(contract_id, Decimal(0)) + Decimal(amount)
    assert by_invoice == totals
    # FABRIKAM maps credit to 6105 and the dispute line (an adjustment) falls to its default
    posted = {
        r["line_key"]: r["account"]
        for r in journal.filter(pl.col("contract_id") == "FABRIKAM-TELCO-01").iter_rows(named=True)
    }
    assert posted["dispute:1"] == "6199"
    assert posted["usage:voice:band1"] == "6100"


def test_close_refuses_unapproved_months_and_names_them(db):
    before = rows(db, "SELECT * FROM period_status ORDER BY ALL")
    result = cli(db, "close", "--period", "2025-11", "--to", "2025-12")
    assert isinstance(result.exception, SettleError)
    message = str(result.exception)
    for contract in ("ACME-CONTOSO-01", "FABRIKAM-TELCO-01", "NORTHWIND-BACKOFFICE-01"):
        assert f"{contract} 2025-11" in message
        assert f"{contract} 2025-12" in message
    assert "credit:sl_80_20" in message  # FABRIKAM's undisputed exception
    assert rows(db, "SELECT * FROM period_status ORDER BY ALL") == before


def test_force_closes_and_records_it(db):
    result = cli(db, "close", "--period", "2025-11", "--contract", "ACME-CONTOSO-01", "--force")
    assert result.exception is None, result.output
    assert rows(
        db,
        "SELECT status, closed_how FROM period_status WHERE contract_id = ? AND period = ?",
        ["ACME-CONTOSO-01", NOV],
    ) == [("closed", "forced")]


def test_an_approval_lapses_when_the_month_is_settled_again(db):
    assert cli(db, "approve", "--period", "2025-12").exception is None
    statuses = {
        r[0] for r in rows(db, "SELECT status FROM current_run_periods WHERE period = ?", [DEC])
    }
    assert statuses == {"open"}
    assert cli(db, "run", "--period", "2025-12").exception is None
    result = cli(db, "status", "--period", "2025-12", "--json")
    months = json.loads(result.stdout)["months"]
    assert [m["status"] for m in months] == ["open", "open", "open"]
    assert isinstance(cli(db, "close", "--period", "2025-12").exception, SettleError)


def test_json_outputs_parse_and_carry_the_text_figures(db):
    text = cli(db, "status", "--period", "2025-11").stdout
    document = json.loads(cli(db, "status", "--period", "2025-11", "--json").stdout)
    months = document["months"]
    assert [m["contract_id"] for m in months] == [
        "ACME-CONTOSO-01",
        "FABRIKAM-TELCO-01",
        "NORTHWIND-BACKOFFICE-01",
    ]
    for m in months:
        assert m["period"] == "2025-11"
        due = Decimal(m["amount_due"])
        assert f"{due:,.2f}" in text  # the same figure as the table shows
    fabrikam = months[1]
    assert fabrikam["exceptions"] == 1 and Decimal(fabrikam["difference"]) == Decimal("31260")

    raised = json.loads(
        cli(
            db,
            "dispute",
            "--period",
            "2025-11",
            "--contract",
            "FABRIKAM-TELCO-01",
            "--line",
            "credit:sl_80_20",
            "--reason",
            "credit missing",
            "--json",
        ).stdout
    )
    assert raised["dispute"]["amount"] == "31260.0000"
    assert raised["dispute"]["dispute_id"] == 1

    approved = json.loads(cli(db, "approve", "--period", "2025-11", "--json").stdout)
    assert [a["note"] for a in approved["approvals"]] == ["approved"] * 3

    closed = json.loads(cli(db, "close", "--period", "2025-11", "--json").stdout)
    assert [c["how"] for c in closed["closed"]] == ["approved"] * 3

    validated = json.loads(cli(db, "validate", "--json").stdout)
    assert validated["ok"] is True and validated["counts"]["contracts"] == 3

    ran = json.loads(cli(db, "run", "--period", "2025-12", "--dry-run", "--json").stdout)
    assert ran["dry_run"] is True and ran["run_id"] is None
    assert {i["period"] for i in ran["invoices"]} == {"2025-12"}


def test_sql_is_read_only(db):
    before = db.read_bytes()
    count = rows(db, "SELECT count(*) FROM invoice_lines")
    result = cli(db, "sql", "delete from invoice_lines")
    assert isinstance(result.exception, SettleError)
    assert "read-only" in str(result.exception)
    assert rows(db, "SELECT count(*) FROM invoice_lines") == count
    assert db.read_bytes() == before
    shown = cli(db, "sql", "SELECT count(*) AS n FROM current_invoice_totals").stdout
    assert "n" in shown and "(1 row)" in shown


def test_sql_never_creates_a_database(tmp_path):
    missing = tmp_path / "nothing.duckdb"
    result = cli(missing, "sql", "SELECT 1")
    assert isinstance(result.exception, SettleError)
    assert not missing.exists()


def test_resolve_rules(db):
    cli(
        db,
        "dispute",
        "--period",
        "2025-11",
        "--contract",
        "FABRIKAM-TELCO-01",
        "--line",
        "credit:sl_80_20",
        "--reason",
        "credit missing",
    )
    wrong = cli(
        db, "resolve", "--dispute", "1", "--outcome", "rejected", "--amount", "5", "--note", "x"
    )
    assert "--amount goes with --outcome settled" in str(wrong.exception)
    assert (
        cli(db, "resolve", "--dispute", "1", "--outcome", "rejected", "--note", "no").exception
        is None
    )
    again = cli(db, "resolve", "--dispute", "1", "--outcome", "accepted", "--note", "x")
    assert "already resolved" in str(again.exception)
    # a rejected dispute bills nothing
    cli(db, "run", "--period", "2025-12")
    assert rows(db, "SELECT count(*) FROM invoice_lines WHERE line_key LIKE 'dispute:%'") == [(0,)]


def test_dispute_on_a_closed_month_stays_open_and_bills_on_the_next_open_month(db):
    # 2024-10 is closed; NORTHWIND's provider over-billed fte_support by 8,935.51 that month
    d = cli(
        db,
        "dispute",
        "--period",
        "2024-10",
        "--contract",
        "NORTHWIND-BACKOFFICE-01",
        "--line",
        "usage:fte_support",
        "--reason",
        "FTE above roster",
        "--json",
    )
    assert json.loads(d.stdout)["dispute"]["amount"] == "8935.5100"
    cli(
        db,
        "resolve",
        "--dispute",
        "1",
        "--outcome",
        "settled",
        "--amount",
        "-8935.51",
        "--note",
        "credited",
    )
    # the first open month after 2024-10 is 2025-07 (2024-11..2025-06 are closed)
    cli(db, "run", "--period", "2025-07", "--contract", "NORTHWIND-BACKOFFICE-01")
    assert rows(
        db, "SELECT period, amount FROM current_invoice_lines WHERE line_key = 'dispute:1'"
    ) == [(dt.date(2025, 7, 1), Decimal("-8935.5100"))]
    # settling a later month does not bill it again
    cli(db, "run", "--period", "2025-08", "--contract", "NORTHWIND-BACKOFFICE-01")
    assert rows(db, "SELECT count(*) FROM current_invoice_lines WHERE line_key = 'dispute:1'") == [
        (1,)
    ]


def test_journal_refuses_unmapped_line_types(tmp_path):
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO / "contracts_config", contracts)
    fabrikam = contracts / "fabrikam_telco_01.yaml"
    text = fabrikam.read_text()
    fabrikam.write_text(text.replace(', default: "6199"', ""))
    db = tmp_path / "s.duckdb"
    engine.settle(contracts, REPO / "data_samples", db, engine.RunRequest(NOV, NOV))
    result = cli(
        db,
        "export",
        "--period",
        "2025-11",
        "--what",
        "journal",
        "--format",
        "csv",
        "--out",
        str(tmp_path / "out"),
    )
    message = str(result.exception)
    assert "FABRIKAM-TELCO-01: fixed_fee" in message and "default" in message
    assert not (tmp_path / "out" / "journal_2025-11.csv").exists()


def test_exports_carry_exact_decimal_strings_and_stable_types(db, tmp_path):
    out = tmp_path / "out"
    for fmt_ in ("csv", "json", "parquet"):
        result = cli(
            db,
            "export",
            "--period",
            "2025-11",
            "--what",
            "invoice_lines",
            "--format",
            fmt_,
            "--out",
            str(out),
        )
        assert result.exception is None, result.output
    stored = {
        (c, k): a
        for c, k, a in rows(
            db,
            "SELECT contract_id, line_key, amount FROM current_invoice_lines WHERE period = ?",
            [NOV],
        )
    }
    csv = pl.read_csv(out / "invoice_lines_2025-11.csv", infer_schema=False)
    assert {
        (c, k): Decimal(a)
        for c, k, a in csv.select("contract_id", "line_key", "amount").iter_rows()
    } == stored
    doc = json.loads((out / "invoice_lines_2025-11.json").read_text())
    assert all(isinstance(r["amount"], str) for r in doc)
    assert {(r["contract_id"], r["line_key"]): Decimal(r["amount"]) for r in doc} == stored
    parquet = pl.read_parquet(out / "invoice_lines_2025-11.parquet")
    assert parquet.schema["amount"] == pl.Decimal(38, 4)
    assert parquet.schema["period"] == pl.Date


def test_a_request_outside_every_term_fails_before_computing(db):
    result = cli(db, "run", "--period", "2031-01")
    assert isinstance(result.exception, SettleError)
    assert "outside the term of every selected contract" in str(result.exception)


def test_a_run_over_closed_months_says_it_settled_the_next_open_month(db):
    result = cli(db, "run", "--period", "2025-06", "--contract", "ACME-CONTOSO-01", "--dry-run")
    assert result.exception is None, result.output
    assert "which this run therefore settled too: ACME-CONTOSO-01 2025-07" in result.stdout
