"""The files a settlement reads, as external assets upstream of `validated_inputs`: one per input
folder (every folder pipelines/inputs.py reads, and interactions/) and one per contract file.

Dagster does not execute them; `validated_inputs` records an observation of each on every run,
with a data version from the sha256 of its files, so the UI shows which inputs changed since a
month was settled.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import dagster as dg

from .. import inputs

GROUP = "inputs"
CONTRACTS_ENV = "SETTLE_CONTRACTS"
DEFAULT_CONTRACTS = "contracts_config"


def input_folders() -> list[str]:
    return [*inputs.COLUMNS, "interactions"]


def folder_key(folder: str) -> dg.AssetKey:
    return dg.AssetKey(["inputs", folder])


def contract_key(path: Path) -> dg.AssetKey:
    return dg.AssetKey(["contracts", re.sub(r"[^A-Za-z0-9_]", "_", path.stem)])


def contract_files(contracts_dir: Path) -> list[Path]:
    return sorted([*contracts_dir.glob("*.yaml"), *contracts_dir.glob("*.yml")])


def specs(contracts_dir: Path | None = None) -> list[dg.AssetSpec]:
    """The external assets: input folders, then the contract files found when the definitions
    load (SETTLE_CONTRACTS, else contracts_config; a new file appears after a reload)."""
    folder = contracts_dir or Path(os.environ.get(CONTRACTS_ENV, DEFAULT_CONTRACTS))
    found = [
        dg.AssetSpec(
            folder_key(name),
            description=f"The Parquet files under the data folder's {name}/ (SETTLE_DATA).",
            group_name=GROUP,
            kinds={"parquet"},
        )
        for name in input_folders()
    ]
    found += [
        dg.AssetSpec(
            contract_key(path),
            description=f"Contract terms: {path.name} (SETTLE_CONTRACTS).",
            group_name=GROUP,
            kinds={"yaml"},
            metadata={"file": path.name},
        )
        for path in contract_files(folder)
    ]
    return found


def data_version(files: list[Path], root: Path) -> str:
    """sha256 over the files' names (relative to `root`) and contents: changes when a file is
    added, removed, renamed or edited."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(inputs.sha256_file(path).encode())
    return digest.hexdigest()


def observations(contracts_dir: Path, data_dir: Path, known: set[dg.AssetKey]):
    """An observation per external asset the definitions know, with its file count and data
    version; missing folders count as empty."""
    for name in input_folders():
        key = folder_key(name)
        files = sorted((data_dir / name).rglob("*.parquet")) if (data_dir / name).is_dir() else []
        if key in known:
            yield _observation(key, files, data_dir)
    for path in contract_files(contracts_dir):
        key = contract_key(path)
        if key in known:
            yield _observation(key, [path], contracts_dir)


def _observation(key: dg.AssetKey, files: list[Path], root: Path) -> dg.AssetObservation:
    version = data_version(files, root)
    return dg.AssetObservation(
        key,
        metadata={"files": len(files), "sha256": version},
        tags={"dagster/data_version": version},
    )


SOURCES = specs()
