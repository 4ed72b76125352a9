# Two entry points do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv when missing and (re)install when a pyproject.toml or constraints.txt changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facet-installed
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean

PACKAGES := -e ./shared -e ./services/ingest -e ./services/trainer -e ./services/aggregator -e ./services/recommender -e ./services/insights -e '.[dev]'
MANIFESTS := pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml) constraints.txt

$(STAMP): $(MANIFESTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt $(PACKAGES)
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/facet run $(RUN_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check shared services lab tests
	$(BIN)/mypy shared/facet services lab/facet_lab
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
