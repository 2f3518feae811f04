"""Validated contract terms reused by file hash, so that 10,000 unchanged YAML files are not parsed
again on every run.

Profiling `load_contracts` on 1,000 generated contracts: 83% of the time is PyYAML building Python
objects (its constructors run in Python even with the C parser), 10% pydantic, 3% the cross-key
rules. A file whose bytes (sha256) were accepted before, by the same loader code, gives the same
terms, so the cache keeps each accepted contract's terms as plain JSON and skips YAML for it. The
terms are still rebuilt through the pydantic models and `check_rules` on every load: a cache entry
can only spare work, never let through terms the models would refuse. A file that is new or
changed takes the full path (`config.load_contract`), with its usual errors.

Two levels:
- in the process (the Dagster code location and the benchmark load the same files many times);
- on disk, one JSON file per contracts folder under `SETTLE_CACHE_DIR` (default
  `$XDG_CACHE_HOME/settle`, else `~/.cache/settle`; `off` disables it), so that separate CLI
  processes share it. It is written atomically (temporary file, then rename) and holds only the
  folder's current files. A missing, unreadable or stale cache file is simply rebuilt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic

from . import config, yaml_strict
from .config import Contract, LoadedContract, check_rules
from .errors import SettleError

CACHE_ENV = "SETTLE_CACHE_DIR"
_PACKAGE = Path(__file__).resolve().parent
# the code that decides whether a file is accepted and what its terms are
_LOADER_FILES = ("config.py", "money.py", "periods.py", "contract_cache.py")

_memory: dict[tuple[str, str], Contract] = {}
_version: str | None = None


def loader_version() -> str:
    """A hash of the loader's code: a cache entry is valid only for the code that accepted it."""
    global _version
    if _version is None:
        digest = hashlib.sha256(pydantic.VERSION.encode())
        for name in _LOADER_FILES:
            digest.update((_PACKAGE / name).read_bytes())
        _version = digest.hexdigest()[:16]
    return _version


def cache_dir() -> Path | None:
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in {"", "off", "0", "false"} else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "settle"


# --------------------------------------------------------------------------- JSON with types


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$d" in obj:
            return Decimal(obj["$d"])
        if "$date" in obj:
            return dt.date.fromisoformat(obj["$date"])
    return obj


def dump_terms(terms: Contract) -> str:
    return json.dumps(
        terms.model_dump(mode="python", exclude_defaults=True),
        default=_encode,
        separators=(",", ":"),
    )


def restore_terms(text: str, file: str) -> Contract:
    terms = Contract.model_validate(json.loads(text, object_hook=_decode))
    check_rules(terms, file)
    return terms


# --------------------------------------------------------------------------- the loader


class _CachingLoader:
    """`config.load_contract` with the two cache levels in front; `save()` writes the disk level."""

    def __init__(self, directory: Path) -> None:
        self.version = loader_version()
        folder = cache_dir()
        key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
        self.path = folder / f"contracts-{key}.json" if folder else None
        self.stored: dict[str, str] = self._read()
        self.entries: dict[str, str] = {}
        self.hits = self.misses = 0

    def _read(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("version") != self.version:
            return {}
        entries = doc.get("entries")
        return entries if isinstance(entries, dict) else {}

    def __call__(self, path: Path, root: Path | None = None) -> LoadedContract:
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        try:
            # the strict loader's own reading: a regular UTF-8 file, never a FIFO or a directory
            data = yaml_strict.read_bytes(path)
            yaml_text = yaml_strict.decode(data)
        except yaml_strict.YamlError as exc:
            raise config.ConfigError(name, exc.path, exc.reason) from None
        sha = hashlib.sha256(data).hexdigest()
        terms = _memory.get((self.version, sha))
        text = self.stored.get(sha)
        if terms is None and text is not None:
            try:
                terms = restore_terms(text, name)
            except (pydantic.ValidationError, SettleError, ValueError, TypeError):
                terms = None  # an entry this code cannot rebuild: read the file again
        if terms is None:
            self.misses += 1
            loaded = config.load_contract(path, root)
            terms = loaded.terms
            text = dump_terms(terms)
        else:
            self.hits += 1
            loaded = LoadedContract(file=name, sha256=sha, yaml_text=yaml_text, terms=terms)
        _memory[(self.version, sha)] = terms
        self.entries[sha] = text if text is not None else dump_terms(terms)
        return loaded

    def save(self) -> None:
        if self.path is None or self.entries == self.stored:
            return
        doc = json.dumps({"version": self.version, "entries": self.entries})
        # a cache that cannot be written (read-only home, full disk) costs speed, never the run
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".contracts-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(doc)
                os.replace(tmp, self.path)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                raise


def load_contracts(directory: Path, only: set[str] | None = None) -> list[LoadedContract]:
    """`config.load_contracts` (same checks, same errors), reusing terms of unchanged files."""
    loader = _CachingLoader(directory) if directory.is_dir() else None
    contracts = config.load_contracts(directory, only, load=loader or config.load_contract)
    if loader is not None:
        loader.save()
    return contracts
