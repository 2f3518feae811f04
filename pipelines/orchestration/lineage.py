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
