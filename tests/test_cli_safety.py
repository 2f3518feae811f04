"""The command line's boundary: refused arguments and targets, the bug boundary, disk full.

Every case runs the console script's own code (`cli.run_main`, what `entry()` exits with)
in-process on a copy of a database that already holds a settled month, and checks the exit code,
the one `error:` paragraph, that no traceback reaches the console, and that the database is
unchanged (its bytes) or was never created. The disk-full cases need a write limit on the process,
so they run `.venv/bin/settle` as a subprocess under RLIMIT_FSIZE (Python ignores SIGXFSZ, so a
write past the limit fails with EFBIG, as a write to a full disk fails with ENOSPC).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines import cli, engine
from pipelines.errors import BUG_EXIT

ROOT = Path(__file__).resolve().parent.parent
SETTLE = Path(sys.executable).parent / "settle"
MONTH = "2025-01"


@pytest.fixture(scope="module")
def settled(tmp_path_factory) -> Path:
    """The sample contracts and inputs with MONTH settled once, for every test to copy."""
    root = tmp_path_factory.mktemp("settled")
    shutil.copytree(ROOT / "contracts_config", root / "contracts_config")
    shutil.copytree(ROOT / "data_samples", root / "data_samples")
    code = cli.run_main(argv(root, "run", "--period", MONTH))
    assert code == 0
    return root


class Space:
    def __init__(self, root: Path):
        self.root = root
        self.db = root / "settlement.duckdb"

    def bytes(self) -> bytes:
        return self.db.read_bytes()

    def tables(self) -> dict[str, list[tuple]]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() ORDER BY table_name"
                ).fetchall()
            ]
            return {
                n: sorted(map(repr, con.execute(f"SELECT * FROM {n}").fetchall())) for n in names
            }


@pytest.fixture
def space(settled, tmp_path) -> Space:
    for name in ("contracts_config", "data_samples"):
        (tmp_path / name).symlink_to(settled / name)
    shutil.copy(settled / "settlement.duckdb", tmp_path / "settlement.duckdb")
    return Space(tmp_path)


def argv(root: Path, command: str, *rest: str, db: str | None = None) -> list[str]:
    common = ["--db", str(root / "settlement.duckdb") if db is None else db]
    if command in ("run", "validate"):
        common += [
            "--contracts",
            str(root / "contracts_config"),
            "--data",
            str(root / "data_samples"),
        ]
    return [command, *common, *rest]


def call(capfd, args: list[str]) -> tuple[int, str, str]:
    code = cli.run_main(args)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def refused(capfd, args: list[str], *expect: str) -> str:
    code, out, err = call(capfd, args)
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    for piece in expect:
        assert piece in errors[0], errors[0]
    return errors[0]


# --------------------------------------------------------------------------- report --out


def test_report_refuses_to_write_over_the_database(space, capfd):
    before = space.bytes()
    refused(
        capfd,
        argv(space.root, "report", "--period", MONTH, "--out", str(space.db)),
        f"--out {space.db}",
        "is the settlement database",
    )
    assert space.bytes() == before
    # the same file under another name: a relative path and a symlink
    link = space.root / "link.xlsx"
    link.symlink_to(space.db)
    refused(capfd, argv(space.root, "report", "--period", MONTH, "--out", str(link)), "database")
    assert space.bytes() == before


def test_report_refuses_to_overwrite_a_file_it_did_not_write(space, capfd):
    other = space.root / "budget.xlsx"
    other.write_bytes(b"someone's spreadsheet")
    refused(
        capfd,
        argv(space.root, "report", "--period", MONTH, "--out", str(other)),
        "is not a settlement pack",
        "refusing to overwrite",
    )
    assert other.read_bytes() == b"someone's spreadsheet"


@pytest.mark.parametrize("kind", ["folder", "device", "under_a_file", "dangling_link"])
def test_report_to_an_unwritable_target_is_a_clear_error(space, capfd, kind):
    target = {
        "folder": space.root,
        "device": Path("/dev/full"),
        "under_a_file": space.root / "notes.txt" / "pack.xlsx",
        "dangling_link": space.root / "gone.xlsx",
    }[kind]
    (space.root / "notes.txt").write_text("notes")
    if kind == "dangling_link":
        target.symlink_to(space.root / "nowhere" / "x.xlsx")
    listing = sorted(os.listdir(space.root))
    message = refused(capfd, argv(space.root, "report", "--period", MONTH, "--out", str(target)))
    expect = {
        "folder": "is a folder",
        "device": "not a regular file",
        "under_a_file": "is a file, not a folder",
        "dangling_link": "not a regular file",
    }[kind]
    assert expect in message and "Nothing was written" in message
    assert sorted(os.listdir(space.root)) == listing  # no temporary file left behind


@pytest.mark.parametrize("pack_format", ["xlsx", "html"])
def test_report_replaces_its_own_pack(space, capfd, pack_format):
    out = space.root / "packs" / f"pack.{pack_format}"
    args = argv(space.root, "report", "--period", MONTH, "--format", pack_format, "--out", str(out))
    assert call(capfd, args)[0] == 0
    first = out.read_bytes()
    assert call(capfd, args)[0] == 0  # a rerun overwrites the pack it wrote
    assert out.read_bytes() == first
    assert sorted(os.listdir(out.parent)) == [out.name]


def _limited(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_report_that_cannot_be_written_leaves_nothing(space):
    out = space.root / "pack.xlsx"
    done = subprocess.run(
        [str(SETTLE), *argv(space.root, "report", "--period", MONTH, "--out", str(out))],
        capture_output=True,
        text=True,
        preexec_fn=_limited(4096),  # the workbook is tens of KB: its write fails part way
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "the pack could not be written" in done.stderr
    assert not out.exists()
    assert not [p for p in os.listdir(space.root) if p.endswith(".tmp")]


# --------------------------------------------------------------------------- disk full at commit


def test_a_commit_on_a_full_disk_is_a_clear_error_and_the_database_is_intact(space):
    before = space.tables()
    done = subprocess.run(
        [str(SETTLE), *argv(space.root, "run", "--period", "2025-02")],
        capture_output=True,
        text=True,
        # far below what a month's run writes to the WAL, far above what validation needs
        preexec_fn=_limited(20_000),
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {space.db}: the transaction could not be committed")
    assert "File too large" in last and "Nothing was written" in last
    assert space.tables() == before


def test_out_of_memory_is_a_clear_error_and_the_database_is_intact(space, capfd, monkeypatch):
    # 2 MB is far below what settling a month of the samples needs, so DuckDB gives up mid-run
    monkeypatch.setenv("SETTLE_MEMORY_LIMIT", "2MB")
    before = space.tables()
    line = refused(capfd, argv(space.root, "run", "--period", "2025-02"), "Nothing was written")
    assert "memory" in line.lower() and "SETTLE_MEMORY_LIMIT" in line
    monkeypatch.delenv("SETTLE_MEMORY_LIMIT")
    assert space.tables() == before


def test_a_failed_first_run_leaves_no_database_behind(space, capfd, monkeypatch):
    monkeypatch.setenv("SETTLE_MEMORY_LIMIT", "2MB")
    new = space.root / "new.duckdb"
    refused(capfd, argv(space.root, "run", "--period", MONTH, db=str(new)), "SETTLE_MEMORY_LIMIT")
    assert not new.exists() and not Path(f"{new}.wal").exists()


# --------------------------------------------------------------------------- never create a db


@pytest.mark.parametrize(
    "command",
    [
        ["close", "--period", MONTH],
        ["explain", "--contract", "ACME-CONTOSO-01", "--period", MONTH],
        ["report", "--period", MONTH],
    ],
    ids=["close", "explain", "report"],
)
def test_read_only_commands_never_create_a_database(space, capfd, command):
    missing = space.root / "missing.duckdb"
    refused(capfd, [*argv(space.root, *command, db=str(missing))], str(missing), "no such database")
    assert not missing.exists()
    assert not Path(f"{missing}.wal").exists()


def test_a_dry_run_on_a_new_path_creates_no_database(space, capfd):
    new = space.root / "new.duckdb"
    code, out, _ = call(capfd, argv(space.root, "run", "--period", MONTH, "--dry-run", db=str(new)))
    assert code == 0
    assert "dry run: nothing written" in out
    assert not new.exists() and not Path(f"{new}.wal").exists()


@pytest.mark.parametrize("db", [":memory:", ":memory:x", "md:settle", ""])
@pytest.mark.parametrize("command", ["run", "close", "report"])
def test_a_database_that_is_not_a_file_is_refused(space, capfd, db, command):
    refused(capfd, argv(space.root, command, "--period", MONTH, db=db), "must be a file on disk")


# --------------------------------------------------------------------------- strict arguments


@pytest.mark.parametrize(
    "text",
    [
        " 2025-07 ",
        "2025-07 ",
        "２０２５-07",
        "2025W281",
        "2025-7",
        "2025-13",
        "2025-00",
        "2025-07\n",
    ],
)
@pytest.mark.parametrize("option", ["--period", "--to"])
def test_months_are_strict_ascii_yyyy_mm(space, capfd, text, option):
    before = space.bytes()
    args = ["--period", text] if option == "--period" else ["--period", MONTH, "--to", text]
    refused(capfd, argv(space.root, "run", *args), f"{option} {text!r} is not a month (YYYY-MM)")
    assert space.bytes() == before


@pytest.mark.parametrize("text", ["0001-01", "1899-12", "9999-01", "9999-12"])
@pytest.mark.parametrize(
    "command",
    [["run"], ["close"], ["report"], ["explain", "--contract", "ACME-CONTOSO-01"]],
    ids=["run", "close", "report", "explain"],
)
def test_months_outside_the_supported_years_are_refused(space, capfd, text, command):
    # the engine looks a year and more either side of a month; Python's dates end at 1 and 9999
    before = space.bytes()
    refused(
        capfd,
        argv(space.root, *command, "--period", text),
        f"--period {text!r} is outside 1900-01..9998-12",
    )
    assert space.bytes() == before


@pytest.mark.parametrize(
    "text", ["2025W281", "2025-W28-1", "20250710", " 2025-07-10", "2025-02-30", "２０２５-07-10"]
)
def test_as_known_at_is_a_strict_yyyy_mm_dd_date(space, capfd, text):
    before = space.bytes()
    refused(
        capfd,
        argv(space.root, "run", "--period", MONTH, "--as-known-at", text),
        f"--as-known-at {text!r} is not a date (YYYY-MM-DD)",
    )
    assert space.bytes() == before


@pytest.mark.parametrize("wait", ["abc", "nan", "inf", "-inf", "-5", ""])
def test_the_lock_wait_must_be_a_finite_number_of_seconds(space, capfd, monkeypatch, wait):
    before = space.bytes()
    monkeypatch.setenv("SETTLE_LOCK_WAIT_S", wait)
    for command in (["run", "--period", "2025-02"], ["close", "--period", MONTH]):
        refused(capfd, argv(space.root, *command), f"SETTLE_LOCK_WAIT_S={wait!r}", "0 or more")
    assert space.bytes() == before


def test_a_zero_lock_wait_is_accepted(space, capfd, monkeypatch):
    monkeypatch.setenv("SETTLE_LOCK_WAIT_S", "0")
    # --force: the month is neither approved nor disputed, which is not what this test is about
    assert call(capfd, argv(space.root, "close", "--period", MONTH, "--force"))[0] == 0


def test_contracts_as_a_comma_list_or_repeated_are_the_same(space, capfd):
    one = call(
        capfd,
        argv(
            space.root,
            "run",
            "--period",
            MONTH,
            "--dry-run",
            "--contract",
            "ACME-CONTOSO-01,FABRIKAM-TELCO-01",
        ),
    )
    two = call(
        capfd,
        argv(
            space.root,
            "run",
            "--period",
            MONTH,
            "--dry-run",
            "--contract",
            "ACME-CONTOSO-01",
            "--contract",
            "FABRIKAM-TELCO-01",
        ),
    )
    assert one[0] == two[0] == 0
    assert one[1] == two[1]
    assert "2 invoices" in one[1]
    refused(capfd, argv(space.root, "run", "--period", MONTH, "--contract", "A,,B"), "empty")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_short_help_works_everywhere(capfd, flag):
    for command in ([], ["run"], ["report"]):
        code, out, _ = call(capfd, [*command, flag])
        assert code == 0 and out.startswith("Usage: settle")


# --------------------------------------------------------------------------- the bug boundary


def _a_bug(*args, **kwargs):
    # stands in for a defect anywhere below the CLI: an exception that is not a SettleError
    raise KeyError("charge_lines")


def test_an_internal_error_is_one_paragraph_with_a_log_and_its_own_exit_code(
    space, capfd, monkeypatch, tmp_path
):
    logs = tmp_path / "logs"
    monkeypatch.setenv("SETTLE_LOG_DIR", str(logs))
    monkeypatch.setattr(engine, "settle", _a_bug)
    before = space.bytes()
    code, out, err = call(capfd, argv(space.root, "run", "--period", "2025-02"))
    assert code == BUG_EXIT == 70
    [line] = err.strip().splitlines()
    assert line.startswith("error: internal error (a bug in Settle, not in your data): KeyError")
    [log] = list(logs.iterdir())
    assert str(log) in line
    assert "Traceback (most recent call last)" in log.read_text()
    assert "_a_bug" in log.read_text()
    assert space.bytes() == before


def _a_rust_panic(*args, **kwargs):
    # a real panic of a Rust library below the CLI: Polars' reader on pages it cannot decode
    import polars as pl

    pl.read_parquet(ROOT / "tests" / "fixtures" / "kpis_corrupt_pages.parquet")


def test_a_rust_panic_is_a_bug_paragraph_not_a_traceback(space, capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("SETTLE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(engine, "settle", _a_rust_panic)
    before = space.bytes()
    code, out, err = call(capfd, argv(space.root, "run", "--period", "2025-02"))
    assert code == BUG_EXIT
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("error: internal error (a bug in Settle, not in your data): PanicException")
    )
    assert space.bytes() == before


def test_debug_prints_the_traceback_too(space, capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("SETTLE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(engine, "settle", _a_bug)
    code = cli.run_main(["--debug", *argv(space.root, "run", "--period", "2025-02")])
    _, err = capfd.readouterr()
    assert code == BUG_EXIT
    assert "Traceback (most recent call last)" in err and "_a_bug" in err
    assert err.strip().splitlines()[-1].startswith("error: internal error")


def test_the_installed_command_exits_with_the_bug_code_without_a_traceback(space, tmp_path):
    # the console script itself, in its own interpreter, with a defect injected into the engine
    env = {**os.environ, "SETTLE_LOG_DIR": str(tmp_path / "logs")}
    code = (
        "import sys; from pipelines import cli, engine\n"
        "engine.sql_files = lambda: (_ for _ in ()).throw(ZeroDivisionError('boom'))\n"
        "sys.argv = ['settle'] + sys.argv[1:]\n"
        "cli.entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv(space.root, "run", "--period", "2025-02")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == BUG_EXIT, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "ZeroDivisionError: boom" in done.stderr


# --------------------------------------------------------------------------- the Dagster boundary


def _materialize(space: Space):
    import dagster as dg

    from pipelines.orchestration.resources import SettleFiles
    from pipelines.orchestration.settlement import settle
    from pipelines.orchestration.validation import validated_inputs

    files = SettleFiles(
        contracts_dir=str(space.root / "contracts_config"),
        data_dir=str(space.root / "data_samples"),
        db_path=str(space.db),
    )
    return dg.materialize(
        [validated_inputs, settle],
        resources={"settle": files},
        partition_key="2025-02",
        raise_on_error=False,
    )


def test_dagster_fails_a_settle_error_with_its_paragraph(space, monkeypatch):
    monkeypatch.setenv("SETTLE_LOCK_WAIT_S", "inf")
    before = space.bytes()
    result = _materialize(space)
    assert not result.success
    failure = result.failure_data_for_node("settle").user_failure_data
    assert failure.description.startswith("SETTLE_LOCK_WAIT_S='inf': must be a number of seconds")
    assert space.bytes() == before


def test_dagster_fails_a_bug_as_one_paragraph_with_the_traceback_kept(space, monkeypatch, tmp_path):
    monkeypatch.setenv("SETTLE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(engine, "settle", _a_bug)
    result = _materialize(space)
    assert not result.success
    failure = result.failure_data_for_node("settle").user_failure_data
    assert failure.description.startswith("internal error (a bug in Settle, not in your data)")
    [log] = list((tmp_path / "logs").iterdir())
    assert str(log) in failure.description
    assert "_a_bug" in failure.metadata["traceback"].value


def test_output_to_a_full_disk_is_a_clear_error(space):
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(SETTLE), *argv(space.root, "validate")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: cannot write to standard output: No space left on device.")
    )


def test_ctrl_c_inside_a_query_is_an_interruption_not_a_bug(space, capfd, monkeypatch):
    # DuckDB reports a signal that lands inside a query as RuntimeError("Query interrupted")
    def interrupted(*args, **kwargs):
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(engine, "settle", interrupted)
    code, _, err = call(capfd, argv(space.root, "run", "--period", "2025-02"))
    assert code == 130
    assert err.strip() == "interrupted: nothing was written"


def test_the_engine_connections_draw_no_progress_bar(space):
    # DuckDB draws it on the process's stdout for any query over 2 s, inside the results table
    con = engine.connect_for_write(space.db)
    try:
        setting = "SELECT current_setting('enable_progress_bar')"
        assert con.execute(setting).fetchone() == (False,)
    finally:
        con.close()
    with engine.write_transaction(space.root / "new.duckdb", commit=False) as dry:
        assert dry.execute(setting).fetchone() == (False,)
