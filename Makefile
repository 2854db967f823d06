# keiko-backbone: `make run` starts keiko on the embedded store; `make test` runs the suite.
# Both create the virtualenv in .venv on first use. Works as root or as a normal user;
# as root, `make test` also installs the Debian packages the tests start (nats-server,
# prometheus, prometheus-alertmanager).

PYTHON ?= python3
VENV   ?= .venv
CONFIG ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
# Debian packages the test suite starts as real peers, and what the eBPF probes need
# (bcc from Debian's python3-bpfcc, never the unrelated PyPI package; kernel headers).
DEB_TEST_PACKAGES := nats-server prometheus prometheus-alertmanager bpfcc-tools python3-bpfcc \
                     linux-headers-amd64 nftables iproute2
PYTEST_ARGS ?=

.PHONY: run test lint bench demo clean debian-test-deps help

help:
	@echo "make run    - create .venv, install keiko, start 'keiko run' (embedded store)"
	@echo "             CONFIG=keiko.yaml to use a config file"
	@echo "make test   - install everything the tests need, lint, and run the whole suite"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - ingest benchmark (see README, Performance)"
	@echo "make demo   - send demo traffic to a running keiko"

# Without Debian's python3-venv there is no ensurepip: as root install it, otherwise make
# the virtualenv without pip and bootstrap pip from its PyPI wheel (hash-checked).
$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "keiko needs Python >= 3.11, this is " + sys.version.split()[0]'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "no ensurepip (Debian: python3-venv is not installed): bootstrapping pip from PyPI"; \
	    $(PYTHON) -m venv --without-pip $(VENV) && $(VENV)/bin/python deploy/bootstrap_pip.py; \
	  fi; } || { echo "error: could not create $(VENV); on Debian: sudo apt-get install python3-venv" >&2; \
	             rm -rf $(VENV); exit 1; }
	@$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	@$(BIN)/python deploy/bcc_shim.py
	@touch $@

$(TSTAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	@$(BIN)/python deploy/bcc_shim.py
	@touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/keiko run $(if $(CONFIG),--config $(CONFIG))

debian-test-deps:
	@missing=""; for p in $(DEB_TEST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "warning: missing Debian packages:$$missing (run 'make test' as root, or install them);" \
	         "the tests that need them will fail or skip with the reason" >&2; \
	  fi; fi
	@if [ "$$(id -u)" = 0 ]; then bash deploy/ebpf-host-setup.sh; fi
	@$(BIN)/python deploy/bcc_shim.py 2>/dev/null || true

# Lint first: CI runs `make test`, so style and types are kept by the same command.
test: debian-test-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(TSTAMP)
	$(BIN)/python benchmarks/ingest.py

demo: $(STAMP)
	$(BIN)/keiko demo

clean:
	rm -rf $(VENV) keiko-data .pytest_cache .mypy_cache .ruff_cache
