# Two commands: `make demo` settles the bundled samples, `make test` runs the tests.
# Both set up from nothing: uv (pinned) is installed with pip, then `uv sync --frozen`
# installs exactly what uv.lock pins.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
DB ?= settlement.duckdb
DEMO_MONTH ?= 2025-12

.PHONY: setup demo test lint format bench dagster samples clean

$(BIN)/settle: pyproject.toml uv.lock
	$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet
	@touch $@

setup: $(BIN)/settle

# The demo replays the sample portfolio's month-end history: 2024-01..2025-06 settled as known on
# 2025-07-10 and closed; then 2025-07..2025-12 settled now, after the gain-share baseline was
# rebased (agreed 2025-08-20, effective 2025-04): the closed Q2 2025 is restated and the
# difference billed on 2025-07 as an adjustment line.
demo: setup
	rm -f $(DB) $(DB).wal
	$(BIN)/settle validate
	$(BIN)/settle run --period 2024-01 --to 2025-06 --as-known-at 2025-07-10 --db $(DB) > /dev/null
	$(BIN)/settle approve --period 2024-01 --to 2025-06 --by demo --db $(DB) > /dev/null
	$(BIN)/settle close --period 2024-01 --to 2025-06 --by demo --db $(DB) > /dev/null
	$(BIN)/settle run --period 2025-07 --to $(DEMO_MONTH) --db $(DB)
	$(BIN)/settle report --period $(DEMO_MONTH) --format html --db $(DB)
	$(BIN)/settle report --period $(DEMO_MONTH) --format xlsx --db $(DB)

test: lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check pipelines tests bench data_samples/make_samples.py
	$(BIN)/ruff format --check pipelines tests bench data_samples/make_samples.py

format: setup
	$(BIN)/ruff format pipelines tests bench data_samples/make_samples.py
	$(BIN)/ruff check --fix pipelines tests bench data_samples/make_samples.py

samples: setup
	$(BIN)/python data_samples/make_samples.py

bench: setup
	$(BIN)/python bench/run.py

dagster: setup
	mkdir -p .dagster_home
	test -f .dagster_home/dagster.yaml || printf 'nux:\n  enabled: false\n' > .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -m pipelines.definitions

clean:
	rm -rf $(VENV) $(DB) $(DB).wal .pytest_cache .ruff_cache
