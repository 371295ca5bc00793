# Two commands a newcomer needs: `make demo` and `make test`. Everything installs itself into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make test-lowest`: the lowest versions pyproject.toml allows, in a venv of their own.
LOWEST := .venv-lowest
LOWEST_PINS := .ci/lowest-versions.txt

.PHONY: install test test-lowest lint demo view bench soak clean prices

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Rebuilt from scratch when the bounds change, so nothing newer is left over from a former run.
$(LOWEST)/.installed: pyproject.toml $(LOWEST_PINS)
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST_PINS) -e '.[test]'
	touch $@

test-lowest: $(LOWEST)/.installed
	$(LOWEST)/bin/python -m pytest -q tests/unit tests/simulator tests/integration \
		tests/test_dependencies.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests bench scripts
	$(BIN)/ruff format --check orchestrator tests bench scripts
	$(BIN)/mypy

demo: $(STAMP)
	@rm -rf demo-out  # each demo is a fresh simulated account: start its ledger afresh too
	$(BIN)/orchestrator run jobs.yaml.example --simulate --ledger demo-out/ledger.db --out demo-out
	@echo "Look at what it made: make view  (then open http://127.0.0.1:8765/)"

# The demo's ledger in the browser; --simulate so the page's "Reroll rejected" uses the simulator.
view: $(STAMP)
	$(BIN)/orchestrator view --ledger demo-out/ledger.db --simulate

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak tests/soak $(PYTEST_ARGS)

prices: $(STAMP)
	$(BIN)/python scripts/build_prices.py

clean:
	rm -rf $(VENV) $(LOWEST) demo-out .pytest_cache .mypy_cache .ruff_cache
