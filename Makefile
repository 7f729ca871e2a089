# Quickstart:  make demo  (install, train on 5,000 real MNIST digits, sample grid.png)   make test  (install, run every test)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DISTS := pyproject.toml $(wildcard engines/*/pyproject.toml plugins/*/pyproject.toml)

.PHONY: install install-test demo test test-floors lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python $(DISTS) scripts/install.py
	$(BIN)/python scripts/install.py
	touch $@

$(VENV)/.installed-test: $(BIN)/python $(DISTS) scripts/install.py
	$(BIN)/python scripts/install.py --test
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/dcgan train mnist5k --ngf 32 --ndf 32 --epochs 30
	$(BIN)/dcgan sample -n 64 --out grid.png --force

test: install-test
	$(BIN)/python -m pytest

# The dependency floors (every `>=` in the pyproject files, pinned), installed once into their
# own environment and checked by a fast subset of the tests: a floor that is too low fails here.
# It is rebuilt only when a pyproject.toml changes. See README, "Dependency floors".
FLOORS_VENV ?= .venv-floors
FLOOR_TESTS ?= tests/test_dependencies.py tests/test_model.py tests/test_export.py tests/test_cli_help.py \
	tests/test_import.py tests/test_devices.py tests/test_figures.py tests/test_forget.py tests/test_report.py \
	engines/onnxruntime/tests plugins/analysis/tests/test_fid.py

$(FLOORS_VENV)/.installed: $(DISTS) scripts/install.py
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/python scripts/install.py --floors
	touch $@

test-floors: $(FLOORS_VENV)/.installed
	DCGAN_EXPECT_FLOORS=1 $(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider $(FLOOR_TESTS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/quality_digits.py

clean:
	rm -rf $(VENV) $(FLOORS_VENV) build *.egg-info
