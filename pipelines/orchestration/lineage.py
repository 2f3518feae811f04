"""The asset graph as the SQL computes it, from the registry's `upstream` (pipelines/store.py).

A result table that reads an input folder hangs off `validated_inputs` (the folder reaches the SQL
only through the checks); one computed from other tables hangs off those. Input folders and the
contract files are external assets upstream of `validated_inputs`.
"""

from __future__ import annotations

from .. import store

VALIDATED = "validated_inputs"


def table_deps(table: store.ResultTable) -> list[str]:
    """The asset keys a result table's spec depends on, in the registry's order."""
    deps: list[str] = []
    for name in table.upstream:
        key = VALIDATED if name.endswith("/") else name
        if key not in deps:
            deps.append(key)
    return deps or [VALIDATED]


def in_lineage_order() -> list[store.ResultTable]:
    """The result tables with every table after those it is computed from (a multi-asset must
    yield its assets so), otherwise in the registry's order."""
    # the settle multi-asset's tables (interaction_counts is an asset of its own, upstream)
    by_name = {t.name: t for t in store.DAGSTER_TABLES}
    done: list[store.ResultTable] = []

    def visit(table: store.ResultTable, path: tuple[str, ...]) -> None:
        if table in done:
            return
        if table.name in path:
            raise ValueError(f"store.RESULT_TABLES: upstream cycle {' -> '.join(path)}")
        for name in table.upstream:
            if name in by_name:
                visit(by_name[name], (*path, table.name))
        done.append(table)

    for table in store.DAGSTER_TABLES:
        visit(table, ())
    return done
