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

.PHONY: setup demo test lint format bench bench-10k dagster dagster-home samples clean browser

$(BIN)/settle: pyproject.toml uv.lock
	$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet --group spark
	@touch $@

setup: $(BIN)/settle

# The demo replays the sample portfolio's month-end history: 2024-01..2025-06 settled as known on
# 2025-07-10 and closed; then 2025-07..2025-12 settled now, after the gain-share baseline was
# rebased (agreed 2025-08-20, effective 2025-04): the closed Q2 2025 is restated and the
# difference billed on 2025-07 as an adjustment line.
demo: setup dagster-home
	rm -f $(DB) $(DB).wal
	$(BIN)/settle validate
	$(BIN)/settle run --period 2024-01 --to 2025-06 --as-known-at 2025-07-10 --db $(DB) --dagster-home $(DAGSTER_HOME_DIR) > /dev/null
	$(BIN)/settle approve --period 2024-01 --to 2025-06 --by demo --db $(DB) > /dev/null
	$(BIN)/settle close --period 2024-01 --to 2025-06 --by demo --db $(DB) > /dev/null
	$(BIN)/settle run --period 2025-07 --to $(DEMO_MONTH) --db $(DB) --dagster-home $(DAGSTER_HOME_DIR)
	$(BIN)/settle report --period $(DEMO_MONTH) --format html --db $(DB)
	$(BIN)/settle report --period $(DEMO_MONTH) --format xlsx --db $(DB)

test: lint browser
	$(BIN)/pytest

# The print test (tests/test_pack_print.py) prints the HTML pack with a real browser and reads the
# PDF back: Debian's chromium and poppler-utils, installed here when missing (nothing when present),
# with a font (chromium only recommends one; without any, nothing prints). Without root or sudo it
# says how, and the test skips unless SETTLE_REQUIRE_BROWSER is set (CI).
BROWSER_PACKAGES := chromium poppler-utils fonts-liberation

browser:
	@if command -v chromium >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $(BROWSER_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -q && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $(BROWSER_PACKAGES); \
	else \
		echo "make browser: the print test needs chromium and pdftotext; as root run:" \
			"apt-get install -y --no-install-recommends $(BROWSER_PACKAGES)" >&2; \
		if [ -n "$$SETTLE_REQUIRE_BROWSER" ]; then exit 1; fi; \
	fi

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
	$(BIN)/python bench/interactions.py --warm

# 10,000 contracts x 36 months (bench/data-10000/, generated the first time: several minutes)
bench-10k: setup
	$(BIN)/python bench/run.py --contracts 10000 --repeat 1 --parts i,cli,loop --no-close

# The Dagster instance `make demo` records its runs in and `make dagster` shows; telemetry off.
DAGSTER_HOME_DIR ?= $(CURDIR)/.dagster_home

dagster-home:
	mkdir -p $(DAGSTER_HOME_DIR)
	grep -q '^telemetry:' $(DAGSTER_HOME_DIR)/dagster.yaml 2>/dev/null || \
		printf 'nux:\n  enabled: false\ntelemetry:\n  enabled: false\n' > $(DAGSTER_HOME_DIR)/dagster.yaml

dagster: setup dagster-home
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -m pipelines.definitions

clean:
	rm -rf $(VENV) $(DB) $(DB).wal .pytest_cache .ruff_cache
