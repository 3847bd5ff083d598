# Set-up contract: `make serve` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: install serve test bench loadtest lint catalog clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	CDS_MODE=$${CDS_MODE:-development} $(BIN)/cds-service serve --host 127.0.0.1 --port $(PORT)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	command -v wrk >/dev/null || (apt-get install -y wrk >/dev/null 2>&1 || echo "wrk not installed: using the asyncio load generator")
	$(BIN)/python -m bench.run $(BENCH_ARGS)

loadtest: $(STAMP)
	$(BIN)/python -m bench.loadtest

lint: $(STAMP)
	$(BIN)/cds-service rules lint

catalog: $(STAMP)
	$(BIN)/cds-service rules catalog --out docs/rule-catalog.md

clean:
	rm -rf $(VENV) var .pytest_cache
