"""Raw interactions: never loaded into Python, read by DuckDB straight from Parquet."""

from __future__ import annotations

import duckdb

EMPTY = """
CREATE OR REPLACE TEMP VIEW in_interactions AS
SELECT NULL::VARCHAR AS contract_id, NULL::VARCHAR AS service_line_id,
       NULL::TIMESTAMP AS arrived_at, NULL::TIMESTAMP AS answered_at,
       NULL::TIMESTAMP AS abandoned_at, NULL::INTEGER AS handle_s,
       NULL::BOOLEAN AS first_contact_resolved, NULL::INTEGER AS csat
WHERE false
"""


def register_interactions(con: duckdb.DuckDBPyConnection, files: list[str]) -> None:
    """Expose the interaction files as the view `in_interactions` (empty when there are none)."""
    if not files:
        con.execute(EMPTY)
        return
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW in_interactions AS "
        f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
    )
