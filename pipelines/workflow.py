"""Month-end decisions by people (SPEC 11): approve an invoice, dispute a line, resolve a dispute.

Each decision is an append-only event row (`approvals`, `disputes`) that names the run it was made
on, who made it and when; the `current_` views show where each stands. Nothing here computes a
figure: a dispute's default amount is the stored reconciliation difference of its line, and a
settled dispute's amount is billed by the next settlement run (sql/10_adjustments.sql).
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import pyarrow as pa

from .engine import SQL_DIR, ensure_schema, write_transaction
from .errors import SettleError
from .periods import fmt, month_range

OUTCOMES = ("accepted", "rejected", "settled")


def default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def require_db(db_path: Path) -> None:
    if str(db_path) == ":memory:" or not Path(db_path).is_file():
        raise SettleError(
            f"{db_path}: no settlement database there; run `settle run` first (or pass --db)."
        )


def connect_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    """The database for readers: opened read-only, never created."""
    require_db(db_path)
    try:
        return duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        raise SettleError(f"{db_path}: cannot open the database read-only: {exc}") from None


def parse_amount(text: str | None, option: str = "--amount") -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise SettleError(f"{option} {text!r} is not a decimal amount (e.g. -120.50)") from None
    if not value.is_finite() or value.as_tuple().exponent < -4 or abs(value) >= Decimal(10) ** 30:
        raise SettleError(
            f"{option} {text!r}: an amount has at most 4 decimal places and 30 integer digits"
        )
    return value


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _has_results(con: duckdb.DuckDBPyConnection) -> bool:
    """True once a run has stored invoices (the current_ result views exist from then on)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = 'current_invoice_lines'"
        ).fetchone()[0]
    )


# --------------------------------------------------------------------------- approve


@dataclass
class Approval:
    contract_id: str
    period: dt.date
    run_id: int
    approval_id: int | None  # None: nothing recorded (already approved, or closed)
    note: str


def approve(
    db_path: Path,
    period: dt.date,
    to: dt.date | None = None,
    contract_ids: set[str] | None = None,
    by: str | None = None,
    note: str | None = None,
) -> list[Approval]:
    """Approve the current invoice of each settled contract-month in the range."""
    require_db(db_path)
    last = to or period
    months = month_range(period, last)
    by = by or default_user()
    with write_transaction(db_path) as con:
        ensure_schema(con)
        candidates = _rows(
            con,
            """
            SELECT c.contract_id, c.period, c.run_id, c.status,
                   a.run_id AS approved_run_id
            FROM current_run_periods c
            LEFT JOIN current_approvals a USING (contract_id, period)
            WHERE c.period BETWEEN ? AND ?
            ORDER BY c.contract_id, c.period
            """,
            [period, last],
        )
        if contract_ids:
            candidates = [r for r in candidates if r["contract_id"] in contract_ids]
        _require_settled(candidates, contract_ids, months)
        done: list[Approval] = []
        # fetchall: register() below refuses a connection with a result left unread
        next_id = con.execute("SELECT coalesce(max(approval_id), 0) FROM approvals").fetchall()[0][
            0
        ]
        for r in candidates:
            if r["status"] == "closed":
                done.append(Approval(r["contract_id"], r["period"], r["run_id"], None, "closed"))
                continue
            if r["approved_run_id"] == r["run_id"]:
                done.append(
                    Approval(r["contract_id"], r["period"], r["run_id"], None, "already approved")
                )
                continue
            next_id += 1
            done.append(Approval(r["contract_id"], r["period"], r["run_id"], next_id, "approved"))
        new = [a for a in done if a.approval_id is not None]
        if new:
            # one INSERT for the whole range (a row at a time took 24 s for 35,000 months)
            at = _now()
            rows = pa.table(
                {
                    "approval_id": pa.array([a.approval_id for a in new], pa.int64()),
                    "contract_id": pa.array([a.contract_id for a in new], pa.string()),
                    "period": pa.array([a.period for a in new], pa.date32()),
                    "run_id": pa.array([a.run_id for a in new], pa.int64()),
                    "approved_by": pa.array([by] * len(new), pa.string()),
                    "approved_at": pa.array([at] * len(new), pa.timestamp("us")),
                    "note": pa.array([note] * len(new), pa.string()),
                }
            )
            con.register("_new_approvals", rows)
            try:
                con.execute("INSERT INTO approvals BY NAME SELECT * FROM _new_approvals")
            finally:
                con.unregister("_new_approvals")
    return done


def _require_settled(candidates: list[dict], contract_ids: set[str] | None, months) -> None:
    found = {(r["contract_id"], r["period"]) for r in candidates}
    wanted = contract_ids or {r["contract_id"] for r in candidates}
    missing = [f"{c} {fmt(m)}" for c in sorted(wanted) for m in months if (c, m) not in found]
    if not candidates or missing:
        span = fmt(months[0]) + (f"..{fmt(months[-1])}" if len(months) > 1 else "")
        shown = ", ".join(missing[:10]) or span
        raise SettleError(
            f"{shown} has not been settled yet; run `settle run` for it first. Nothing was "
            "recorded."
        )


# --------------------------------------------------------------------------- disputes


@dataclass
class Dispute:
    dispute_id: int
    contract_id: str
    period: dt.date
    line_key: str
    run_id: int
    amount: Decimal
    status: str


def dispute(
    db_path: Path,
    period: dt.date,
    contract_id: str,
    line_key: str,
    reason: str,
    amount: Decimal | None = None,
    by: str | None = None,
) -> Dispute:
    """Raise a dispute on one line of a settled month's reconciliation."""
    require_db(db_path)
    if not reason.strip():
        raise SettleError("--reason is empty: say why the line is disputed")
    with write_transaction(db_path) as con:
        ensure_schema(con)
        current = _rows(
            con,
            "SELECT run_id FROM current_run_periods WHERE contract_id = ? AND period = ?",
            [contract_id, period],
        )
        if not current:
            raise SettleError(
                f"{contract_id} {fmt(period)} has not been settled; run `settle run` first. "
                "Nothing was recorded."
            )
        run_id = current[0]["run_id"]
        lines = _rows(
            con,
            "SELECT line_key, difference, status FROM invoice_reconciliation "
            "WHERE run_id = ? AND contract_id = ? AND period = ? ORDER BY line_key",
            [run_id, contract_id, period],
        )
        line = next((r for r in lines if r["line_key"] == line_key), None)
        if line is None:
            keys = ", ".join(r["line_key"] for r in lines) or "none"
            raise SettleError(
                f"{contract_id} {fmt(period)} has no line {line_key!r} on either invoice "
                f"(run {run_id}); lines: {keys}. Nothing was recorded."
            )
        if amount is None:
            amount = line["difference"]
            if amount == 0:
                raise SettleError(
                    f"{contract_id} {fmt(period)} {line_key} matches the provider's invoice "
                    "(difference 0.00); give --amount to dispute it anyway. Nothing was recorded."
                )
        dispute_id = con.execute(
            "SELECT coalesce(max(dispute_id), 0) + 1 FROM disputes"
        ).fetchone()[0]
        event_id = con.execute("SELECT coalesce(max(event_id), 0) + 1 FROM disputes").fetchone()[0]
        con.execute(
            "INSERT INTO disputes (event_id, dispute_id, contract_id, period, line_key, run_id, "
            "amount, reason, raised_by, raised_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
            [
                event_id,
                dispute_id,
                contract_id,
                period,
                line_key,
                run_id,
                amount,
                reason,
                by or default_user(),
                _now(),
            ],
        )
    return Dispute(dispute_id, contract_id, period, line_key, run_id, amount, "open")


def resolve(
    db_path: Path,
    dispute_id: int,
    outcome: str,
    note: str,
    amount: Decimal | None = None,
    by: str | None = None,
) -> dict:
    """End an open dispute. `settled` with an amount bills that amount as line dispute:<id> on the
    contract's next open month after the disputed one (negative credits the client)."""
    require_db(db_path)
    if outcome not in OUTCOMES:
        raise SettleError(f"--outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
    if amount is not None and outcome != "settled":
        raise SettleError(f"--amount goes with --outcome settled only, not {outcome}")
    if not note.strip():
        raise SettleError("--note is empty: record how the dispute ended")
    with write_transaction(db_path) as con:
        ensure_schema(con)
        found = _rows(con, "SELECT * FROM current_disputes WHERE dispute_id = ?", [dispute_id])
        if not found:
            raise SettleError(f"no dispute {dispute_id}; `settle status` lists the open ones")
        current = found[0]
        if current["status"] != "open":
            raise SettleError(
                f"dispute {dispute_id} was already resolved ({current['outcome']}) on "
                f"{current['resolved_at']:%Y-%m-%d}; nothing was recorded"
            )
        event_id = con.execute("SELECT coalesce(max(event_id), 0) + 1 FROM disputes").fetchone()[0]
        resolved = {
            **current,
            "event_id": event_id,
            "status": "resolved",
            "outcome": outcome,
            "resolution_amount": amount,
            "resolved_by": by or default_user(),
            "resolved_at": _now(),
            "note": note,
        }
        columns = list(resolved)
        con.execute(
            f"INSERT INTO disputes ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [resolved[c] for c in columns],
        )
    return resolved


# --------------------------------------------------------------------------- status and runs


def status(
    db_path: Path,
    period: dt.date | None = None,
    to: dt.date | None = None,
    contract_ids: set[str] | None = None,
) -> list[dict]:
    """Where each settled contract-month stands: open, disputed, approved or closed."""
    with connect_read_only(db_path) as con:
        if not _has_results(con):
            return []
        rows = _rows(con, (SQL_DIR / "month_status.sql").read_text())
    if period is not None:
        last = to or period
        rows = [r for r in rows if period <= r["period"] <= last]
    if contract_ids:
        rows = [r for r in rows if r["contract_id"] in contract_ids]
    return rows


def runs(db_path: Path) -> list[dict]:
    with connect_read_only(db_path) as con:
        return _rows(
            con,
            """
            SELECT run_id, started_at, finished_at, status, mode, periods, as_known_at,
                   contracts, code_version, data_dir,
                   cardinality(input_sha256) AS input_files,
                   (SELECT count(*) FROM run_periods p WHERE p.run_id = r.run_id) AS months_stored,
                   config_sha256, input_sha256
            FROM settlement_runs r ORDER BY run_id
            """,
        )
