"""Hostile or careless contract files are refused through the command line, clearly and harmlessly.

Each case starts from a workspace whose database already holds a settled month, breaks the contract
file (or puts something that is not a contract file next to it), runs `settle run` or `settle
validate`, and expects: exit code 1, one `error:` paragraph naming the file, the key path (or line)
and the rule, no traceback, and the database file byte-for-byte unchanged.

The classes are those of issue 12 for contract files: duplicate keys, duplicate ids in id lists,
documented rejections, empty lists, non-finite and oversized numbers, YAML 1.1 quirks, non-UTF-8
bytes, non-regular files, deep nesting and alias bombs. Most run the console script's `entry()`
in-process (what the installed `settle` executes); the ones that could crash or block an
interpreter (30,000-deep nesting, a FIFO) run as subprocesses of `.venv/bin/settle` with a timeout.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.config import ALWAYS_KNOWN, ConfigError, load_contract
from pipelines.terms import build_rows
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
          - {rate: 1.90}
  - id: mail
    pricing:
      - effective_from: 2024-01
        model: package
        package_size: 100
        package_price: 50.00
fixed_fees:
  - {id: platform, amount: 1000.00, indexed: true}
  - {id: platform, amount: 1100.00, indexed: true, effective_from: 2024-07}
indexation:
  index_id: UK_CPI
  base_period: 2023-10
  first_review: 2024-04
  lag_months: 3
  applies_to: [voice, platform]
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
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
      required: false
gain_share:
  scope: [voice]
  baselines: [{effective_from: 2024-01, value: 2.55}]
  tiers: [{provider_share: 0.50}]
  gates: [sl_80_20]
"""

FILE = "acme.yaml"
CFG = f"contracts_config/{FILE}"


def settle_good(root: Path) -> Workspace:
    """The good contract with January 2024 settled into the database."""
    template = Workspace(root)
    template.contract(GOOD, FILE)
    template.volumes(
        [("ACME-01", "voice", "2024-01", "1000"), ("ACME-01", "mail", "2024-01", "250")]
    )
    template.kpis([("ACME-01", "abandon_rate", "2024-01", "0.04")])
    template.index_values([("UK_CPI", "2023-10", "100"), ("UK_CPI", "2024-01", "102")])
    template.settle("2024-01")
    # voice 1000 x 2.40 = 2400.00; mail ceil(250 / 100) = 3 packages x 50.00 = 150.00;
    # platform fee 1000.00 (before the first review the factor is 1)
    assert template.lines("2024-01")["usage:voice"] == D("2400.00")
    assert template.lines("2024-01")["usage:mail"] == D("150.00")
    return template


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    return settle_good(tmp_path_factory.mktemp("settled"))


@pytest.fixture
def good(ws, settled):
    copy_workspace(settled, ws)
    return ws


# --------------------------------------------------------------------------- breaking things


def edit(old: str, new: str) -> Callable:
    return edit_file(FILE, old, new)


def write_bytes(data: bytes, name: str = FILE) -> Callable:
    return lambda ws: (ws.contracts_dir / name).write_bytes(data)


def alias_bomb() -> str:
    """Nine levels of nine references: 9^9 (387 million) strings once expanded, in about 4.5 KB."""
    lines = [
        "contract_id: ACME-01",
        'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for level in range(1, 10):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    # pad to the 4.5 KB with more references to the top level
    lines.append("boom: [" + ",".join(["*l9"] * 1000) + "]")
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return GOOD + "description: " + "[" * depth + "]" * depth + "\n"


@dataclass
class Case:
    id: str
    breaks: Callable
    expect: list[str]  # pieces of the one error paragraph, in order
    command: str = "run"


CASES = [
    # ---- duplicate keys: PyYAML keeps the last one silently
    Case(
        "duplicate_key_in_a_band",
        edit("{up_to: 50000, rate: 2.40}", "{up_to: 50000, rate: 2.40, rate: 9.99}"),
        # both on line 11: the flow mapping starts at column 13, `rate` at 28 and again at 40
        [f"{CFG}: service_lines[0].pricing[0].bands[0].rate: ", "given twice", "line 11"],
    ),
    Case(
        "second_pricing_key_in_a_service_line",
        edit(
            "  - id: mail\n",
            "    pricing:\n      - {effective_from: 2024-01, model: per_unit, "
            "bands: [{rate: 9.99}]}\n  - id: mail\n",
        ),
        # the first `pricing:` of voice is on line 7, the second (inserted) on line 13
        [f"{CFG}: service_lines[0].pricing: ", "given twice (lines 7 and 13)"],
    ),
    Case(
        "duplicate_top_level_key",
        edit("currency: GBP\n", "currency: GBP\ncurrency: EUR\n"),
        [f"{CFG}: currency: ", "given twice (lines 2 and 3)"],
        command="validate",
    ),
    # ---- duplicate ids in id lists
    Case(
        "gain_share_scope_twice",
        edit("scope: [voice]", "scope: [voice, voice]"),
        [f"{CFG}: gain_share.scope[1]: ", "voice appears twice", "gain_share.scope[0]"],
    ),
    Case(
        "applies_to_twice",
        edit("applies_to: [voice, platform]", "applies_to: [voice, platform, voice]"),
        [f"{CFG}: indexation.applies_to[2]: ", "voice appears twice"],
    ),
    Case(
        "gate_twice",
        edit("gates: [sl_80_20]", "gates: [sl_80_20, sl_80_20]"),
        [f"{CFG}: gain_share.gates[1]: ", "sl_80_20 appears twice"],
    ),
    Case(
        "kpi_id_twice",
        edit("    - id: abandon_rate", "    - id: sl_80_20"),
        [f"{CFG}: service_credits.kpis[1].id: ", "sl_80_20 appears twice"],
    ),
    Case(
        "service_line_id_twice",
        edit("  - id: mail", "  - id: voice"),
        [f"{CFG}: service_lines[1].id: ", "voice appears twice"],
    ),
    Case(
        "basket_index_twice",
        edit(
            "  index_id: UK_CPI\n",
            "  basket: [{index_id: UK_CPI, weight: 0.5}, {index_id: UK_CPI, weight: 0.5}]\n",
        ),
        [f"{CFG}: indexation.basket[1].index_id: ", "UK_CPI appears twice"],
    ),
    Case(
        "fee_entry_twice_in_one_month",
        edit("effective_from: 2024-07}", "effective_from: 2024-01}"),
        [f"{CFG}: fixed_fees[1]: ", "platform has two entries in force from the same month"],
    ),
    # ---- documented rejections
    Case(
        "package_line_with_minimum_units",
        edit(
            "        package_price: 50.00\n",
            "        package_price: 50.00\n        minimum_units: 10\n",
        ),
        [f"{CFG}: service_lines[1].pricing[0].minimum_units: ", "package line has no unit rate"],
    ),
    Case(
        "fee_history_out_of_order",
        edit(
            "  - {id: platform, amount: 1100.00, indexed: true, effective_from: 2024-07}\n",
            "  - {id: platform, amount: 1100.00, indexed: true, effective_from: 2024-07}\n"
            "  - {id: platform, amount: 1200.00, indexed: true, effective_from: 2024-03}\n",
        ),
        [f"{CFG}: fixed_fees[2].effective_from: ", "2024-03 is not after", "2024-07"],
    ),
    Case(
        "capped_line_itemised_by_its_service_line",
        edit(
            "  - id: voice\n    pricing:\n      - effective_from: 2024-01\n",
            "  - id: voice\n    itemise_bands: true\n    pricing:\n"
            "      - effective_from: 2024-01\n        maximum_charge: 5000\n",
        ),
        [f"{CFG}: service_lines[0].pricing[0].maximum_charge: ", "cannot be itemised"],
    ),
    # ---- empty lists where a value is required
    Case(
        "empty_target",
        edit("      target: 0.05", "      target: []"),
        [f"{CFG}: service_credits.kpis[1].target: ", "is an empty list"],
    ),
    Case(
        "empty_basket",
        edit("  index_id: UK_CPI\n", "  basket: []\n"),
        [f"{CFG}: indexation.basket: ", "is an empty list"],
    ),
    Case(
        "empty_bands",
        edit("        package_price: 50.00\n", "        package_price: 50.00\n        bands: []\n"),
        [f"{CFG}: service_lines[1].pricing[0].bands: ", "is an empty list"],
    ),
    Case(
        "empty_gates",
        edit("gates: [sl_80_20]", "gates: []"),
        [f"{CFG}: gain_share.gates: ", "is an empty list"],
        command="validate",
    ),
    # ---- numbers: finite and inside DECIMAL(20, 6) / INT32, checked at the key
    Case(
        "infinite_rate",
        edit("rate: 2.40", "rate: .inf"),
        [f"{CFG}: service_lines[0].pricing[0].bands[0].rate: ", "not a finite number"],
    ),
    Case(
        "nan_target",
        edit("      target: 0.80", "      target: .nan"),
        [f"{CFG}: service_credits.kpis[0].target[0].value: ", "not a finite number"],
    ),
    Case(
        "number_beyond_decimal_38",
        edit("amount: 1000.00", "amount: 1e400"),
        [f"{CFG}: fixed_fees[0].amount: ", "too large", "at most 14 digits"],
    ),
    Case(
        "number_beyond_the_term_tables",
        # 10^14 does not fit DECIMAL(20, 6), which holds 14 digits before the point
        edit("rate: 2.40", "rate: 100000000000000"),
        [f"{CFG}: service_lines[0].pricing[0].bands[0].rate: ", "too large"],
    ),
    Case(
        "exponent_beyond_decimal",
        edit("amount: 1000.00", "amount: 1e99999999999999999999"),
        [f"{CFG}: fixed_fees[0].amount: ", "is not a number"],
    ),
    Case(
        "huge_threshold_s",
        edit("threshold_s: 20", "threshold_s: 100000000000000000000000"),
        [f"{CFG}: service_credits.kpis[0].measure.threshold_s: ", "less than or equal to 86400"],
    ),
    Case(
        "sixty_digit_integer",
        edit("package_size: 100", "package_size: " + "9" * 60),
        [f"{CFG}: service_lines[1].pricing[0].package_size: ", "too large"],
    ),
    # ---- YAML 1.1 quirks: read as YAML 1.2 text, so a number or boolean key refuses them
    Case(
        "sexagesimal_float",
        edit("rate: 2.40", "rate: 1:30.5"),
        [f"{CFG}: service_lines[0].pricing[0].bands[0].rate: ", "'1:30.5' is not a number"],
    ),
    Case(
        "sexagesimal_int",
        edit("threshold_s: 20", "threshold_s: 1:30"),
        [f"{CFG}: service_credits.kpis[0].measure.threshold_s: ", "valid integer"],
    ),
    Case(
        "yes_is_not_a_boolean",
        edit("required: false", "required: no"),
        [f"{CFG}: service_credits.kpis[1].required: ", "valid boolean"],
    ),
    # ---- anchors, aliases, merge keys, tags, documents
    Case(
        "alias",
        edit("  scope: [voice]", "  scope: &lines [voice]\n  extra: *lines"),
        [f"{CFG}: gain_share.scope: ", "anchors (&lines)", "not supported"],
    ),
    Case(
        "merge_key",
        edit("  index_id: UK_CPI\n", "  <<: {index_id: UK_CPI}\n"),
        [f"{CFG}: indexation: ", "merge keys (<<) are not supported"],
    ),
    Case(
        "python_tag",
        edit("currency: GBP", "currency: !!python/name:os.system GBP"),
        [f"{CFG}: currency: ", "tags (tag:yaml.org,2002:python/name:os.system) are not supported"],
    ),
    Case(
        "number_as_a_key",
        edit("  lag_months: 3\n", "  lag_months: 3\n  12: monthly\n"),
        [f"{CFG}: indexation: ", "a key must be text, not 12"],
    ),
    Case(
        "two_documents",
        lambda ws: (ws.contracts_dir / FILE).write_text(GOOD + "---\n" + GOOD),
        [f"{CFG}: ", "more than one YAML document"],
    ),
    # ---- bytes
    Case(
        "non_utf8_byte",
        write_bytes(GOOD.replace("GBP", "GB\xa3").encode("latin-1")),
        # "contract_id: ACME-01\n" is 21 bytes, then "currency: GB" 12 more: offset 33, line 2
        [f"{CFG}: ", "not UTF-8: byte 0xa3 at byte offset 33 (line 2)"],
    ),
    Case(
        "utf16_file",
        write_bytes(GOOD.encode("utf-16")),
        [f"{CFG}: ", "is UTF-16"],
    ),
    Case(
        "utf16_without_a_byte_order_mark",
        write_bytes(GOOD.encode("utf-16-le")),
        # "c" is 63 00 in UTF-16-LE: the first NUL is byte 1
        [f"{CFG}: ", "holds a NUL byte at byte offset 1"],
    ),
    Case(
        "control_character",
        edit("currency: GBP", "currency: G\x01BP"),
        [f"{CFG}: ", "control characters are not allowed"],
    ),
    # ---- not regular files, named *.yaml
    Case(
        "directory_named_yaml",
        lambda ws: (ws.contracts_dir / "old.yaml").mkdir(),
        ["contracts_config/old.yaml: is a directory, not a contract file"],
    ),
    Case(
        "dangling_symlink",
        lambda ws: os.symlink(ws.root / "gone.yaml", ws.contracts_dir / "old.yaml"),
        ["contracts_config/old.yaml: is a symbolic link to a missing file"],
    ),
    # ---- deep and explosive
    Case(
        "nested_2000_deep",
        lambda ws: (ws.contracts_dir / FILE).write_text(nested(2000)),
        # GOOD has 47 lines; the nested list is appended as line 48
        [f"{CFG}: description[0]", "nested more than 32 levels deep (line 48)"],
    ),
    Case(
        "alias_bomb",
        lambda ws: (ws.contracts_dir / FILE).write_text(alias_bomb()),
        [f"{CFG}: l0: ", "anchors (&l0) and aliases are not supported (line 2)"],
    ),
]


def argv(ws, command: str) -> list[str]:
    common = ["--contracts", str(ws.contracts_dir), "--data", str(ws.data_dir), "--db", str(ws.db)]
    return [command, *common] if command == "validate" else ["run", *common, "--period", "2024-02"]


def check_error(stderr: str, stdout: str, expect: list[str], ws) -> None:
    """One `error:` paragraph, last on stderr, holding the expected pieces in order."""
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    text, where = errors[0], 0
    for piece in expect:
        found = text.find(piece, where)
        assert found >= 0, f"{piece!r} not in order in: {text}"
        where = found + len(piece)
    assert str(ws.root) not in text
    assert len(text) < 1000  # one paragraph, never an expanded document


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_contract_file_is_refused_and_nothing_is_written(good, case, monkeypatch, capfd):
    with database_unchanged(good.db):
        case.breaks(good)
        started = time.monotonic()
        out, err = entry_exits(monkeypatch, capfd, argv(good, case.command))
        assert time.monotonic() - started < 30  # the alias bomb took 71 s before
        check_error(err, out, case.expect, good)


def run_installed(ws, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SETTLE), *argv(ws, command)],
        capture_output=True,
        text=True,
        cwd=ws.root,
        timeout=120,
    )


def test_a_30000_deep_list_fails_cleanly_in_the_installed_command(good):
    # PyYAML's C composer segfaulted here (exit 139) before depth was counted on the event stream
    with database_unchanged(good.db):
        (good.contracts_dir / FILE).write_text(nested(30_000))
        done = run_installed(good, "run")
        assert done.returncode == 1, done.stderr
        check_error(done.stderr, done.stdout, [f"{CFG}: ", "nested more than 32 levels deep"], good)


def test_a_fifo_named_yaml_is_refused_without_blocking(good):
    with database_unchanged(good.db):
        os.mkfifo(good.contracts_dir / "pipe.yaml")
        done = run_installed(good, "run")  # the timeout fails the test if the read blocks
        assert done.returncode == 1, done.stderr
        check_error(
            done.stderr,
            done.stdout,
            ["contracts_config/pipe.yaml: is a FIFO (named pipe), not a contract file"],
            good,
        )


def test_an_editor_lock_file_is_skipped_with_a_note(good, monkeypatch, capfd):
    # Emacs leaves `.#acme.yaml` as a dangling symlink while the file is being edited
    os.symlink("user@host.1234:1700000000", good.contracts_dir / ".#acme.yaml")
    monkeypatch.setattr(sys, "argv", ["settle", *argv(good, "validate")])
    try:
        cli.entry()
        code = 0
    except SystemExit as exited:
        code = exited.code or 0
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "skipping hidden file contracts_config/.#acme.yaml" in err
    assert "Traceback" not in out + err


# --------------------------------------------------------------------------- what is accepted


def test_yaml_1_2_scalars_and_core_tags(tmp_path):
    text = GOOD.replace("currency: GBP\n", "currency: GBP\nclient: yes\nprovider: 1:30\n")
    text = text.replace("package_size: 100", "package_size: !!float '100'")
    text = text.replace("threshold_s: 20", "threshold_s: 020")
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # a UTF-8 byte order mark is fine
    terms = load_contract(path).terms
    # YAML 1.1 would give True and 90; YAML 1.2 keeps both as text
    assert (terms.client, terms.provider) == ("yes", "1:30")
    pricing = terms.service_lines[1].pricing[0]
    assert pricing.package_size == D("100") and type(pricing.package_size) is D
    # 020 is twenty in YAML 1.2 (YAML 1.1 read it as octal 16)
    assert terms.service_credits.kpis[0].measure.threshold_s == 20


def test_defaults_are_resolved_once_in_the_config(tmp_path):
    text = GOOD.replace("  applies_to: [voice, platform]\n", "")
    text = text.replace("  at_risk_pct: 0.10\n", "  at_risk_pct: 0.10\n  pool_pct: 1.0\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        text.replace("model: graduated", "model: graduated\n        agreed_on: 2023-12-01")
    )
    loaded = load_contract(path)
    c = loaded.terms
    voice, mail = c.service_lines
    assert (voice.description, mail.description) == ("voice", "mail")
    assert voice.pricing[0].itemise_bands is False  # from the service line's default
    assert voice.pricing[0].agreed_on == dt.date(2023, 12, 1)
    assert mail.pricing[0].agreed_on == ALWAYS_KNOWN
    first_fee, second_fee = c.fixed_fees
    assert first_fee.effective_from == dt.date(2024, 1, 1)  # the contract start
    assert second_fee.effective_from == dt.date(2024, 7, 1)
    assert first_fee.description == "platform"
    # no applies_to: every service line and every fee marked indexed
    assert c.indexation.applies_to == ["voice", "mail", "platform"]
    assert c.indexation.indexed_share == 1
    assert c.service_credits.monthly_cap_pct == D("0.10")  # at_risk_pct
    assert c.service_credits.kpis[1].description == "abandon_rate"
    assert c.gain_share.pain_tiers == c.gain_share.tiers
    rows = build_rows([loaded])
    assert [r["effective_from"] for r in rows["cfg_fixed_fees"]] == [
        dt.date(2024, 1, 1),
        dt.date(2024, 7, 1),
    ]
    assert [r["monthly_cap_pct"] for r in rows["cfg_credit_regimes"]] == [D("0.10")]
    assert [(r["index_id"], r["weight"]) for r in rows["cfg_index_weights"]] == [("UK_CPI", 1)]
    assert {r["service_line_id"]: r["indexed"] for r in rows["cfg_service_lines"]} == {
        "voice": True,
        "mail": True,
    }
    assert [r["kind"] for r in rows["cfg_gain_tiers"]] == ["gain", "pain"]


def test_loading_stays_fast(tmp_path):
    """Strictness costs nothing that matters: 200 copies of the contract load in well under 10 s."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(200):
        (folder / f"c{i:04}.yaml").write_text(GOOD.replace("ACME-01", f"C{i:04}"))
    from pipelines.config import load_contracts

    started = time.monotonic()
    assert len(load_contracts(folder)) == 200
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- every rule, enforced

POINTS = (
    GOOD[: GOOD.index("service_credits:")]
    + (
        "service_credits:\n"
        "  regime: points\n"
        "  kpis:\n"
        "    - id: sl_80_20\n"
        "      target: 0.80\n"
        "      points_bands: [{worse_than: 0.80, points: 1}, {worse_than: 0.70, points: 3}]\n"
        "      measure: {metric: service_level, service_line: voice, threshold_s: 20}\n"
    )
    + GOOD[GOOD.index("gain_share:") :]
)

VOICE_BANDS = "        bands:\n          - {up_to: 50000, rate: 2.40}\n          - {rate: 1.90}\n"

# (id, base text, old, new, key path, reason): each cross-key rule of config.py and the README's
# "rules checked on load", broken once. The reasons are the rule's text, not recomputed.
RULES = [
    (
        "dated_entries_out_of_order",
        GOOD,
        "      target: 0.80\n",
        "      target: [{effective_from: 2024-01, value: 0.8},\n"
        "               {effective_from: 2024-01, value: 0.9}]\n",
        "service_credits.kpis[0].target[1].effective_from",
        "2024-01 is not after the previous entry's 2024-01",
    ),
    (
        "first_dated_entry_after_start",
        GOOD,
        "      - effective_from: 2024-01\n        model: graduated",
        "      - effective_from: 2024-02\n        model: graduated",
        "service_lines[0].pricing[0].effective_from",
        "2024-02 is after the contract start 2024-01",
    ),
    (
        "per_unit_with_two_bands",
        GOOD,
        "model: graduated",
        "model: per_unit",
        "service_lines[0].pricing[0].bands",
        "model per_unit takes exactly one band, no up_to",
    ),
    (
        "package_without_price",
        GOOD,
        "        package_price: 50.00\n",
        "",
        "service_lines[1].pricing[0]",
        "model package needs package_size and package_price",
    ),
    (
        "package_with_bands",
        GOOD,
        "        package_price: 50.00\n",
        "        package_price: 50.00\n        bands: [{rate: 1}]\n",
        "service_lines[1].pricing[0].bands",
        "model package takes no bands",
    ),
    (
        "package_keys_on_a_banded_line",
        GOOD,
        "        model: graduated\n",
        "        model: graduated\n        package_size: 10\n",
        "service_lines[0].pricing[0]",
        "package_size/package_price only apply to model package",
    ),
    (
        "banded_model_without_bands",
        GOOD,
        "        model: graduated\n" + VOICE_BANDS,
        "        model: volume\n",
        "service_lines[0].pricing[0].bands",
        "model volume needs at least one band",
    ),
    (
        "open_band_not_last",
        GOOD,
        "{up_to: 50000, rate: 2.40}",
        "{rate: 2.40}",
        "service_lines[0].pricing[0].bands[0].up_to",
        "only the last band may be open-ended (no up_to)",
    ),
    (
        "last_band_not_open",
        GOOD,
        "{rate: 1.90}",
        "{up_to: 90000, rate: 1.90}",
        "service_lines[0].pricing[0].bands[1].up_to",
        "the last band must be open-ended (no up_to), got 90000",
    ),
    (
        "minimum_charge_above_maximum",
        GOOD,
        "        model: graduated\n",
        "        model: graduated\n        minimum_charge: 500\n        maximum_charge: 100\n",
        "service_lines[0].pricing[0].minimum_charge",
        "500 is above maximum_charge 100",
    ),
    (
        "surge_on_a_stairstep_line",
        GOOD,
        "        model: graduated\n",
        "        model: stairstep\n        surge: {over_forecast_pct: 0.1, rate: 3}\n",
        "service_lines[0].pricing[0].surge",
        "a stairstep line has no unit rate to surge",
    ),
    (
        "contract_ends_before_it_starts",
        GOOD,
        "end: 2024-12",
        "end: 2023-12",
        "end",
        "2023-12 is before start 2024-01",
    ),
    (
        "fee_before_the_contract_start",
        GOOD,
        "effective_from: 2024-07}",
        "effective_from: 2023-07}",
        "fixed_fees[1].effective_from",
        "is before the contract start",
    ),
    (
        "fee_id_shared_with_a_service_line",
        GOOD,
        "  - {id: platform, amount: 1000.00",
        "  - {id: mail, amount: 1000.00",
        "fixed_fees",
        "ids shared with service lines: ['mail']",
    ),
    (
        "linear_minimum_not_worse_than_the_target",
        GOOD,
        "      minimum: 0.10\n",
        "      minimum: 0.04\n",
        "service_credits.kpis[1].minimum",
        "0.04 must be above every target (0.05) for a lower_is_better KPI",
    ),
    (
        "allocation_missing_in_the_pool_regime",
        GOOD,
        "      allocation_pct: 0.40\n",
        "",
        "service_credits.kpis[1].allocation_pct",
        "required in the at_risk_pool regime",
    ),
    (
        "at_risk_pct_missing",
        GOOD,
        "  at_risk_pct: 0.10\n",
        "",
        "service_credits.at_risk_pct",
        "required in at_risk_pool",
    ),
    (
        "bands_model_without_bands",
        GOOD,
        "credit: {model: linear}",
        "credit: {model: bands}",
        "service_credits.kpis[1].credit.bands",
        "the bands credit model needs bands",
    ),
    (
        "bands_under_another_model",
        GOOD,
        "credit: {model: linear}",
        "credit: {model: linear, bands: [{worse_than: 0.08, pct: 0.5}]}",
        "service_credits.kpis[1].credit.bands",
        "bands need credit model bands",
    ),
    (
        "bonus_worse_than_the_target",
        GOOD,
        "      allocation_pct: 0.60\n",
        "      allocation_pct: 0.60\n      bonus: {at_or_better: 0.70, pct_of_charges: 0.01}\n",
        "service_credits.kpis[0].bonus.at_or_better",
        "0.7 is worse than the target 0.8",
    ),
    (
        "measure_on_an_unknown_service_line",
        GOOD,
        "service_line: voice",
        "service_line: chat",
        "service_credits.kpis[0].measure.service_line",
        "chat is not a service line",
    ),
    (
        "service_level_without_threshold",
        GOOD,
        ", threshold_s: 20}",
        "}",
        "service_credits.kpis[0].measure.threshold_s",
        "service_level needs threshold_s",
    ),
    (
        "exclude_short_without_short_abandon_s",
        GOOD,
        ", threshold_s: 20}",
        ", threshold_s: 20, abandons: exclude_short}",
        "service_credits.kpis[0].measure.short_abandon_s",
        "abandons: exclude_short needs it",
    ),
    (
        "points_regime_kpi_without_points_bands",
        POINTS,
        "      points_bands: [{worse_than: 0.80, points: 1}, {worse_than: 0.70, points: 3}]\n",
        "",
        "service_credits.kpis[0].points_bands",
        "required in the points regime",
    ),
    (
        "points_regime_without_a_scale",
        POINTS,
        "  regime: points\n",
        "  regime: points\n",
        "service_credits.points_to_credit_pct",
        "required in the points regime",
    ),
    (
        "points_scale_not_increasing",
        POINTS,
        "  regime: points\n",
        "  regime: points\n  points_to_credit_pct: [{from_points: 2, pct: 0.01}, "
        "{from_points: 2, pct: 0.02}]\n",
        "service_credits.points_to_credit_pct[1].from_points",
        "2 is not above the previous 2",
    ),
    (
        "index_id_and_basket",
        GOOD,
        "  index_id: UK_CPI\n",
        "  index_id: UK_CPI\n  basket: [{index_id: UK_CPI, weight: 1}]\n",
        "indexation",
        "give either index_id or basket, not both/neither",
    ),
    (
        "basket_with_indexed_share",
        GOOD,
        "  index_id: UK_CPI\n",
        "  basket: [{index_id: UK_CPI, weight: 1}]\n  indexed_share: 0.5\n",
        "indexation.indexed_share",
        "a basket sets its own weights",
    ),
    (
        "basket_weights_above_one",
        GOOD,
        "  index_id: UK_CPI\n",
        "  basket: [{index_id: UK_CPI, weight: 0.6}, {index_id: UK_AWE, weight: 0.5}]\n",
        "indexation.basket",
        "weights add up to 1.1, above 1",
    ),
    (
        "first_review_not_after_base",
        GOOD,
        "first_review: 2024-04",
        "first_review: 2023-10",
        "indexation.first_review",
        "must be after base_period",
    ),
    (
        "floor_above_cap",
        GOOD,
        "  lag_months: 3\n",
        "  lag_months: 3\n  cap: 0.03\n  floor: 0.05\n",
        "indexation.floor",
        "0.05 is above cap 0.03",
    ),
    (
        "scope_names_an_unknown_item",
        GOOD,
        "scope: [voice]",
        "scope: [chat]",
        "gain_share.scope[0]",
        "chat is neither a service line nor a fixed fee of this contract",
    ),
    (
        "volume_measure_without_value_per_unit",
        GOOD,
        "  scope: [voice]\n",
        "  scope: [voice]\n  measure: volume\n",
        "gain_share.value_per_unit",
        "measure volume needs value_per_unit",
    ),
    (
        "value_per_unit_on_a_cost_measure",
        GOOD,
        "  scope: [voice]\n",
        "  scope: [voice]\n  value_per_unit: 1\n",
        "gain_share.value_per_unit",
        "only applies to measure volume",
    ),
    (
        "last_tier_not_open",
        GOOD,
        "tiers: [{provider_share: 0.50}]",
        "tiers: [{up_to: 100, provider_share: 0.50}]",
        "gain_share.tiers[0].up_to",
        "the last tier must be open-ended (no up_to), got 100",
    ),
    (
        "baseline_after_the_start",
        GOOD,
        "baselines: [{effective_from: 2024-01",
        "baselines: [{effective_from: 2024-03",
        "gain_share.baselines[0].effective_from",
        "2024-03 is after the contract start 2024-01",
    ),
]


@pytest.mark.parametrize(
    ("base", "old", "new", "path", "reason"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_every_rule_is_enforced_with_its_key_path(tmp_path, base, old, new, path, reason):
    assert old in base, old
    file = tmp_path / "c.yaml"
    file.write_text(base.replace(old, new, 1))
    with pytest.raises(ConfigError) as refused:
        load_contract(file, tmp_path)
    assert (refused.value.file, refused.value.path) == ("c.yaml", path)
    assert reason in refused.value.reason


def test_the_rule_cases_start_from_valid_contracts(tmp_path):
    for name, text in (
        ("good.yaml", GOOD),
        (
            "points.yaml",
            POINTS.replace(
                "  regime: points\n",
                "  regime: points\n  points_to_credit_pct: [{from_points: 1, pct: 0.01}]\n",
            ),
        ),
    ):
        (tmp_path / name).write_text(text)
        load_contract(tmp_path / name)


def test_a_file_that_is_not_a_mapping(tmp_path):
    (tmp_path / "c.yaml").write_text("- voice\n- chat\n")
    with pytest.raises(ConfigError, match="a contract file must be a mapping of keys"):
        load_contract(tmp_path / "c.yaml")
