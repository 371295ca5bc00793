# Two commands a newcomer needs: `make demo` and `make test`. Everything installs itself into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench soak clean prices

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests bench scripts
	$(BIN)/ruff format --check orchestrator tests bench scripts
	$(BIN)/mypy

demo: $(STAMP)
	@rm -rf demo-out  # each demo is a fresh simulated account: start its ledger afresh too
	$(BIN)/orchestrator run jobs.yaml.example --simulate --ledger demo-out/ledger.db --out demo-out

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak tests/soak $(PYTEST_ARGS)

prices: $(STAMP)
	$(BIN)/python scripts/build_prices.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
