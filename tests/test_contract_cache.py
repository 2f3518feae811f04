"""Contract terms reused by file hash (pipelines.contract_cache): an unchanged file is not parsed
again, a changed or new file is, a bad file fails exactly as without the cache, and a cache file
that is corrupt or from another loader version is ignored."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from pipelines import config, contract_cache
from pipelines.config import ConfigError

REPO = Path(__file__).resolve().parent.parent

CONTRACT = """\
contract_id: C1
currency: GBP
start: 2024-01
service_lines:
  - id: voice
    pricing:
      - effective_from: 2024-01
        model: graduated
        bands: [{up_to: 50000, rate: 2.40}, {rate: 1.90}]
indexation: {index_id: UK_CPI, base_period: 2023-10, first_review: 2025-01, cap: 0.05}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SETTLE_CACHE_DIR", str(tmp_path / "cache"))
    contract_cache._memory.clear()
    yield tmp_path / "cache"
    contract_cache._memory.clear()


def _folder(tmp_path: Path, text: str = CONTRACT) -> Path:
    folder = tmp_path / "contracts"
    folder.mkdir(exist_ok=True)
    (folder / "c1.yaml").write_text(text)
    return folder


def _loader(folder: Path) -> contract_cache._CachingLoader:
    loader = contract_cache._CachingLoader(folder)
    config.load_contracts(folder, load=loader)
    loader.save()
    return loader


def test_the_samples_rebuild_to_the_same_terms_from_the_cache(cache):
    plain = config.load_contracts(REPO / "contracts_config")
    first = contract_cache.load_contracts(REPO / "contracts_config")
    contract_cache._memory.clear()  # a new process: only the disk level is left
    loader = _loader(REPO / "contracts_config")
    assert (loader.hits, loader.misses) == (3, 0)
    again = contract_cache.load_contracts(REPO / "contracts_config")
    assert plain == first == again
    # the exact numbers survive the JSON round trip: 2.40 stays 2.40, not 2.4 as a float
    rate = again[0].terms.service_lines[0].pricing[0].bands[0].rate
    assert rate == plain[0].terms.service_lines[0].pricing[0].bands[0].rate
    assert str(rate) == str(plain[0].terms.service_lines[0].pricing[0].bands[0].rate)


def test_an_unchanged_file_is_not_parsed_again_and_a_changed_one_is(cache, tmp_path):
    folder = _folder(tmp_path)
    assert _loader(folder).misses == 1
    contract_cache._memory.clear()
    loader = _loader(folder)
    assert (loader.hits, loader.misses) == (1, 0)
    (folder / "c1.yaml").write_text(CONTRACT.replace("rate: 2.40", "rate: 2.45"))
    contract_cache._memory.clear()
    loader = _loader(folder)
    assert (loader.hits, loader.misses) == (0, 1)
    [c] = contract_cache.load_contracts(folder)
    assert c.terms.service_lines[0].pricing[0].bands[0].rate == D("2.45")
    # the cache holds only the folder's current file
    [stored] = cache.glob("contracts-*.json")
    assert len(json.loads(stored.read_text())["entries"]) == 1


def test_a_bad_file_fails_as_without_the_cache(cache, tmp_path):
    folder = _folder(tmp_path)
    contract_cache.load_contracts(folder)
    bad = CONTRACT.replace("{up_to: 50000, rate: 2.40}, {rate: 1.90}", "{rate: 1.90}, {rate: 2}")
    (folder / "c1.yaml").write_text(bad)
    with pytest.raises(ConfigError) as plain:
        config.load_contracts(folder)
    with pytest.raises(ConfigError) as cached:
        contract_cache.load_contracts(folder)
    assert str(cached.value) == str(plain.value)
    assert "contracts/c1.yaml: service_lines[0].pricing[0].bands" in str(cached.value)


def test_a_corrupt_or_foreign_cache_file_is_ignored(cache, tmp_path):
    folder = _folder(tmp_path)
    contract_cache.load_contracts(folder)
    [stored] = cache.glob("contracts-*.json")
    doc = json.loads(stored.read_text())
    # an entry from another loader version is not trusted, even when it parses
    doc["version"] = "another"
    stored.write_text(json.dumps(doc))
    contract_cache._memory.clear()
    assert _loader(folder).misses == 1
    stored.write_text("{not json")
    contract_cache._memory.clear()
    [c] = contract_cache.load_contracts(folder)
    assert c.contract_id == "C1"
    assert json.loads(stored.read_text())["version"] == contract_cache.loader_version()


def test_terms_the_models_refuse_are_not_let_through_by_a_tampered_entry(cache, tmp_path):
    folder = _folder(tmp_path)
    contract_cache.load_contracts(folder)
    [stored] = cache.glob("contracts-*.json")
    doc = json.loads(stored.read_text())
    [sha] = doc["entries"]
    # a negative rate is refused by the models (rate >= 0): the entry is dropped, the file reread
    doc["entries"][sha] = doc["entries"][sha].replace('{"$d":"2.40"}', '{"$d":"-2.40"}')
    assert "-2.40" in doc["entries"][sha]
    stored.write_text(json.dumps(doc))
    contract_cache._memory.clear()
    loader = _loader(folder)
    assert (loader.hits, loader.misses) == (0, 1)


def test_off_writes_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SETTLE_CACHE_DIR", "off")
    folder = _folder(tmp_path)
    [c] = contract_cache.load_contracts(folder)
    assert c.contract_id == "C1"
    assert contract_cache.cache_dir() is None
    assert not list(tmp_path.rglob("contracts-*.json"))
