"""Bad configs and bad inputs are refused through the command line, clearly and without harm.

Every case starts from a workspace whose database already holds a good month (settled once per
module and copied), breaks one thing, runs `settle run` (or `settle validate`) and expects:
exit code 1, one `error:` paragraph on stderr naming the file, the key path or column, the
offending rows (inputs) and the rule, no traceback, and the database file byte-for-byte unchanged.

The cases run the console script's own `entry()` in-process with `sys.argv` set, which is what the
installed `settle` executes, so that twenty cases do not pay twenty interpreter start-ups; a few
representative ones also run as real subprocesses of `.venv/bin/settle`.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Workspace
from tests.helpers import copy_workspace, database_unchanged, edit_file, entry_exits

SETTLE = Path(sys.executable).parent / "settle"

GOOD = """\
contract_id: ACME-01
currency: GBP
start: 2024-01
end: 2024-12
service_lines:
  - id: voice
    pricing:
      - effective_from: 2024-01
        model: graduated
        bands:
          - {up_to: 50000, rate: 2.40}
          - {up_to: 80000, rate: 2.10}
          - {rate: 1.90}
indexation:
  index_id: UK_CPI
  base_period: 2023-10
  first_review: 2024-04
  lag_months: 3
  applies_to: [voice]
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  pool_pct: 1.0
  kpis:
    - id: sl_80_20
      target: 0.80
      allocation_pct: 0.60
      measure: {metric: service_level, service_line: voice, threshold_s: 20}
    - id: abandon_rate
      direction: lower_is_better
      target: 0.05
      minimum: 0.10
      allocation_pct: 0.40
      credit: {model: linear}
gain_share:
  scope: [voice]
  baselines: [{effective_from: 2024-01, value: 2.55}]
  tiers: [{provider_share: 0.50}]
  gates: [sl_80_20]
"""

CONTRACT_FILE = "acme.yaml"


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    """A workspace with the good contract and inputs, January 2024 settled into the database."""
    template = Workspace(tmp_path_factory.mktemp("settled"))
    template.contract(GOOD, CONTRACT_FILE)
    template.volumes([("ACME-01", "voice", "2024-01", "1000")])
    template.kpis([("ACME-01", "abandon_rate", "2024-01", "0.04")])
    template.index_values([("UK_CPI", "2023-10", "100"), ("UK_CPI", "2024-01", "102")])
    template.settle("2024-01")
    assert template.one("SELECT count(*) FROM settlement_runs") == 1
    return template


@pytest.fixture
def good(ws, settled):
    """A fresh copy of the settled workspace."""
    copy_workspace(settled, ws)
    return ws


# --------------------------------------------------------------------------- breaking things


def edit_contract(old: str, new: str) -> Callable:
    return edit_file(CONTRACT_FILE, old, new)


def write_parquet(folder: str, columns: dict[str, pa.Array], name: str = "bad.parquet"):
    def apply(ws) -> None:
        pq.write_table(pa.table(columns), ws.data_dir / folder / name)

    return apply


def add_volumes(*rows: tuple) -> Callable:
    return lambda ws: ws.volumes(list(rows), "bad.parquet")


@dataclass
class Case:
    id: str
    breaks: Callable
    expect: list[str]  # pieces of the one error paragraph, in order
    period: str = "2024-02"
    command: str = "run"


CFG = f"contracts_config/{CONTRACT_FILE}"
VOL = "data/volumes/bad.parquet"

CASES = [
    # ---- contract configuration
    Case(
        "bands_out_of_order",
        edit_contract("- {rate: 1.90}", "- {up_to: 80000, rate: 2.00}\n          - {rate: 1.90}"),
        # the SPEC's own example, word for word
        [
            f"{CFG}: service_lines[0].pricing[0].bands[2]: "
            "up_to 80000 is not above the previous band's 80000"
        ],
    ),
    Case(
        "unknown_key_typo",
        edit_contract("  lag_months: 3", "  lag_month: 3"),
        [f"{CFG}: indexation.lag_month: ", "unknown key 'lag_month'", "did you mean lag_months?"],
    ),
    Case(
        "missing_required_key",
        edit_contract("currency: GBP\n", ""),
        [f"{CFG}: currency: ", "required key is missing"],
    ),
    Case(
        "wrong_enum_value",
        edit_contract("model: graduated", "model: tiered"),
        [f"{CFG}: service_lines[0].pricing[0].model: ", "'tiered'", "'graduated'", "'package'"],
    ),
    Case(
        "allocation_over_pool",
        edit_contract("allocation_pct: 0.40", "allocation_pct: 0.45"),
        # 0.60 + 0.45 = 1.05 > pool_pct 1.0
        [f"{CFG}: service_credits.kpis: ", "allocation_pct adds up to 1.05", "above pool_pct 1"],
    ),
    Case(
        "linear_credit_without_minimum",
        edit_contract("      minimum: 0.10\n", ""),
        [f"{CFG}: service_credits.kpis[1].minimum: ", "linear credit model needs minimum"],
    ),
    Case(
        "credit_bands_out_of_order",
        edit_contract(
            "credit: {model: linear}",
            "credit: {model: bands, bands: [{worse_than: 0.08, pct: 0.5}, "
            "{worse_than: 0.06, pct: 1.0}]}",
        ),
        # lower_is_better: a more severe band has a HIGHER worse_than; 0.06 after 0.08 is milder
        [
            f"{CFG}: service_credits.kpis[1].credit.bands[1].worse_than: ",
            "0.06 must be worse than the previous band's 0.08 (lower_is_better)",
        ],
    ),
    Case(
        "required_kpi_missing_from_the_inputs",
        edit_contract(
            "      direction: lower_is_better\n",
            "      direction: lower_is_better\n      required: true\n",
        ),
        # kpis/ holds abandon_rate for 2024-01 only; February is settled
        [
            "kpis/: column value: 1 row(s) break the rule 'a KPI with required: true has a value "
            "every settled month'; first: (contract_id=ACME-01, kpi_id=abandon_rate, "
            "period=2024-02)",
            "Add the rows to kpis/",
        ],
    ),
    Case(
        "gate_names_an_unknown_kpi",
        edit_contract("gates: [sl_80_20]", "gates: [sl_90_20]"),
        [f"{CFG}: gain_share.gates[0]: ", "sl_90_20 is not a KPI of this contract"],
    ),
    Case(
        "applies_to_names_an_unknown_line",
        edit_contract("applies_to: [voice]", "applies_to: [voice, chat]"),
        [f"{CFG}: indexation.applies_to[1]: ", "chat is neither a service line nor a fixed fee"],
    ),
    Case(
        "invalid_yaml",
        edit_contract("  index_id: UK_CPI", "  index_id: [UK_CPI"),
        # `index_id: [UK_CPI` on line 15 is only noticed at `base_period:` on line 16
        [f"{CFG}: line 16: ", "not valid YAML", "flow sequence that starts on line 15"],
    ),
    Case(
        "duplicate_contract_id_across_files",
        lambda ws: ws.contract(GOOD, "zz_copy.yaml"),
        [
            "contracts_config/zz_copy.yaml: contract_id: ",
            "ACME-01 is already defined in contracts_config/acme.yaml",
        ],
    ),
    Case(
        "capped_line_itemised_per_band",
        edit_contract(
            "model: graduated",
            "model: graduated\n        maximum_charge: 1000\n        itemise_bands: true",
        ),
        [f"{CFG}: service_lines[0].pricing[0].maximum_charge: ", "cannot be itemised"],
    ),
    # ---- inputs: Pandera schema
    Case(
        "negative_units",
        add_volumes(("ACME-01", "voice", "2024-02", "-5")),
        [f"{VOL}: column units: 1 row(s)", "'units >= 0'", "row 0 (", "units=-5"],
    ),
    Case(
        "float_units_column",
        write_parquet(
            "volumes",
            {
                "contract_id": pa.array(["ACME-01"]),
                "service_line_id": pa.array(["voice"]),
                "period": pa.array([dt.date(2024, 2, 1)]),
                "units": pa.array([10.5], pa.float64()),
            },
        ),
        [f"{VOL}: column units is a float", "decimal or integer", "rule: column type"],
    ),
    Case(
        "duplicate_volume_key",
        add_volumes(("ACME-01", "voice", "2024-01", "5")),
        [
            "data/volumes/bad.parquet, data/volumes/part.parquet: ",
            "column contract_id, service_line_id, period: 2 row(s)",
            "'one row per contract_id, service_line_id, period'",
            "data/volumes/bad.parquet row 0 (contract_id=ACME-01, service_line_id=voice, "
            "period=2024-01)",
            "data/volumes/part.parquet row 0 (",
        ],
    ),
    Case(
        "period_not_on_the_first_of_a_month",
        add_volumes(("ACME-01", "voice", dt.date(2024, 2, 15), "5")),
        [f"{VOL}: column period: 1 row(s)", "first day of its month", "period=2024-02-15"],
    ),
    Case(
        "missing_required_column",
        write_parquet(
            "volumes",
            {
                "contract_id": pa.array(["ACME-01"]),
                "period": pa.array([dt.date(2024, 2, 1)]),
                "units": pa.array([Decimal(5)], pa.decimal128(38, 6)),
            },
        ),
        [f"{VOL}: missing column(s) service_line_id", "rule: schema"],
    ),
    # ---- inputs: referential rules against the contracts
    Case(
        "unknown_contract_id",
        add_volumes(("ACME-02", "voice", "2024-02", "5")),
        [
            f"{VOL}: column contract_id: 1 row(s)",
            "contract_id must be a contract in the contracts folder",
            "row 0 (contract_id=ACME-02, service_line_id=voice, period=2024-02)",
        ],
    ),
    Case(
        "unknown_service_line",
        add_volumes(("ACME-01", "chat", "2024-02", "5")),
        [
            f"{VOL}: column service_line_id: 1 row(s)",
            "service_line_id must be a service line of its contract",
            "row 0 (contract_id=ACME-01, service_line_id=chat, period=2024-02)",
        ],
    ),
    Case(
        "month_outside_the_contract_term",
        add_volumes(("ACME-01", "voice", "2025-02", "5")),
        [
            f"{VOL}: column period: 1 row(s)",
            "period must lie inside the contract term",
            "row 0 (contract_id=ACME-01, service_line_id=voice, period=2025-02",
        ],
    ),
    Case(
        "kpi_row_for_a_measured_kpi",
        lambda ws: ws.kpis([("ACME-01", "sl_80_20", "2024-02", "0.81")], "bad.parquet"),
        [
            "data/kpis/bad.parquet: column kpi_id: 1 row(s)",
            "has a measure in its contract and is computed from interactions",
            "row 0 (contract_id=ACME-01, kpi_id=sl_80_20, period=2024-02)",
        ],
    ),
    # ---- found while settling, inside the write transaction
    Case(
        "missing_index_value_for_a_review",
        # the April 2024 review reads UK_CPI for 2024-01 (lag 3); drop it
        lambda ws: ws.index_values([("UK_CPI", "2023-10", "100")]),
        [
            "index_values/: column value: 1 row(s) break the rule 'every indexation review reads "
            "the index value of its reference months'; first: (contract_id=ACME-01, "
            "index_id=UK_CPI, period=2024-01, review_period=2024-04)",
            "Add the missing rows to index_values/",
        ],
        period="2024-04",
    ),
    # ---- the same checks through `settle validate`
    Case(
        "validate_reports_a_bad_band",
        edit_contract("{up_to: 80000, rate: 2.10}", "{up_to: 40000, rate: 2.10}"),
        [f"{CFG}: service_lines[0].pricing[0].bands[1]: ", "up_to 40000 is not above", "50000"],
        command="validate",
    ),
    Case(
        "validate_reports_an_unknown_service_line",
        add_volumes(("ACME-01", "chat", "2024-02", "5")),
        [f"{VOL}: column service_line_id: ", "service line of its contract", "chat"],
        command="validate",
    ),
]


def argv(ws, case: Case) -> list[str]:
    common = ["--contracts", str(ws.contracts_dir), "--data", str(ws.data_dir), "--db", str(ws.db)]
    if case.command == "validate":
        return ["validate", *common]
    return ["run", *common, "--period", case.period]


def check_error(stderr: str, stdout: str, case: Case, ws) -> None:
    """One `error:` paragraph, last on stderr (progress lines may come before it)."""
    assert "Traceback" not in stderr + stdout
    assert "panicked at" not in stderr  # a Rust reader's panic message on the console
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    text = errors[0]
    where = 0
    for piece in case.expect:
        found = text.find(piece, where)
        assert found >= 0, f"{piece!r} not in order in: {text}"
        where = found + len(piece)
    # paths are shown relative to the workspace, never as absolute temp paths
    assert str(ws.root) not in text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_the_database_is_untouched(good, case, monkeypatch, capfd):
    with database_unchanged(good.db):
        case.breaks(good)
        out, err = entry_exits(monkeypatch, capfd, argv(good, case))
        check_error(err, out, case, good)


SUBPROCESS_CASES = ["bands_out_of_order", "missing_index_value_for_a_review"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_the_installed_command_refuses_the_same_way(good, name):
    case = next(c for c in CASES if c.id == name)
    with database_unchanged(good.db):
        case.breaks(good)
        done = subprocess.run(
            [str(SETTLE), *argv(good, case)], capture_output=True, text=True, cwd=good.root
        )
        assert done.returncode == 1, done.stderr
        check_error(done.stderr, done.stdout, case, good)
