# ferroloop: build, demo, tests and benchmarks.
#
#   make demo     build, then run the lesson programs on stock asyncio and on ferroloop
#   make test     build, then run every test (Rust engine, pytest, CPython's asyncio suite)
#   make bench    build, then compare ferroloop, stock asyncio and uvloop
#
# PYTHON picks the interpreter (default python3.11); python3.12 and python3.13
# are found under pyenv when they are not on PATH. Each interpreter gets its own
# virtual environment, made here with everything installed from the registry.

PYTHON ?= python3.11
PYTHON_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	ls $$(pyenv root 2>/dev/null)/versions/*/bin/$(PYTHON) 2>/dev/null | tail -n 1)
VENV := $(CURDIR)/.venv-$(notdir $(PYTHON))
VPY := $(VENV)/bin/python
SUITE_ARGS ?=

.PHONY: all build demo test test-rust test-py test-cpython bench clean browser

all: build

$(VENV)/.ready: Makefile
	@test -n "$(PYTHON_EXE)" || { echo "cannot find $(PYTHON)"; exit 1; }
	$(PYTHON_EXE) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.7,<2" pytest uvloop aiohttp uvicorn blockbuster
	touch $@

build: $(VENV)/.ready
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --release --quiet

demo: build
	$(VPY) examples/demo.py

test: build test-rust test-py test-cpython

test-rust:
	cargo test -p ferroloop-engine --quiet

test-py: build browser
	$(VPY) -m pytest -q tests

# The timeline's browser test: Debian's Chromium, driven by Playwright
# (which uses that Chromium, never a browser of its own). Quick when present.
browser: $(VENV)/.ready
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
	@$(VPY) -c 'import playwright.sync_api' 2>/dev/null || $(VPY) -m pip install -q playwright

test-cpython: build
	$(VPY) tests/cpython_suite/run_suite.py $(SUITE_ARGS)

bench: build
	$(VPY) bench/run.py

clean:
	rm -rf .venv-* target
