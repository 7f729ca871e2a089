# Quickstart:  make demo  (install, train on 5,000 real MNIST digits, sample grid.png)   make test  (install, run every test)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DISTS := pyproject.toml $(wildcard engines/*/pyproject.toml plugins/*/pyproject.toml)

.PHONY: install install-test demo test lint bench clean

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

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/quality_digits.py

clean:
	rm -rf $(VENV) build *.egg-info
