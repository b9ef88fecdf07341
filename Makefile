# The README's two commands: `make run` (set up, train the default model, write its report)
# and `make test` (set up, lint, run the test suite). Both create .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint compare bench slow clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else \
		"Python 3.11 is required; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mnist-digits train

test: $(STAMP)
	@scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# The README comparison table: every preset, 3 seeds each (about an hour on 2 cores).
compare: $(STAMP)
	$(BIN)/mnist-digits compare --models all --seeds 3

# Every benchmark section in one go (about an hour and a half on 2 cores); writes
# bench/results/<date>-<host>.json and .md. `mnist-digits bench --only SECTION` runs one.
bench: $(STAMP)
	$(BIN)/mnist-digits bench

# Long accuracy checks, not part of `make test` or CI.
slow: $(STAMP)
	$(BIN)/pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
