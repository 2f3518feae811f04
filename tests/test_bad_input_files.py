"""Bad input files, out-of-range values and broken invariants are refused without harm.

Each case starts from the settled workspace of tests/test_bad_input.py (January 2024 stored),
breaks one thing and runs `settle run` (or `settle validate`) through the console entry point:
exit code 1, one `error:` paragraph naming the file, the column and the first rows (where the
input has rows) and the rule, no traceback, and every table of the database unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import checks, engine
from tests import test_bad_input as base
from tests.helpers import database_unchanged, entry_exits
from tests.test_bad_input import GOOD, Case, add_volumes, argv, check_error, edit_contract

# the settled workspace of test_bad_input, as fixtures of this module too
settled = base.settled
good = base.good

VOL = "data/volumes/bad.parquet"
KPI = "data/kpis/bad.parquet"
T = dt.datetime(2024, 2, 5, 9, 0, 0)


def write_parquet(folder: str, columns: dict[str, pa.Array], name: str = "bad.parquet"):
    def apply(ws) -> None:
        (ws.data_dir / folder).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), ws.data_dir / folder / name)

    return apply


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every table of the database, every row."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1"
            ).fetchall()
        ]
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}
    finally:
        con.close()


def refused(ws, case: Case, monkeypatch, capfd) -> str:
    tables = snapshot(ws.db)
    with database_unchanged(ws.db):
        case.breaks(ws)
        out, err = entry_exits(monkeypatch, capfd, argv(ws, case))
        check_error(err, out, case, ws)
    assert snapshot(ws.db) == tables
    return err


# --------------------------------------------------------------------------- unreadable files


def _valid_then_truncated(path: Path) -> None:
    pq.write_table(pa.table({"contract_id": pa.array(["ACME-01"] * 100)}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_pages(path: Path) -> None:
    """A valid footer (names and types of interaction columns) over scrambled data pages."""
    n = 5000
    table = pa.table(
        {
            "contract_id": pa.array(["ACME-01"] * n),
            "service_line_id": pa.array(["voice"] * n),
            "arrived_at": pa.array([T + dt.timedelta(seconds=i) for i in range(n)]),
            "handle_s": pa.array([(i * 7919) % 100_000 for i in range(n)], pa.int32()),
        }
    )
    pq.write_table(table, path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(4, len(data) - footer):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


# data pages that made Polars' Rust reader panic (found by bench/fuzz.py: 1 to 8 bits flipped in
# a sample kpis.parquet); the footer is intact, so only decoding the pages finds the damage
PANICKING_PAGES = Path(__file__).parent / "fixtures" / "kpis_corrupt_pages.parquet"

UNREADABLE = {
    "corrupt_pages": _corrupt_pages,
    "truncated": _valid_then_truncated,
    "zero_byte": lambda path: path.write_bytes(b""),
    "csv_renamed": lambda path: path.write_text("contract_id,units\nACME-01,5\n"),
    "directory": lambda path: path.mkdir(),
    # never opened: opening a FIFO for reading blocks until a writer comes
    "fifo": lambda path: os.mkfifo(path),
    "dangling_symlink": lambda path: path.symlink_to(path.parent / "gone.parquet"),
}


def unreadable(folder: str, kind: str):
    def apply(ws) -> None:
        target = ws.data_dir / folder / "bad.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        UNREADABLE[kind](target)

    return apply


FILE_CASES = [
    Case(
        f"{folder}_{kind}",
        unreadable(folder, kind),
        [f"data/{folder}/bad.parquet: not a readable Parquet file (", "(rule: readable Parquet)"],
    )
    for folder in ("volumes", "kpis", "interactions")
    for kind in UNREADABLE
] + [
    Case(
        "kpis_pages_polars_panics_on",
        lambda ws: shutil.copy(PANICKING_PAGES, ws.data_dir / "kpis" / "bad.parquet"),
        ["data/kpis/bad.parquet: not a readable Parquet file (", "(rule: readable Parquet)"],
    )
]


def hive(folder: str, name: str, rows: list[tuple]):
    def apply(ws) -> None:
        ws.write(folder, rows, f"{name}/part.parquet")

    return apply


CASES = [
    *FILE_CASES,
    # ---- hive folder names
    Case(
        "volumes_hive_month_13",
        hive("volumes", "period=2025-13", [("ACME-01", "voice", "2024-02", "5")]),
        [
            "data/volumes/period=2025-13/part.parquet: folder period=2025-13 is not a month",
            "(rule: hive partition)",
        ],
    ),
    Case(
        "interactions_hive_month_13",
        hive("interactions", "period=2025-13", [("ACME-01", "voice", T, T)]),
        ["data/interactions/period=2025-13/part.parquet: folder period=2025-13 is not a month"],
    ),
    Case(
        "interactions_hive_not_a_month",
        hive("interactions", "period=July", [("ACME-01", "voice", T, T)]),
        ["data/interactions/period=July/part.parquet: folder period=July is not a month"],
    ),
    # ---- declared ranges keep every product inside DECIMAL(38)
    Case(
        "units_above_the_declared_range",
        add_volumes(("ACME-01", "voice", "2024-02", "10000000000.000001")),
        [
            f"{VOL}: column units: 1 row(s)",
            "'units <= 10000000000'",
            "row 0 (",
            "units=10000000000.000001",
        ],
    ),
    Case(
        "units_beyond_decimal_38",
        # 10^33 at scale 0 needs 39 digits at the column's scale 6
        write_parquet(
            "volumes",
            {
                "contract_id": pa.array(["ACME-01", "ACME-01"]),
                "service_line_id": pa.array(["voice", "voice"]),
                "period": pa.array([dt.date(2024, 2, 1)] * 2),
                "units": pa.array([Decimal(5), Decimal(10**33)], pa.decimal128(38, 0)),
            },
        ),
        [
            f"{VOL}: column units: 1 row(s)",
            "'units must fit DECIMAL(38, 6) and its declared range'",
            f"row 1 (units={10**33})",
        ],
    ),
    Case(
        "kpi_value_with_30_digits",
        write_parquet(
            "kpis",
            {
                "contract_id": pa.array(["ACME-01"]),
                "kpi_id": pa.array(["abandon_rate"]),
                "period": pa.array([dt.date(2024, 2, 1)]),
                "value": pa.array(
                    [Decimal("123456789012345678901234.123456")], pa.decimal128(38, 6)
                ),
            },
        ),
        [f"{KPI}: column value: 1 row(s)", "'value <= 10000000000'", "row 0 ("],
    ),
    Case(
        "interaction_handle_s_with_30_digits",
        write_parquet(
            "interactions",
            {
                "contract_id": pa.array(["ACME-01"]),
                "service_line_id": pa.array(["voice"]),
                "arrived_at": pa.array([T], pa.timestamp("us")),
                "handle_s": pa.array([Decimal(10**29)], pa.decimal128(38, 0)),
            },
        ),
        [
            "data/interactions/bad.parquet: column handle_s: 1 row(s)",
            "'values must cast to the column's type'",
            f"row 0 (handle_s '{10**29}' does not cast to INTEGER)",
        ],
    ),
    # ---- a share KPI's values lie in [0, 1] (abandon_rate: target 0.05, kind share)
    *[
        Case(
            f"share_kpi_value_{value}",
            (
                lambda v: (
                    lambda ws: ws.kpis([("ACME-01", "abandon_rate", "2024-02", v)], "bad.parquet")
                )
            )(value),
            [
                f"{KPI}: column value: 1 row(s)",
                "'value must lie in the range of its KPI's kind (share: 0 to 1",
                f"row 0 (contract_id=ACME-01, kpi_id=abandon_rate, period=2024-02, value={shown}, "
                "kind=share)",
            ],
        )
        for value, shown in [("1.5", "1.500000"), ("80", "80.000000"), ("-0.1", "-0.100000")]
    ],
    Case(
        "count_kpi_value_not_whole",
        lambda ws: (
            edit_contract(
                "      direction: lower_is_better\n",
                "      direction: lower_is_better\n      kind: count\n",
            )(ws),
            ws.kpis([("ACME-01", "abandon_rate", "2024-02", "2.5")], "bad.parquet"),
        ),
        # January's 0.04 is no count either
        [
            f"{KPI}, data/kpis/part.parquet: column value: 2 row(s)",
            "count: a whole number",
            f"first: {KPI} row 0 (",
            "value=2.500000, kind=count); data/kpis/part.parquet row 0 (",
            "value=0.040000, kind=count)",
        ],
    ),
    Case(
        "share_kpi_with_a_target_of_80",
        edit_contract(
            "      target: 0.05\n      minimum: 0.10\n",
            "      target: 80\n      minimum: 90\n      kind: share\n",
        ),
        [
            "contracts_config/acme.yaml: column target: 1 row(s) break the rule 'a KPI's targets "
            "lie in the range of its kind (a share KPI's from 0 to 1)'",
            "(contract_id=ACME-01, kpi_id=abandon_rate, target_from=2024-01",
            "kind=share)",
        ],
    ),
    # ---- time zones are refused in every folder
    Case(
        "exclusion_window_with_a_time_zone",
        write_parquet(
            "exclusions",
            {
                "contract_id": pa.array(["ACME-01"]),
                "period": pa.array([dt.date(2024, 2, 1)]),
                "reason": pa.array(["outage"]),
                "starts_at": pa.array([T], pa.timestamp("us", tz="Europe/London")),
                "ends_at": pa.array([T + dt.timedelta(hours=2)], pa.timestamp("us", tz="UTC")),
            },
        ),
        [
            "data/exclusions/bad.parquet: column starts_at is a timestamp with a time zone "
            "(Europe/London)",
            "(rule: column type)",
        ],
    ),
    Case(
        "interactions_with_a_time_zone",
        write_parquet(
            "interactions",
            {
                "contract_id": pa.array(["ACME-01"]),
                "service_line_id": pa.array(["voice"]),
                "arrived_at": pa.array([T], pa.timestamp("us", tz="UTC")),
            },
        ),
        [
            "data/interactions/bad.parquet: column arrived_at is a timestamp with a time zone",
            "(rule: column type)",
        ],
    ),
    Case(
        "index_value_above_its_range",
        lambda ws: ws.index_values(
            [("UK_CPI", "2023-10", "100"), ("UK_CPI", "2024-01", "1000000.000001")]
        ),
        [
            "data/index_values/part.parquet: column value: 1 row(s)",
            "'value <= 1000000'",
            "row 1 (index_id=UK_CPI, period=2024-01, value=1000000.000001)",
        ],
    ),
    Case(
        "provider_amount_above_its_range",
        lambda ws: ws.vendor_invoices(
            [("ACME-01", "2024-02", "INV-1", "usage:voice", None, None, None, "10000000000000.01")]
        ),
        [
            "data/vendor_invoices/part.parquet: column amount: 1 row(s)",
            "'amount <= 10000000000000'",
            "amount=10000000000000.0100",
        ],
    ),
    Case(
        "exclusion_outside_the_contract_term",
        lambda ws: ws.write("exclusions", [("ACME-01", None, "2025-03", "strike")], "bad.parquet"),
        [
            "data/exclusions/bad.parquet: column period: 1 row(s)",
            "'period must lie inside the contract term (start..end)'",
            "row 0 (contract_id=ACME-01, kpi_id=None, period=2025-03",
        ],
    ),
    # ---- validate rejects what run would reject for missing data
    Case(
        "validate_missing_index_value",
        # the April 2024 review reads UK_CPI for 2024-01 (lag 3); April has volumes, 2024-01 is gone
        lambda ws: (
            ws.volumes([("ACME-01", "voice", "2024-04", "5")], "bad.parquet"),
            ws.index_values([("UK_CPI", "2023-10", "100")]),
        ),
        [
            "index_values/: column value: 1 row(s) break the rule 'every indexation review reads "
            "the index value of its reference months'",
            "(contract_id=ACME-01, index_id=UK_CPI, period=2024-01, review_period=2024-04)",
        ],
        command="validate",
    ),
    Case(
        "validate_missing_required_kpi",
        # kpis/ holds abandon_rate for 2024-01 only; February has volumes
        lambda ws: (
            edit_contract(
                "      direction: lower_is_better\n",
                "      direction: lower_is_better\n      required: true\n",
            )(ws),
            ws.volumes([("ACME-01", "voice", "2024-02", "5")], "bad.parquet"),
        ),
        [
            "kpis/: column value: 1 row(s) break the rule 'a KPI with required: true has a value "
            "every settled month'",
            "(contract_id=ACME-01, kpi_id=abandon_rate, period=2024-02)",
        ],
        command="validate",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_file_is_refused_and_every_table_is_unchanged(good, case, monkeypatch, capfd):
    refused(good, case, monkeypatch, capfd)


# --------------------------------------------------------------------------- the bounds hold


def test_units_at_the_declared_bound_settle_without_overflow(good):
    good.volumes([("ACME-01", "voice", "2024-02", "10000000000")], "feb.parquet")
    # abandon_rate 0.08 fails its 0.05 target: a linear credit at the bound too
    good.kpis([("ACME-01", "abandon_rate", "2024-02", "0.08")], "feb.parquet")
    good.settle("2024-02")
    lines = good.lines("2024-02")
    # graduated: 50,000 x 2.40 + 30,000 x 2.10 + (10,000,000,000 - 80,000) x 1.90
    #          = 120,000 + 63,000 + 18,999,848,000 = 19,000,031,000.00 (no review before April)
    assert lines["usage:voice"] == Decimal("19000031000.00")
    # at risk 10% x allocation 40% x severity (0.08 - 0.05) / (0.10 - 0.05) = 0.6
    # = 19,000,031,000 x 0.024 = 456,000,744.00, credited
    assert lines["credit:abandon_rate"] == Decimal("-456000744.00")


def test_a_share_kpi_without_kind_defaults_to_share_and_a_score_to_score(good):
    # abandon_rate's target 0.05 lies in [0, 1]: share, so 0.04 passes; a target of 60 (a score)
    # lets a value of 75 through
    good.contracts_dir.joinpath("acme.yaml").write_text(
        GOOD.replace("target: 0.05\n      minimum: 0.10", "target: 60\n      minimum: 90")
    )
    good.kpis([("ACME-01", "abandon_rate", "2024-02", "75")], "feb.parquet")
    good.volumes([("ACME-01", "voice", "2024-02", "1000")], "feb.parquet")
    good.settle("2024-02")


# --------------------------------------------------------------------------- invariants


def test_a_broken_invariant_fails_the_run_and_writes_nothing(good, tmp_path, monkeypatch, capfd):
    """A test-only mutation of the settlement SQL: every invoice line one cent above the line it
    was built from. The invariant invoice_adds_up must catch it inside the run's transaction."""
    sql = tmp_path / "sql"
    shutil.copytree(engine.SQL_DIR, sql)
    invoice = sql / "09_invoice.sql"
    text = invoice.read_text()
    line = "CAST(l.amount AS DECIMAL(38, 4)) AS amount"
    assert line in text
    invoice.write_text(text.replace(line, "CAST(l.amount + 0.01 AS DECIMAL(38, 4)) AS amount"))
    monkeypatch.setattr(engine, "SQL_DIR", sql)
    good.volumes([("ACME-01", "voice", "2024-02", "1000")], "feb.parquet")
    case = Case(
        "invariant",
        lambda ws: None,
        [
            "invariant invoice_adds_up broken: invoice_lines of the run: column amount: 1 row(s) ",
            "break the rule 'per contract-month, the invoice's charge",
            "(contract=ACME-01, month=2024-02, part=charges (charge_lines), on the invoice=",
            "This is a bug in Settle, not in the inputs",
        ],
    )
    refused(good, case, monkeypatch, capfd)


def test_the_invariants_hold_on_a_good_run(good):
    """The same invariants, run by the engine on every run, find nothing on good input."""
    good.volumes([("ACME-01", "voice", "2024-02", "1000")], "feb.parquet")
    good.settle("2024-02")
    con = duckdb.connect(str(good.db), read_only=True)
    try:
        run_id = con.execute("SELECT max(run_id) FROM settlement_runs").fetchone()[0]
        stored = [c for c in engine.all_checks() if c.stage == "stored"]
        assert [c.name for c in stored] == [
            "invoice_adds_up",
            "credits_within_cap",
            "rounded_splits_add_up",
            "gain_share_within_cap",
        ]
        # gain_share_within_cap reads the contracts' scale: only inside a run (skipped here)
        for check in stored[:3]:
            assert con.execute(check.sql, {"run_id": run_id}).fetchall() == []
    finally:
        con.close()


# --------------------------------------------------------------------------- the declarations


def test_every_check_is_declared_once_with_its_rule_and_a_known_stage():
    declared = engine.all_checks()  # raises on a stage that names no step
    names = [c.name for c in declared]
    assert len(names) == len(set(names))
    assert all(c.rule and c.sql.lstrip().upper().startswith(("SELECT", "WITH")) for c in declared)
    by_stage = {c.name: c.stage for c in declared}
    assert by_stage["index_values_present"] == "indexation"
    assert by_stage["required_kpis_present"] == "kpi_results"
    assert by_stage["invoice_adds_up"] == "stored"
    assert by_stage["exclusions_in_term"] == "inputs"


def test_a_check_block_is_parsed_from_its_headers():
    [check] = checks.parse(
        "-- a file comment\n\n"
        "-- name: demo\n-- stage: pricing\n-- rule: units must be even\n-- hint: Fix it.\n"
        "-- a comment inside the block\nSELECT 1 AS x\nWHERE false;\n"
    )
    assert check == checks.Check(
        name="demo",
        rule="units must be even",
        sql="SELECT 1 AS x\nWHERE false",
        stage="pricing",
        hint="Fix it.",
    )
