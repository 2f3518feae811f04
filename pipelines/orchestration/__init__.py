"""Dagster over the engine: the code location `pipelines.definitions:defs` is assembled from these.

Nothing here computes a settlement figure. `validation` runs the engine's checks and reports them
as blocking asset checks; `settlement` calls `engine.settle` once per run (a month or a range) and
reports each stored table as its own asset, with figures read back from the database for that run.
"""
