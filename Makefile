# Two entry points do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv when missing and (re)install when a pyproject.toml or constraints.txt changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facet-installed
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean browser

PACKAGES := -e ./shared -e ./services/ingest -e ./services/trainer -e ./services/aggregator -e ./services/recommender -e ./services/insights -e '.[dev]'
MANIFESTS := pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml) constraints.txt

$(STAMP): $(MANIFESTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt $(PACKAGES)
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/facet run $(RUN_ARGS)

# The insights page is tested in a real headless browser: Debian's chromium, installed when missing (as
# root, where apt-get exists); elsewhere the browser test says why it skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } || \
		echo "chromium could not be installed: the browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check shared services lab tests
	$(BIN)/mypy shared/facet services lab/facet_lab
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
