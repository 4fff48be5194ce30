# `make demo` and `make test` work on a fresh machine with Python 3.12 and pip.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench parity param-counts clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# The headline demo until the paper experiments land: a convnet on the offline digits set.
demo: $(VENV)/.installed
	$(BIN)/python -m experiments.classify --config=experiments/configs/classify.py:digits_cnn \
	  --workdir=runs/demo

# The whole suite on 8 simulated CPU devices (tests/conftest.py sets them).
test: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q tests

# ruff, configured in pyproject.toml (pycodestyle, pyflakes, bugbear).
lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed-bench
	$(BIN)/python scripts/benchmark.py

# Converted torchvision models against torchvision on random weights (its own 5.5 GB virtualenv).
.venv-parity/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv .venv-parity
	.venv-parity/bin/pip install -q -e '.[parity]'
	touch $@

parity: .venv-parity/.installed
	.venv-parity/bin/python -m pytest -q tests/parity

param-counts: $(VENV)/.installed
	$(BIN)/python scripts/param_counts.py

clean:
	rm -rf $(VENV) .venv-parity runs
