# owrt-vpn developer entry points. `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Only folders that exist (bench/ may not be there yet in every checkout).
LINT_PATHS := $(wildcard builder tests bench)

.PHONY: install test lint unit demo bench clean

# The venv is (re)built when pyproject.toml changes; the console script is
# the stamp. Python 3.11+ is required (Debian 12's python3 is 3.11).
$(BIN)/owrt-vpn: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"owrt-vpn needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

install: $(BIN)/owrt-vpn

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# Everything: lint, types, unit and integration tests (integration needs root).
test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Offline demo: the real owrt-vpn against the ImageBuilder double on loopback (demo/).
demo: install
	PYTHONPATH=tests $(BIN)/python scripts/demo.py

unit: install
	$(BIN)/pytest -q -m "not integration" $(PYTEST_ARGS)

# Benchmarks (not part of `make test`): bench/results.json + a table; BENCH_ARGS=--quick...
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
