"""Fuzzing the boundary with bad input: mutated contract YAML and mutated Parquet inputs.

Each case copies the sample contracts (contracts_config/) and inputs (data_samples/) and a database
that already holds a settled month, breaks one thing (a mutation drawn from a seed), and runs
`settle run` for the next month in-process through the CLI's own boundary (`cli.run_main`).
The promise checked for every case:

- the exit code is 0 (the mutation was harmless or legal) or 1 (refused): never the bug code 70,
  never a usage error, never a hang (a per-case alarm);
- no traceback on the console;
- on exit 1 nothing was written: the database file is byte-identical and no WAL is left.

The mutations:
  YAML     delete a key, duplicate a key (block and flow style), duplicate a list item, swap a
           value's type, extreme or exotic numbers (.inf, .nan, 1e400, 1:30.5, 39 digits), raw
           YAML tokens (tags, undefined aliases, flow junk), deep nesting, a small alias bomb,
           bad bytes (invalid UTF-8, NUL, UTF-16), truncation, line edits, and files in the
           folder that are not contracts (a directory, a FIFO, a dangling editor lock link, an
           empty file, a duplicated contract).
  Parquet  nulls, duplicate rows, dropped / renamed / extra columns, retyped columns (float,
           string, timestamps with a time zone), extreme values (decimals near DECIMAL(38),
           dates in year 1 and 9999), empty tables, and corrupt files (truncated, flipped bytes,
           zero bytes, CSV text, a directory or FIFO named *.parquet, a bad hive folder).

`bench/fuzz.py` runs the same cases for longer (`--cases N`), each in a child process so that
hangs and crashes are counted rather than fatal. Here the run is bounded for CI: FUZZ_CASES
examples per target (default 20; about a second each).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import shutil
import signal
import string
import threading
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipelines import cli

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts_config"
DATA = ROOT / "data_samples"
SETTLED = "2025-01"  # held by the base database
TARGET = "2025-02"  # what each case settles
CASE_TIMEOUT_S = int(os.environ.get("FUZZ_CASE_TIMEOUT_S", "60"))

# --------------------------------------------------------------------------- YAML mutations

RAW_TOKENS = [
    ".inf",
    "-.inf",
    ".nan",
    "1e400",
    "-1e400",
    "1e-400",
    "1:30.5",
    "0x1F",
    "0o17",
    "1_000",
    "99999999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999999",
    "0.000000000000000000000000000000000000001",
    "123456789012345678901234567890.123456789",
    "-0.0",
    "~",
    "''",
    "[]",
    "{}",
    "true",
    "no",
    "2024-13",
    "2024-02-30",
    "2024-01-01T00:00:00+05:00",
    "!!binary aGVsbG8=",
    "!!python/object/apply:os.getcwd []",
    "*undefined",
    "&anchor 1",
    "[1, 2",
    "{a: 1",
    "'unterminated",
    "|\n  block\n  text",
    "@reserved",
    "`backtick",
    "- 1",
]

SWAPS: list[object] = [
    None,
    "",
    "text",
    True,
    False,
    0,
    -1,
    3.5,
    [],
    {},
    ["a", "a"],
    {"x": 1},
    "x" * 5000,
    "é☃",
    10**40,
    -(10**40),
]


def bomb(levels: int, width: int) -> str:
    """A billion-laughs value in one flow sequence: each level repeats the one before `width`
    times."""
    parts = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


def _paths(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _parent(tree, path):
    node = tree
    for step in path[:-1]:
        node = node[step]
    return node


def _dump(tree) -> str:
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=1000)


def _with_raw(rng: random.Random, tree, token: str) -> str:
    """The tree dumped with one leaf (or subtree) replaced by raw YAML text."""
    path, _ = rng.choice([p for p in _paths(tree) if p[0]])
    _parent(tree, path)[path[-1]] = "__FUZZ_RAW__"
    text = _dump(tree)
    if "\n" in token:  # a block scalar must start its own indented lines
        indent = "\n" + " " * 8
        token = token.replace("\n", indent)
    return text.replace("'__FUZZ_RAW__'", token).replace("__FUZZ_RAW__", token)


def yaml_ops(heavy: bool) -> dict[str, object]:
    """Mutation name -> function(rng, text) -> bytes. `heavy` makes the nesting and bombs large
    enough to crash or exhaust an unbounded loader (bench only, each case in a child process)."""
    depth = 30_000 if heavy else 2_500
    levels, width = (9, 9) if heavy else (4, 8)

    def tree_of(text):
        tree = yaml.safe_load(text)
        assert isinstance(tree, dict)
        return tree

    def delete_key(rng, text):
        tree = tree_of(text)
        dicts = [(p, n) for p, n in _paths(tree) if isinstance(n, dict) and n]
        path, node = rng.choice(dicts)
        del node[rng.choice(list(node))]
        return _dump(tree).encode()

    def duplicate_key(rng, text):
        lines = text.splitlines(keepends=True)
        block = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?\w+:\s*\S", line)]
        flow = [i for i, line in enumerate(lines) if re.search(r"\{[^}]*\w+: [^,}]+", line)]
        if flow and rng.random() < 0.5:
            i = rng.choice(flow)
            match = rng.choice(list(re.finditer(r"(\w+): ([^,}]+)", lines[i])))
            value = rng.choice([match.group(2), "9.99", "0", "x"])
            lines[i] = (
                lines[i][: match.end()] + f", {match.group(1)}: {value}" + lines[i][match.end() :]
            )
        else:
            i = rng.choice(block)
            line = (
                lines[i].replace("- ", "  ", 1) if lines[i].lstrip().startswith("- ") else lines[i]
            )
            key = line.split(":")[0]
            lines.insert(i + 1, f"{key}: {rng.choice(['9.99', '0', 'other', '[]'])}\n")
        return "".join(lines).encode()

    def duplicate_item(rng, text):
        tree = tree_of(text)
        lists = [(p, n) for p, n in _paths(tree) if isinstance(n, list) and n]
        path, node = rng.choice(lists)
        node.insert(rng.randrange(len(node) + 1), node[rng.randrange(len(node))])
        return _dump(tree).encode()

    def swap_type(rng, text):
        tree = tree_of(text)
        path, _ = rng.choice([p for p in _paths(tree) if p[0]])
        _parent(tree, path)[path[-1]] = rng.choice(SWAPS)
        return _dump(tree).encode()

    def extreme_number(rng, text):
        tree = tree_of(text)
        numbers = [
            (p, n)
            for p, n in _paths(tree)
            if p and isinstance(n, int | float) and not isinstance(n, bool)
        ]
        path, _ = rng.choice(numbers)
        _parent(tree, path)[path[-1]] = "__FUZZ_RAW__"
        token = rng.choice(RAW_TOKENS[:16])
        return _dump(tree).replace("__FUZZ_RAW__", token).encode()

    def raw_token(rng, text):
        return _with_raw(rng, tree_of(text), rng.choice(RAW_TOKENS)).encode()

    def deep_nesting(rng, text):
        n = rng.choice([50, 500, depth])
        return _with_raw(rng, tree_of(text), "[" * n + "]" * n).encode()

    def alias_bomb(rng, text):
        return _with_raw(rng, tree_of(text), bomb(levels, width)).encode()

    def bad_bytes(rng, text):
        data = text.encode()
        kind = rng.choice(["invalid", "nul", "utf16", "latin1", "bom", "cr"])
        if kind == "utf16":
            return text.encode("utf-16")
        if kind == "latin1":
            return text.replace("Ltd", "Lté").encode("latin-1", "replace")
        if kind == "bom":
            return b"\xef\xbb\xbf" + data
        if kind == "cr":
            return data.replace(b"\n", b"\r")
        at = rng.randrange(len(data))
        junk = (
            rng.choice([b"\xff", b"\xfe\xff", b"\xc3", b"\x80\x80"])
            if kind == "invalid"
            else b"\x00"
        )
        return data[:at] + junk + data[at:]

    def truncate(rng, text):
        data = text.encode()
        return data[: rng.randrange(len(data))]

    def add_comment(rng, text):
        # harmless on purpose: a case that must settle (exit 0) keeps the harness honest
        lines = text.splitlines(keepends=True)
        lines.insert(rng.randrange(len(lines) + 1), "# reviewed\n")
        return "".join(lines).encode()

    def edit_lines(rng, text):
        lines = text.splitlines(keepends=True)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        kind = rng.choice(["delete", "duplicate", "swap", "tab", "dedent"])
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "tab":
            lines[i] = "\t" + lines[i]
        else:
            lines[i] = lines[i].lstrip()
        return "".join(lines).encode()

    return {
        "delete_key": delete_key,
        "duplicate_key": duplicate_key,
        "duplicate_item": duplicate_item,
        "swap_type": swap_type,
        "extreme_number": extreme_number,
        "raw_token": raw_token,
        "deep_nesting": deep_nesting,
        "alias_bomb": alias_bomb,
        "bad_bytes": bad_bytes,
        "truncate": truncate,
        "edit_lines": edit_lines,
        "add_comment": add_comment,
    }


FOLDER_OPS = ["directory", "fifo", "dangling_lock_link", "empty_file", "comments_only", "copy"]


def mutate_contracts(rng: random.Random, op: str, folder: Path, heavy: bool = False) -> str:
    """Apply one YAML mutation to one contract file in `folder` (or add a file that is not a
    contract); returns a one-line description of what was done."""
    files = sorted(folder.glob("*.yaml"))
    target = rng.choice(files)
    if op in FOLDER_OPS:
        name = folder / f"zz_{op}.yaml"
        if op == "directory":
            name.mkdir()
        elif op == "fifo":
            os.mkfifo(name)
        elif op == "dangling_lock_link":
            name = folder / f".#{target.name}"
            name.symlink_to(folder / "user@host.12345:1700000000")
        elif op == "empty_file":
            name.write_bytes(b"")
        elif op == "comments_only":
            name.write_text("# nothing here yet\n")
        else:
            shutil.copy(target, name)
        return f"{op}: {name.name}"
    text = target.read_text(encoding="utf-8")
    target.write_bytes(yaml_ops(heavy)[op](rng, text))
    return f"{op}: {target.name}"


YAML_OPS = [*yaml_ops(False), *FOLDER_OPS]

# --------------------------------------------------------------------------- Parquet mutations

PARQUET_OPS = [
    "nulls",
    "duplicate_rows",
    "drop_column",
    "rename_column",
    "extra_column",
    "retype",
    "extremes",
    "empty_table",
    "truncate_file",
    "flip_bytes",
    "zero_bytes",
    "csv_text",
    "directory",
    "fifo",
    "bad_hive_folder",
    "stray_file",
]


def _extreme(rng: random.Random, dtype: pa.DataType):
    if pa.types.is_decimal(dtype):
        with localcontext() as ctx:
            ctx.prec = 80  # the default 28 digits cannot hold DECIMAL(38)'s largest value
            step = Decimal(1).scaleb(-dtype.scale)
            top = Decimal(10) ** (dtype.precision - dtype.scale) - step
            pick = rng.choice([top, -top, Decimal(0), Decimal(10) ** 20, -Decimal(1), step])
            return pick.quantize(step)
    if pa.types.is_integer(dtype):
        bits = dtype.bit_width
        lo, hi = (
            (0, 2**bits - 1)
            if pa.types.is_unsigned_integer(dtype)
            else (
                -(2 ** (bits - 1)),
                2 ** (bits - 1) - 1,
            )
        )
        return rng.choice([lo, hi, 0, -1 if lo < 0 else 0])
    if pa.types.is_date(dtype):
        import datetime as dt

        return rng.choice([dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1)])
    if pa.types.is_timestamp(dtype):
        import datetime as dt

        return rng.choice(
            [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59), dt.datetime(1970, 1, 1)]
        )
    if pa.types.is_boolean(dtype):
        return rng.choice([True, False])
    return rng.choice(["", " ", "x" * 10_000, "\x00", "é☃", "ACME-CONTOSO-01 ", "DROP TABLE x;"])


def _retyped(rng: random.Random, column: pa.ChunkedArray) -> pa.Array:
    dtype = column.type
    values = column.to_pylist()
    if pa.types.is_decimal(dtype):
        choice = rng.choice(["float", "string", "int", "narrow", "wide"])
        if choice == "float":
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        if choice == "string":
            return pa.array([None if v is None else str(v) for v in values], pa.string())
        if choice == "int":
            return pa.array([None if v is None else int(v) for v in values], pa.int64())
        if choice == "narrow":
            return pa.array(
                [None if v is None else v.quantize(Decimal("0.01")) for v in values],
                pa.decimal128(10, 2),
            )
        return pa.array(
            [None if v is None else v * 10**20 for v in values], pa.decimal128(38, 0)
        ).cast(pa.decimal128(38, 0))
    if pa.types.is_timestamp(dtype):
        tz = rng.choice(["UTC", "Europe/London", "+05:00"])
        return column.combine_chunks().cast(pa.timestamp("us", tz))
    if pa.types.is_date(dtype):
        choice = rng.choice(["string", "timestamp", "month_text"])
        if choice == "timestamp":
            return column.combine_chunks().cast(pa.timestamp("ms"))
        fmt = "%Y-%m" if choice == "month_text" else "%Y-%m-%d"
        return pa.array([None if v is None else v.strftime(fmt) for v in values], pa.string())
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.array([None if v is None else len(v) for v in values], pa.int64())


def mutate_inputs(rng: random.Random, op: str, data: Path) -> str:
    """Apply one Parquet mutation under `data`; returns a one-line description."""
    files = sorted(data.glob("*/*.parquet"))
    target = rng.choice(files)
    folder = target.parent
    where = f"{folder.name}/{target.name}"
    if op in ("truncate_file", "flip_bytes", "zero_bytes", "csv_text"):
        raw = target.read_bytes()
        if op == "truncate_file":
            raw = raw[: rng.randrange(len(raw))]
        elif op == "flip_bytes":
            raw = bytearray(raw)
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(len(raw))
                raw[at] ^= 1 << rng.randrange(8)
            raw = bytes(raw)
        elif op == "zero_bytes":
            raw = b""
        else:
            raw = b"contract_id,period,units\nACME-CONTOSO-01,2025-02,100\n"
        target.write_bytes(raw)
        return f"{op}: {where}"
    if op == "directory":
        (folder / "zz.parquet").mkdir()
        return f"{op}: {folder.name}/zz.parquet"
    if op == "fifo":
        os.mkfifo(folder / "zz.parquet")
        return f"{op}: {folder.name}/zz.parquet"
    if op == "stray_file":
        (folder / rng.choice(["notes.txt", ".DS_Store", "part.parquet.crc"])).write_bytes(b"\x00x")
        return f"{op}: {folder.name}/"
    if op == "bad_hive_folder":
        name = rng.choice(["period=2025-13", "period=abc", "period=2025-02-01", "period="])
        (folder / name).mkdir()
        shutil.copy(target, folder / name / "part.parquet")
        return f"{op}: {folder.name}/{name}/"
    table = pq.read_table(target)
    column = rng.randrange(table.num_columns)
    name = table.column_names[column]
    rows = table.num_rows
    if op == "nulls" and rows:
        values = table.column(column).to_pylist()
        for _ in range(rng.randint(1, 3)):
            values[rng.randrange(rows)] = None
        field = table.schema.field(column).with_nullable(True)
        table = table.set_column(column, field, pa.array(values, field.type))
    elif op == "duplicate_rows" and rows:
        start = rng.randrange(rows)
        table = pa.concat_tables([table, table.slice(start, rng.randint(1, 3))])
    elif op == "drop_column":
        table = table.remove_column(column)
    elif op == "rename_column":
        table = table.rename_columns(
            [n.upper() if i == column else n for i, n in enumerate(table.column_names)]
        )
    elif op == "extra_column":
        table = table.append_column(
            rng.choice(["extra", "units", "Period", " contract_id"]),
            pa.array(rng.choices(string.ascii_letters, k=rows), pa.string()),
        )
    elif op == "retype":
        new = _retyped(rng, table.column(column))
        table = table.set_column(column, pa.field(name, new.type), new)
    elif op == "extremes" and rows:
        values = table.column(column).to_pylist()
        field = table.schema.field(column)
        for _ in range(rng.randint(1, 3)):
            values[rng.randrange(rows)] = _extreme(rng, field.type)
        table = table.set_column(column, field, pa.array(values, field.type))
    elif op == "empty_table":
        table = table.slice(0, 0)
    pq.write_table(table, target)
    return f"{op}: {where} column {name}"


# --------------------------------------------------------------------------- one case


class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so the CLI's boundary does not turn it into a bug."""


@dataclass
class Outcome:
    what: str
    code: int | None
    output: str
    db_changed: bool = False
    hang: bool = False

    @property
    def problems(self) -> list[str]:
        found = []
        if self.hang:
            found.append("hang")
        if self.code not in (0, 1) and not self.hang:
            found.append(f"exit {self.code}")
        if "Traceback" in self.output:
            found.append("traceback")
        if self.code == 1 and self.db_changed:
            found.append("partial write")
        return found

    def failure_class(self) -> str:
        """What kind of failure, for counting: the bug's exception type, or the problem."""
        match = re.search(
            r"internal error \(a bug in Settle, not in your data\): (\w+)", self.output
        )
        kind = match.group(1) if match else ""
        op = self.what.split(":")[0]
        return f"{op}: {', '.join(self.problems)} {kind}".strip()


def make_base(root: Path) -> Path:
    """Sample contracts and inputs with SETTLED settled into base.duckdb, under `root`."""
    shutil.copytree(CONTRACTS, root / "contracts_config")
    shutil.copytree(DATA, root / "data_samples")
    db = root / "base.duckdb"
    with _quiet():
        code = cli.run_main(_args(root, db, SETTLED))
    assert code == 0, "the samples must settle before they can be fuzzed"
    return root


def _args(root: Path, db: Path, period: str) -> list[str]:
    return [
        "run",
        "--contracts",
        str(root / "contracts_config"),
        "--data",
        str(root / "data_samples"),
        "--db",
        str(db),
        "--period",
        period,
    ]


@contextlib.contextmanager
def _quiet():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield out


_ALARM = {"fired": False}


def _on_alarm(signum, frame):
    _ALARM["fired"] = True
    raise CaseTimeout()


@contextlib.contextmanager
def _fifo_feeders(root: Path, feed: bool):
    """When `feed`, a thread per FIFO under `root` answers its first reader with a few bytes and
    EOF, so an engine that opens it blocking reads junk instead of hanging: in CI a hang inside C
    code may not be interruptible by the alarm. bench/fuzz.py does not feed, and counts hangs."""
    stop = threading.Event()
    threads = []

    def feed_one(path: Path) -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                stop.wait(0.02)
                continue
            with contextlib.suppress(OSError):
                os.write(fd, b"not a contract or parquet file\n")
            os.close(fd)

    if feed:
        for path in root.rglob("*"):
            if path.is_fifo():
                threads.append(threading.Thread(target=feed_one, args=(path,), daemon=True))
                threads[-1].start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(1)


def run_case(
    base: Path,
    work: Path,
    target: str,
    op: str,
    seed: int,
    heavy: bool = False,
    feed_fifos: bool = False,
):
    """One fuzz case in a fresh copy of `base` under `work`: mutate, run, check."""
    shutil.copytree(base / "contracts_config", work / "contracts_config", symlinks=True)
    shutil.copytree(base / "data_samples", work / "data_samples", symlinks=True)
    db = work / "settlement.duckdb"
    shutil.copy(base / "base.duckdb", db)
    before = db.read_bytes()
    rng = random.Random(seed)
    if target == "yaml":
        what = mutate_contracts(rng, op, work / "contracts_config", heavy)
    else:
        what = mutate_inputs(rng, op, work / "data_samples")
    what = f"{what} (seed {seed})"
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _ALARM["fired"] = False
    signal.alarm(CASE_TIMEOUT_S)
    try:
        with _fifo_feeders(work, feed_fifos), _quiet() as out:
            try:
                code = cli.run_main(_args(work, db, TARGET))
            except CaseTimeout:
                return Outcome(what, None, out.getvalue(), hang=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    changed = db.read_bytes() != before or Path(f"{db}.wal").exists()
    # the alarm can land inside a DuckDB query, which reports it as its own "Query interrupted"
    # error: still the harness's timeout, not the engine's failure
    return Outcome(what, code, out.getvalue(), db_changed=changed, hang=_ALARM["fired"])


# --------------------------------------------------------------------------- the CI test

CASES = int(os.environ.get("FUZZ_CASES", "20"))


# Every case must pass: exit 0 or 1, no traceback, nothing written on exit 1.
def fuzz(test):
    return test


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("fuzz_base"))


def _case(base: Path, tmp_path_factory, target: str, op: str, seed: int) -> Outcome:
    work = tmp_path_factory.mktemp("case")
    try:
        return run_case(base, work, target, op, seed, feed_fifos=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(outcome: Outcome) -> None:
    assert not outcome.problems, f"{outcome.what}: {outcome.problems}\n{outcome.output[-2000:]}"


FUZZ_SETTINGS = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,  # the same cases on every CI run; bench/fuzz.py explores
    database=None,
    phases=[Phase.explicit, Phase.generate],  # a seed does not shrink: report it as found
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@fuzz
@FUZZ_SETTINGS
@given(op=st.sampled_from(YAML_OPS), seed=st.integers(0, 2**31 - 1))
def test_mutated_contract_yaml_is_refused_cleanly(base, tmp_path_factory, op, seed):
    _check(_case(base, tmp_path_factory, "yaml", op, seed))


@fuzz
@FUZZ_SETTINGS
@given(op=st.sampled_from(PARQUET_OPS), seed=st.integers(0, 2**31 - 1))
def test_mutated_parquet_inputs_are_refused_cleanly(base, tmp_path_factory, op, seed):
    _check(_case(base, tmp_path_factory, "parquet", op, seed))


def test_the_fuzzer_sees_a_refusal_and_a_clean_pass(base, tmp_path_factory):
    """The harness itself: a harmless mutation settles (exit 0, the database grows by a run) and
    a plainly bad one (a zero-byte volumes file) is refused with the database unchanged."""
    ok = run_case(base, tmp_path_factory.mktemp("case"), "yaml", "add_comment", 1)
    assert (ok.code, ok.problems) == (0, []), ok.output
    # seed 9 picks volumes/ among the samples' eight input files (pass_through/ and fx_rates/
    # included)
    bad = run_case(base, tmp_path_factory.mktemp("case"), "parquet", "zero_bytes", 9)
    assert bad.what.startswith("zero_bytes: volumes/volumes.parquet")
    assert bad.code == 1 and not bad.db_changed and not bad.problems, bad.output
    assert "error: " in bad.output
