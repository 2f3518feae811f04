"""Closed months are not re-measured (SPEC 12): a month-end run does not open the interaction
files of closed months, and re-measures exactly the closed month whose files changed.

The contract is test_measures' (every metric, low targets: with every call answered within 5 s
all of its KPIs are met). Running as root, chmod 000 would not stop a read, so the closed months'
files are also overwritten with garbage of the same size and put back at their old mtime: a run
that opened one would fail to parse it.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from .test_measures import MEASURES, at
from .test_measures import interactions as rows_of


def _month(day: str, wait_s: str) -> list[tuple]:
    # two calls answered after wait_s, handled 100 s, resolved, csat 9
    return rows_of([(day, at(wait_s, day), None, 100, True, 9)] * 2)


def _blind(path) -> None:
    """Make a file unreadable and unparseable without changing its size or mtime."""
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.chmod(0)


def test_month_end_leaves_closed_months_unopened_until_one_changes(ws):
    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", m, "1000") for m in ("2024-01", "2024-02", "2024-03", "2024-04")])
    jan = ws.interactions(_month("2024-01-10 09:00:00", "5"), "period=2024-01/part.parquet")
    feb = ws.interactions(_month("2024-02-10 09:00:00", "5"), "period=2024-02/part.parquet")
    ws.interactions(_month("2024-03-10 09:00:00", "5"), "period=2024-03/part.parquet")
    ws.interactions(_month("2024-04-10 09:00:00", "5"), "period=2024-04/part.parquet")
    ws.settle("2024-01", "2024-02")
    ws.close("2024-01")
    ws.close("2024-02")
    recorded = {
        r["file"]: r["sha256"]
        for r in ws.rows("SELECT file, sha256 FROM run_inputs WHERE run_id = 1")
        if r["file"].startswith("interactions/period=2024-0")
    }
    _blind(jan)
    _blind(feb)

    # month-end March: both closed months are left unopened, and nothing is restated
    result = ws.settle("2024-03")
    assert result.adjustments == []
    read = {
        r["file"]: r["sha256"]
        for r in ws.rows("SELECT file, sha256 FROM run_inputs WHERE run_id = 2")
        if r["file"].endswith(".parquet")
    }
    # the closed months' hashes are carried over from their closing run, not re-hashed
    assert (
        read["interactions/period=2024-01/part.parquet"]
        == recorded["interactions/period=2024-01/part.parquet"]
    )
    assert (
        read["interactions/period=2024-02/part.parquet"]
        == recorded["interactions/period=2024-02/part.parquet"]
    )
    # run 2 stored counts for March only (2 calls, both answered)
    stored = ws.rows(
        "SELECT period, interactions, answered FROM interaction_counts "
        "WHERE run_id = 2 AND kind = 'all'"
    )
    assert [(r["period"].month, r["interactions"], r["answered"]) for r in stored] == [(3, 2, 2)]

    ws.close("2024-03")

    # February's calls are re-delivered: both answered after 30 s, so every service-level KPI
    # of February fails (A_T = 0 of A = 2, below the 0.1 target); January stays unopened
    feb.chmod(0o644)
    ws.interactions(_month("2024-02-10 09:00:00", "30"), "period=2024-02/part.parquet")
    result = ws.settle("2024-04")
    reasons = {(a["period"].month, a["reason"]) for a in result.adjustments}
    assert reasons == {(2, "interactions of 2024-02 changed")}
    # the restated February carries credits, billed on April (the next open month)
    assert min(a["delta"] for a in result.adjustments) < Decimal(0)
    # January is still garbage on disk: the run succeeded, so it was never read
    assert jan.read_bytes() == b"\0" * jan.stat().st_size


def test_settle_run_reads_counts_counted_ahead(ws, tmp_path):
    """The spark-submit job's flow, on DuckDB: count a month ahead into a folder, then
    `settle run --counts-dir` settles it without opening its files."""
    from click.testing import CliRunner

    from pipelines import cli
    from pipelines.closed_months import count_ahead
    from pipelines.periods import parse_period

    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", "2024-01", "1000")])
    jan = ws.interactions(_month("2024-01-10 09:00:00", "30"), "period=2024-01/part.parquet")
    counts = tmp_path / "team's counts"  # a quote in the folder: SQL literals are escaped
    month = parse_period("2024-01")
    summary = count_ahead(ws.contracts_dir, ws.data_dir, counts, month, month, "duckdb")
    assert summary["months"] == ["2024-01"] and summary["files"] == 1
    _blind(jan)
    result = CliRunner().invoke(
        cli.main,
        ["run", "--period", "2024-01", "--contracts", str(ws.contracts_dir), "--data",
         str(ws.data_dir), "--db", str(ws.db), "--counts-dir", str(counts)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # two calls answered after 30 s: A_T(20 s) / A = 0 / 2 = 0; ASA = 60 s / 2 = 30 s
    values = {
        r["kpi_id"]: r["value"]
        for r in ws.rows(
            "SELECT kpi_id, value FROM kpi_results WHERE kpi_id IN ('sl_ignore', 'asa')"
        )
    }
    assert values == {"sl_ignore": 0, "asa": 30}


def test_counts_that_cannot_be_written_leave_no_manifest_to_trust(ws, tmp_path):
    # the manifest was written after the Parquet, over the old one: a failed write left the old
    # manifest vouching for new or half-written counts. Now it goes first and comes back last.
    from pipelines.closed_months import count_ahead
    from pipelines.errors import SettleError
    from pipelines.periods import parse_period

    ws.contract(MEASURES)
    ws.volumes([("M1", "voice", "2024-01", "1000")])
    ws.interactions(_month("2024-01-10 09:00:00", "30"), "period=2024-01/part.parquet")
    counts, month = tmp_path / "team's counts", parse_period("2024-01")
    count_ahead(ws.contracts_dir, ws.data_dir, counts, month, month, "duckdb")
    folder = counts / "period=2024-01"
    assert (folder / "manifest.json").is_file()
    # the counts file can no longer be replaced: a non-empty folder stands in its place
    (folder / "interaction_counts.parquet").unlink()
    (folder / "interaction_counts.parquet").mkdir()
    (folder / "interaction_counts.parquet" / "keep").write_text("")
    with pytest.raises(SettleError, match=r"interaction counts of 2024-01 could not be written"):
        count_ahead(ws.contracts_dir, ws.data_dir, counts, month, month, "duckdb")
    assert sorted(p.name for p in folder.iterdir()) == ["interaction_counts.parquet"]
