"""The stored figures an explanation reads: the database opened read-only, and one `Month`.

Everything comes from the `current_*` views (and, for the indexation chain, the stored rows of the
run those views name for the month). Nothing here computes a figure of the settlement.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb

from ..errors import SettleError
from ..periods import fmt

Row = dict[str, Any]

# Per contract and month: the invoice's totals by line type, summed from the stored rounded lines.
# The one definition the pack's summary and the explanation's header read (to be replaced by the
# store's `current_invoice_summary` view when it lands: change it here only).
# The one invoice summary (sql/views.sql): totals by line type, what was billed, exceptions.
INVOICE_SUMMARY_SQL = "SELECT * FROM current_invoice_summary"


def connect_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    """Open the settlement database for reading only; a clear error if it is missing or busy."""
    path = Path(db_path)
    if not path.exists():
        raise SettleError(f"{path}: no such database; settle a month first (`settle run`)")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        # another process writing (a lock), or this process holding it open for writing
        if "lock" in str(exc).lower() or "different configuration" in str(exc).lower():
            raise SettleError(
                f"{path}: the database is in use by a running settlement (DuckDB allows no "
                "reader while a writer holds the file); try again when it has finished"
            ) from None
        raise SettleError(f"{path}: cannot open the database: {exc}") from None


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[Row]:
    """Rows as dicts; an absent table or view (a database from before it existed) reads as empty."""
    try:
        cur = con.execute(sql, params or [])
    except duckdb.CatalogException:
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def keyed(con: duckdb.DuckDBPyConnection, key: str, sql: str, params: list) -> dict[str, Row]:
    """rows() indexed by one column, in query order."""
    return {r[key]: r for r in rows(con, sql, params)}


def has_settled_figures(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'current_invoice_lines'"
    ).fetchone()
    return bool(found and found[0])


class Month:
    """Every stored figure of one contract and month that an explanation may need."""

    def __init__(self, con: duckdb.DuckDBPyConnection, contract_id: str, period: dt.date):
        self.contract_id = contract_id
        self.period = period
        self._con = con
        p = [contract_id, period]
        stands = rows(
            con,
            "SELECT run_id, status FROM current_run_periods WHERE contract_id = ? AND period = ?",
            p,
        )
        self.lines = rows(
            con,
            "SELECT * FROM current_invoice_lines WHERE contract_id = ? AND period = ? "
            "ORDER BY sort_order, line_key",
            p,
        )
        if not stands or not self.lines:
            raise SettleError(_nothing_settled(con, contract_id, period))
        self.run_id = stands[0]["run_id"]
        self.status = stands[0]["status"]
        self.run = rows(con, "SELECT * FROM settlement_runs WHERE run_id = ?", [self.run_id])[0]
        self.currency = self.lines[0]["currency"]
        summary = rows(
            con,
            f"SELECT * FROM ({INVOICE_SUMMARY_SQL}) WHERE contract_id = ? AND period = ?",
            p,
        )
        self.summary = summary[0]
        # every line of a month carries the contract's rounding terms; an unbilled gain-share
        # window (no line of its own) was rounded with the same ones
        terms = next((r for r in self.lines if r.get("rounding_mode")), {})
        self.rounding_mode = terms.get("rounding_mode")
        self.amount_scale = terms.get("amount_scale")
        self.charges = keyed(
            con,
            "line_key",
            "SELECT * FROM current_charge_lines WHERE contract_id = ? AND period = ?",
            p,
        )
        self.bands = rows(
            con,
            "SELECT * FROM current_charge_bands WHERE contract_id = ? AND period = ? "
            "ORDER BY service_line_id, band",
            p,
        )
        self.kpis = keyed(
            con,
            "kpi_id",
            "SELECT * FROM current_kpi_results WHERE contract_id = ? AND period = ? "
            "ORDER BY kpi_order",
            p,
        )
        self.credits = keyed(
            con,
            "kpi_id",
            "SELECT * FROM current_service_credits WHERE contract_id = ? AND period = ?",
            p,
        )
        self.gain_share = rows(
            con,
            "SELECT * FROM current_gain_share WHERE contract_id = ? AND billed_period = ? "
            "ORDER BY window_start",
            p,
        )
        self.adjustments = rows(
            con,
            "SELECT a.*, s.closed_run_id FROM current_adjustments a "
            "LEFT JOIN period_status s ON s.contract_id = a.contract_id AND s.period = a.period "
            "WHERE a.contract_id = ? AND a.billed_in_period = ? ORDER BY a.period, a.line_key",
            p,
        )
        self.recon = keyed(
            con,
            "line_key",
            "SELECT * FROM current_invoice_reconciliation WHERE contract_id = ? AND period = ?",
            p,
        )
        # terms beyond the month (SPEC 10): the rows behind the true_up, credit_cap_refund,
        # pass_through, one_off and fx_share lines billed on this month
        self.commitments = keyed(
            con,
            "service_line_id",
            "SELECT * FROM current_commitment_windows WHERE contract_id = ? AND billed_period = ?",
            p,
        )
        self.annual_caps = rows(
            con,
            "SELECT * FROM current_annual_credit_caps WHERE contract_id = ? AND billed_period = ?",
            p,
        )
        self.pass_through = keyed(
            con,
            "item_id",
            "SELECT * FROM current_pass_through_costs WHERE contract_id = ? AND period = ?",
            p,
        )
        self.one_offs = rows(
            con,
            "SELECT * FROM current_one_off_instalments WHERE contract_id = ? AND period = ? "
            "ORDER BY one_off_id, instalment",
            p,
        )
        self.fx = rows(
            con, "SELECT * FROM current_fx_shares WHERE contract_id = ? AND period = ?", p
        )
        # the reviews the run standing for this month used, up to this month
        self.reviews = rows(
            con,
            "SELECT * FROM index_factors WHERE run_id = ? AND contract_id = ? AND period <= ? "
            "ORDER BY period, index_id",
            [self.run_id, contract_id, period],
        )

    def kpi_history(self, kpi_id: str, after: dt.date, upto: dt.date) -> list[Row]:
        return rows(
            self._con,
            "SELECT period, status, value, target FROM current_kpi_results "
            "WHERE contract_id = ? AND kpi_id = ? AND period > ? AND period <= ? ORDER BY period",
            [self.contract_id, kpi_id, after, upto],
        )

    def credits_of(self, kpi_id: str, periods: list[dt.date]) -> list[Row]:
        """The stored credit rows of the months an earn-back line names (as they stand)."""
        if not periods:
            return []
        return rows(
            self._con,
            "SELECT * FROM current_service_credits WHERE contract_id = ? AND kpi_id = ? "
            "AND list_contains(?, period) ORDER BY period",
            [self.contract_id, kpi_id, periods],
        )

    def closing_gain_share(self, run_id: int, month: dt.date) -> list[Row]:
        return rows(
            self._con,
            "SELECT * FROM gain_share WHERE run_id = ? AND contract_id = ? AND billed_period = ?",
            [run_id, self.contract_id, month],
        )


def _nothing_settled(con: duckdb.DuckDBPyConnection, contract_id: str, period: dt.date) -> str:
    months = rows(
        con,
        "SELECT min(period) AS first, max(period) AS last, count(*) AS n "
        "FROM current_run_periods WHERE contract_id = ?",
        [contract_id],
    )
    if months and months[0]["n"]:
        m = months[0]
        return (
            f"no settled figures for {contract_id} in {fmt(period)}: the database holds "
            f"{m['n']} settled month(s) of it, {fmt(m['first'])}..{fmt(m['last'])}"
        )
    known = [
        r["contract_id"]
        for r in rows(con, "SELECT DISTINCT contract_id FROM current_run_periods ORDER BY 1")
    ]
    return f"no settled figures for contract {contract_id}: the database holds " + (
        ", ".join(known) if known else "no settled contract"
    )
