"""Where the settlement reads and writes: the same folders and file as the `settle` CLI."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field


class SettleFiles(dg.ConfigurableResource):
    """Contract YAML folder, input Parquet folder and DuckDB file. `from_env` reads them from
    SETTLE_CONTRACTS, SETTLE_DATA and SETTLE_DB with the CLI's defaults, so a Dagster run and a
    `settle run` started in the same directory settle the same inputs into the same database."""

    contracts_dir: str = Field(description="Contract YAML folder (env SETTLE_CONTRACTS).")
    data_dir: str = Field(description="Input Parquet folder (env SETTLE_DATA).")
    db_path: str = Field(description="Settlement DuckDB file (env SETTLE_DB).")
    counts_dir: str = Field(
        default="",
        description="Interaction counts counted ahead (env SETTLE_COUNTS_DIR); empty: "
        "<db>.interaction_counts beside the database.",
    )

    @classmethod
    def from_env(cls) -> SettleFiles:
        return cls(
            contracts_dir=os.environ.get("SETTLE_CONTRACTS", "contracts_config"),
            data_dir=os.environ.get("SETTLE_DATA", "data_samples"),
            db_path=os.environ.get("SETTLE_DB", "settlement.duckdb"),
            counts_dir=os.environ.get("SETTLE_COUNTS_DIR", ""),
        )

    @property
    def contracts(self) -> Path:
        return Path(self.contracts_dir)

    @property
    def data(self) -> Path:
        return Path(self.data_dir)

    @property
    def db(self) -> Path:
        return Path(self.db_path)

    @property
    def counts(self) -> Path:
        if self.counts_dir:
            return Path(self.counts_dir)
        return self.db.with_name(self.db.name + ".interaction_counts")
