# Every target sets itself up: a fresh machine needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/realtime-cascade serve

test: $(STAMP)
	$(BIN)/ruff check realtime_cascade demos tests bench
	$(BIN)/mypy --strict realtime_cascade demos
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/realtime-cascade demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
