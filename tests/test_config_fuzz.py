"""Fuzzing contract files: any mutation of a good contract loads, or fails with one ConfigError.

Mutations are drawn over the good contract of `test_config_strict`: keys deleted, values swapped
for other types or extreme numbers, lines duplicated (duplicate keys), bytes inserted. Whatever
comes out, `load_contract` either returns terms that `terms.build_tables` can store, or raises a
`ConfigError` naming the file, in one short paragraph. Any other exception is a bug: a traceback
for the user. A smaller number of mutations go through `settle run` on a settled database: exit 0
or 1, never a traceback, and the database untouched on 1. Bounded to well under a minute;
`SETTLE_FUZZ_EXAMPLES=5000 SETTLE_FUZZ_CLI_EXAMPLES=500` runs more cases locally.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipelines import cli
from pipelines.config import ConfigError, load_contract
from pipelines.terms import build_tables
from pipelines.yaml_strict import loads
from tests.test_config_strict import FILE, GOOD, POINTS, settle_good


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


_Dumper.add_representer(
    Decimal, lambda d, v: d.represent_scalar("tag:yaml.org,2002:float", format(v, "f"))
)

EXTREMES: list[Any] = [
    None,
    True,
    "yes",
    0,
    -1,
    10**30,
    2**63,
    Decimal("1e-9"),
    Decimal("99999999999999.999999"),
    "1e400",
    ".inf",
    ".nan",
    "1:30.5",
    "x" * 5000,
    "",
    "2024-13",
    "0000-01",
    "2024-02-30",
    ["voice", "voice"],
    [[[[[]]]]],
    {"a": 1},
    {},
    [],
]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _set(node: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        copy = dict(node)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _set(node[head], rest, value, delete)
        return copy
    copy = list(node)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _set(node[head], rest, value, delete)
    return copy


BASES = [loads(GOOD), loads(POINTS)]


# Numbers a careless but well-formed file might hold: these mostly validate, so they reach the
# settlement SQL (products near the DECIMAL limits, zero divisors, shares at the bounds).
NUMBERS: list[Any] = [
    0,
    1,
    2,
    -1,
    Decimal("0.000001"),
    Decimal("0.5"),
    Decimal("1.5"),
    10**13,
    Decimal("99999999999999.999999"),
]


def _numeric_paths(node: Any) -> list[tuple]:
    out = []
    for path in _paths(node)[1:]:
        leaf = node
        for part in path:
            leaf = leaf[part]
        if isinstance(leaf, int | Decimal) and not isinstance(leaf, bool):
            out.append(path)
    return out


@st.composite
def mutated(draw) -> bytes:
    base = draw(st.sampled_from(BASES))
    if draw(st.booleans()):  # well-formed: one or two numbers changed
        for _ in range(draw(st.integers(1, 2))):
            path = draw(st.sampled_from(_numeric_paths(base)))
            base = _set(base, path, draw(st.sampled_from(NUMBERS)), delete=False)
        return yaml.dump(base, Dumper=_Dumper, sort_keys=False).encode()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(base)[1:]))
        delete = draw(st.booleans())
        value = draw(st.sampled_from(EXTREMES))
        base = _set(base, path, value, delete)
    text = yaml.dump(base, Dumper=_Dumper, sort_keys=False)
    # text-level damage: a duplicated line (a duplicate key) or stray bytes
    data = text.encode()
    kind = draw(st.sampled_from(["none", "duplicate_line", "bytes"]))
    if kind == "duplicate_line":
        lines = text.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        data = "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]).encode()
    elif kind == "bytes":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.binary(min_size=1, max_size=4))
        data = data[:at] + junk + data[at:]
    return data


@settings(
    max_examples=int(os.environ.get("SETTLE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated())
def test_a_mutated_contract_loads_or_fails_with_one_config_error(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    try:
        loaded = load_contract(path, tmp_path)
    except ConfigError as exc:
        event("refused")  # --hypothesis-show-statistics shows how many loaded
        assert exc.file == "c.yaml"
        assert len(str(exc)) < 1000 and "\n" not in str(exc)
        return
    event("loaded")
    build_tables([loaded])  # what validates must also fit the term tables


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    return settle_good(tmp_path_factory.mktemp("settled"))


@settings(
    max_examples=int(os.environ.get("SETTLE_FUZZ_CLI_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated())
def test_settle_run_on_a_mutated_contract_exits_0_or_1_and_writes_nothing_on_1(settled, data):
    """Through the whole command: whatever validates must also settle (or stop cleanly)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(settled.contracts_dir, root / "contracts_config")
        shutil.copytree(settled.data_dir, root / "data")
        shutil.copy(settled.db, root / "settlement.duckdb")
        (root / "contracts_config" / FILE).write_bytes(data)
        db = root / "settlement.duckdb"
        before = db.read_bytes()
        argv = ["settle", "run", "--contracts", str(root / "contracts_config")]
        argv += ["--data", str(root / "data"), "--db", str(db), "--period", "2024-02"]
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.object(sys, "argv", argv), redirect_stdout(out), redirect_stderr(err):
            try:
                cli.entry()
                code = 0
            except SystemExit as exited:
                code = exited.code or 0
        event(f"exit {code}")
        text = out.getvalue() + err.getvalue()
        assert "Traceback" not in text
        assert code in (0, 1), text
        if code == 1:
            assert db.read_bytes() == before
            assert not Path(f"{db}.wal").exists()
