# The README's two commands: `make run` (set up, train the default model, write its report)
# and `make test` (set up, lint, run the test suite). Both create .venv on first use.

# Any supported Python (3.11 to 3.13) found on PATH, 3.11 first: the figures were measured on it.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# `make run` needs the package on its default backend, TensorFlow; `make test` needs everything:
# the test tools, the export stack, the JAX and torch backends (so every backend is tested) and
# Ray (the cluster tests).
# Both install at the exact versions of the lock file, into the same .venv.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-test
EXTRAS := dev,export,jax,torch,cluster

.PHONY: run test lint compare bench slow lock clean

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else \
		f"Python 3.11 to 3.13 is needed, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(RUN_STAMP): pyproject.toml $(LOCK) $(VENV)/.created
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e .
	touch $@

$(STAMP): pyproject.toml $(LOCK) $(VENV)/.created
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/mnist-digits train

# On both cores: two pytest workers, each test module whole on one of them, so its module
# fixtures (a bench run, the backend probes) are made once.
test: $(STAMP)
	@scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

# The README comparison table: every preset, 3 seeds each (about four hours on 2 cores).
compare: $(STAMP)
	$(BIN)/mnist-digits compare --models all --seeds 3

# Every benchmark section in one go (about three and three-quarter hours on 2 cores); writes
# bench/results/<date>-<host>.json and .md. `mnist-digits bench --only SECTION` runs one.
bench: $(STAMP)
	$(BIN)/mnist-digits bench

# Long accuracy checks, not part of `make test` or CI.
slow: $(STAMP)
	$(BIN)/pytest -m slow

# Re-resolve the newest versions pyproject.toml's ranges allow, in a scratch environment, and
# record them as the lock file. Run the tests afterwards: the lock is the tested set.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	{ sed -n '1,2p' $(LOCK); .lock-venv/bin/python -m pip freeze --all --exclude-editable \
		| grep -v '^pip=='; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache .ruff_cache
