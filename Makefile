# Everything runs from a local virtual environment made from the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
LINT_PATHS := src tests backends/s3 benchmarks

FLOOR_VENV := .venv-floor

.PHONY: setup demo test test-all test-floor lint bench bench-quick clean

EMULATORS := tests/emulators/node_modules/.package-lock.json

$(INSTALLED): pyproject.toml backends/s3/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e backends/s3
	touch $(INSTALLED)

$(EMULATORS): tests/emulators/package-lock.json  # Azurite, for the Azure tests (npm)
	npm ci --prefix tests/emulators --no-audit --no-fund --loglevel=error

setup: $(INSTALLED) $(EMULATORS)  ## create .venv (trailstore, the S3 plugin, dev tools); Azurite

demo: $(INSTALLED)  ## write, query and replay a demo trail in ./trailstore-demo
	$(BIN)/trailstore demo

lint: $(INSTALLED)  ## ruff and mypy (strict)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# the tests wait on disks, processes and emulators more than on the CPU: one worker per core;
# those that measure lateness run alone afterwards, where no other test shares the cores
PARALLEL := -n auto --dist worksteal

test: lint $(EMULATORS)  ## lint, then every test except those marked slow
	$(BIN)/pytest -m "not slow and not timing" $(PARALLEL)
	$(BIN)/pytest -m "timing and not slow"

test-all: lint $(EMULATORS)  ## lint, then every test including the slow ones
	$(BIN)/pytest

test-floor: $(EMULATORS)  ## the fast tests on the lowest declared version of every dependency
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install --quiet -c .ci/floors.txt -e '.[dev]' -e backends/s3
	$(FLOOR_VENV)/bin/pytest -m "not slow and not timing" -p no:cacheprovider $(PARALLEL)
	$(FLOOR_VENV)/bin/pytest -m "timing and not slow" -p no:cacheprovider

bench: $(INSTALLED)  ## the full benchmark harness (results in benchmarks/results/)
	$(BIN)/python -m benchmarks

bench-quick: $(INSTALLED)  ## a smoke run of the harness in under a minute
	$(BIN)/python -m benchmarks --quick --out benchmarks/results/quick

clean:
	rm -rf $(VENV) $(FLOOR_VENV) trailstore-demo .pytest_cache .mypy_cache .ruff_cache \
		build backends/s3/build benchmarks/results
