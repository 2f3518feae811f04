"""The README's recipes, run as written on a fresh copy of the samples.

Between `<!-- recipe: NAME -->` and `<!-- end recipe -->` the README's fenced blocks are steps, in
order: a block after `<!-- file: PATH -->` is written to PATH, a block after `<!-- in: PATH -->`
must appear verbatim in PATH (the recipe quotes a real file), and every `bash` block is run with
bash -e in the copy, with the installed `settle` (next to sys.executable) first on the path. The
recipes run once for the module; the tests then check what each block printed and stored.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

Step = tuple[str, str | None, str, str]  # (kind: file | in | bash, path, language, text)


def recipes() -> dict[str, list[Step]]:
    text = README.read_text()
    found: dict[str, list[Step]] = {}
    for name, body in re.findall(
        r"<!-- recipe: ([\w-]+) -->\n(.*?)<!-- end recipe -->", text, re.S
    ):
        steps: list[Step] = []
        for kind, path, language, block in re.findall(
            r"(?:<!-- (file|in): (\S+) -->\n)?```(\w*)\n(.*?)```", body, re.S
        ):
            steps.append((kind or language, path or None, language, block))
        found[name] = steps
    return found


class Ran:
    """The workspace the recipes ran in, and what each bash block printed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "settlement.duckdb"
        self.out: dict[tuple[str, int], str] = {}
        self.runs_before: dict[tuple[str, int], int] = {}
        self.runs_after: dict[tuple[str, int], int] = {}

    def rows(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(sql).fetchall()

    def run_count(self) -> int:
        if not self.db.exists():
            return 0
        return self.rows("SELECT count(*) FROM settlement_runs")[0][0]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    root = tmp_path_factory.mktemp("recipes")
    shutil.copytree(REPO / "contracts_config", root / "contracts_config")
    shutil.copytree(
        REPO / "data_samples", root / "data_samples", ignore=shutil.ignore_patterns("*.py")
    )
    ran = Ran(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        SETTLE_CONTRACTS=str(root / "contracts_config"),
        SETTLE_DATA=str(root / "data_samples"),
        SETTLE_DB=str(ran.db),
    )
    for name, steps in recipes().items():
        n = 0
        for kind, path, _, text in steps:
            if kind == "file":
                (root / path).write_text(text)
            elif kind == "in":
                assert text in (root / path).read_text(), f"{name}: the quoted {path} drifted"
            elif kind == "bash":
                ran.runs_before[name, n] = ran.run_count()
                result = subprocess.run(
                    ["bash", "-e", "-c", text],
                    cwd=root,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert result.returncode == 0, f"{name} block {n}:\n{text}\n{result.stderr}"
                assert "Traceback" not in result.stderr
                ran.out[name, n] = result.stdout
                ran.runs_after[name, n] = ran.run_count()
                n += 1
    return ran


def test_the_readme_has_the_four_recipes():
    assert list(recipes()) == ["add-contract", "load-month", "rebase", "close"]


def test_add_a_contract(ran):
    # the three sample contracts and the new one
    assert "4 contracts" in ran.out["add-contract", 0]


def test_load_a_month(ran):
    out = ran.out["load-month", 0]
    # 1,234 contacts x 2.40 = 2,961.60 (per_unit, no indexation, exact: no rounding)
    assert re.search(r"EXAMPLE-01\s+2025-12\s+GBP\s+2,961\.60", out)
    assert "amount due 2,961.60 GBP" in out
    assert ran.rows(
        "SELECT line_key, quantity, rate, amount FROM current_invoice_lines "
        "WHERE contract_id = 'EXAMPLE-01'"
    ) == [("usage:voice", Decimal("1234"), Decimal("2.40"), Decimal("2961.60"))]
    # nothing billed by the provider yet: difference = billed - expected = 0 - 2,961.60
    assert ran.rows(
        "SELECT status, difference FROM current_invoice_reconciliation "
        "WHERE contract_id = 'EXAMPLE-01'"
    ) == [("not_billed", Decimal("-2961.60"))]


def test_rebase_closes_the_month_ends_as_they_stood(ran):
    # 2024-01..2025-06 is 18 months for each of the three sample contracts (EXAMPLE-01 starts
    # 2025-12): 54 contract-months closed
    assert ran.rows("SELECT count(*) FROM period_status WHERE status = 'closed'")[0][0] >= 54
    assert ran.rows(
        "SELECT count(*) FROM period_status WHERE status = 'closed' AND period <= '2025-06-01'"
    ) == [(54,)]


def test_rebase_preview_writes_nothing(ran):
    out = ran.out["rebase", 1]
    # the first dry run bills the restated June; the one as known before 2025-08-20 does not
    assert out.count("Adjustments for restated closed months:") == 1
    assert "ACME-CONTOSO-01 2025-06 gain_share: -17,560.07 billed in 2025-07" in out
    assert out.count("dry run: nothing written") == 2
    assert ran.runs_after["rebase", 1] == ran.runs_before["rebase", 1]


def test_rebase_bills_the_adjustment(ran):
    out = ran.out["rebase", 2]
    # June closed with the Q2 gain-share at the old baseline: savings 19,280.4925 x 0.50 (first
    # tier, up to 40,000) = 9,640.24625 -> 9,640.25 half up. Restated under the 2.30 baseline Q2
    # is an overrun of about 15,839.65, pain-shared at 0.50: -7,919.82. The adjustment is
    # restated - closed - previously adjusted = -7,919.82 - 9,640.25 - 0 = -17,560.07.
    assert "As closed: savings 19,280.4925 on contract baseline, provider amount 9,640.25" in out
    assert "= -7,919.82 - 9,640.25 - 0.00 = -17,560.07" in out
    assert ran.rows(
        "SELECT period, billed_in_period, line_key, closed_amount, previously_adjusted, "
        "restated_amount, delta FROM current_adjustments WHERE contract_id = 'ACME-CONTOSO-01'"
    ) == [
        (
            dt.date(2025, 6, 1),
            dt.date(2025, 7, 1),
            "gain_share",
            Decimal("9640.25"),
            Decimal("0"),
            Decimal("-7919.82"),
            Decimal("-17560.07"),
        )
    ]
    # the closed June invoice still carries its closing figure
    assert ran.rows(
        "SELECT amount FROM current_invoice_lines WHERE contract_id = 'ACME-CONTOSO-01' "
        "AND period = '2025-06-01' AND line_key = 'gain_share'"
    ) == [(Decimal("9640.25"),)]


def test_close_locks_the_month(ran):
    explained = ran.out["close", 0]
    assert "the month is open" in explained
    assert ran.rows(
        "SELECT count(*) FROM period_status WHERE period = '2025-07-01' AND status = 'closed'"
    ) == [(3,)]
    # the closed July is not settled again: the dry run settles August, with no new adjustment
    assert re.search(r"ACME-CONTOSO-01\s+2025-08", ran.out["close", 0])
    assert "Adjustments for restated closed months:" not in ran.out["close", 0]
    assert ran.runs_after["close", 0] == ran.runs_before["close", 0]
