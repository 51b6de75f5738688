# Every target sets itself up: a fresh machine needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: run test bench demo clean chromium

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench,voice]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/realtime-cascade serve

test: $(STAMP) chromium
	$(BIN)/ruff check realtime_cascade demos tests bench
	$(BIN)/mypy --strict realtime_cascade demos
	$(BIN)/lint-imports
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/realtime-cascade demo

# The browser test drives Debian's Chromium through Playwright (never `playwright install`:
# no browser downloads here).
chromium:
	@test -x $(CHROMIUM) || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
