# ferroloop: build, demo, tests and benchmarks.
#
#   make demo     build, then run the lesson programs on stock asyncio and on ferroloop
#   make test     build, then run every test (Rust engine, pytest, CPython's asyncio suite)
#   make bench    build, then compare ferroloop, stock asyncio, uvloop, rloop and rsloop
#                 on every suite (BENCH_ARGS=--quick for a short run)
#   make wheels   release wheels for CPython 3.11-3.13 and the sdist, in dist/
#   make test-wheels   each wheel (and the sdist's) in a clean venv without Rust
#   make soak     build, then run the fault suite's soaks at full size
#   make fuzz     build, then run the fuzz suite long, with fresh random examples
#
# PYTHON picks the interpreter (default python3.11); python3.12 and python3.13
# are found under pyenv when they are not on PATH. Each interpreter gets its own
# virtual environment, made here with everything installed from the registry.

PYTHON ?= python3.11
# The interpreter named $(1): on PATH, else the newest under pyenv.
find_python = $(shell $(1) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	ls $$(pyenv root 2>/dev/null)/versions/*/bin/$(1) 2>/dev/null | tail -n 1)
PYTHON_EXE := $(call find_python,$(PYTHON))
VENV := $(CURDIR)/.venv-$(notdir $(PYTHON))
VPY := $(VENV)/bin/python
SUITE_ARGS ?=
BENCH_ARGS ?=

.PHONY: all build demo test test-rust test-py test-cpython bench wheels test-wheels soak fuzz clean browser

all: build

$(VENV)/.ready: Makefile
	@test -n "$(PYTHON_EXE)" || { echo "cannot find $(PYTHON)"; exit 1; }
	$(PYTHON_EXE) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.7,<2" pytest uvloop aiohttp uvicorn blockbuster \
		gunicorn uvicorn-worker pytest-asyncio anyio mypy hypothesis
	touch $@

build: $(VENV)/.ready
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --release --quiet

demo: build
	$(VPY) examples/demo.py

test: build test-rust test-py test-cpython

test-rust:
	cargo test -p ferroloop-engine --quiet
	cargo clippy --workspace --all-targets --quiet -- -D warnings

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

# bench/peers.py installs rloop, and rsloop built from source once (kept in
# target/bench-peers/); a peer it cannot install is skipped with a note.
bench: build
	$(VPY) bench/peers.py
	$(VPY) bench/run.py --suite all $(BENCH_ARGS)

# Wheels: manylinux 2.17 (zig links against that glibc's symbols; auditwheel
# checks the claim in test-wheels), in their own target directory.
WHEEL_PYTHONS := python3.11 python3.12 python3.13
WHEEL_INTERPRETERS = $(foreach py,$(WHEEL_PYTHONS),$(call find_python,$(py)))
WHEEL_TOOLS := $(VENV)/.wheel-tools

$(WHEEL_TOOLS): $(VENV)/.ready
	$(VPY) -m pip install -q ziglang auditwheel
	touch $@

wheels: $(WHEEL_TOOLS)
	rm -rf dist
	PATH=$(VENV)/bin:$$PATH CARGO_TARGET_DIR=$(CURDIR)/target/wheels \
		$(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 \
		--out dist $(foreach py,$(WHEEL_INTERPRETERS),-i $(py))
	$(VENV)/bin/maturin sdist --out dist

test-wheels: $(WHEEL_TOOLS)
	$(VPY) tests/wheels/check_wheels.py --auditwheel $(VENV)/bin/auditwheel $(WHEEL_INTERPRETERS)
	$(VPY) tests/wheels/check_wheels.py --sdist $(PYTHON_EXE)

soak: build
	FERROLOOP_FAULT_SIZE=full $(VPY) -m pytest -q tests/faults

fuzz: build
	FERROLOOP_FUZZ_PROFILE=fuzz $(VPY) -m pytest -q tests/fuzz

clean:
	rm -rf .venv-* target
