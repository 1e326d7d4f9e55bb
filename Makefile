# Two commands on a fresh machine: `make demo` and `make test` (each creates .venv if missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# KeOps compiles each formula once; keep its cache with this checkout's environment.
export KEOPS_CACHE_FOLDER ?= $(CURDIR)/.keops_cache

# Tests run in one process per core (pytest-xdist; each process uses one torch thread, see
# tests/conftest.py), an idle process taking queued tests from a busy one. `make test XDIST=`
# runs them in one process.
XDIST ?= -n auto --dist worksteal

.PHONY: demo test test-all lint bench doctor docs clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,distributed]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/ratiokit demo

# The default suite, then the slow checks that CI must run too: the statistical calibration
# of the two-sample tests (type-I error within binomial intervals, uniform p-values, power),
# four processes compiling one KeOps formula at once, and the coverage of a divergence's
# bootstrap interval (a few minutes together); then the
# documentation site with its executed examples, warnings as errors.
test: $(BIN)/.docs-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(XDIST) -m "not slow"
	$(BIN)/python -m pytest $(XDIST) -m slow tests/test_calibration.py tests/test_keops_cache.py \
		tests/test_ratio.py::test_confidence_interval_covers_the_closed_form_kl_at_its_level
	$(MAKE) docs

# Every test, the other slow checks included (float32 sums at n = 1e5, ...).
test-all: $(BIN)/.installed
	$(BIN)/python -m pytest $(XDIST)

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

doctor: $(BIN)/.installed
	$(BIN)/ratiokit doctor

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

$(BIN)/.docs-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[docs]"
	touch $@

# The documentation site (docs/_build/html): every example in examples/ runs (a few minutes
# on 2 cores, most of it the examples), and any warning fails the build. The API pages are
# regenerated each time (a page left from an object no longer listed would fail the build);
# examples rerun only when their script changed.
docs: $(BIN)/.docs-installed
	rm -rf docs/generated
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .keops_cache .pytest_cache .hypothesis
	rm -rf docs/_build docs/generated docs/auto_examples docs/sg_execution_times.rst
