# `make train` and `make test` set everything up (a .venv in the repo) and run; `make setup` is
# idempotent and takes seconds once done.
PYTHON ?= python3
BIN := .venv/bin

.PHONY: setup train test bench eval clean

setup:
	@$(PYTHON) tools/bootstrap.py

train: setup
	$(BIN)/puffer-cluster train

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench.throughput

eval: setup
	$(BIN)/puffer-cluster eval random heuristic --episodes 50 --seed 0

clean:
	rm -rf .venv runs .pytest_cache .hypothesis
