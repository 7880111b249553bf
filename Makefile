# Label Loop: two commands on a fresh machine.
#   make up    installs what is missing, starts Label Studio + the backends, creates a demo project
#   make test  installs what is missing, lints (ruff, mypy), runs the test suite
#   make notebook  opens notebooks/ in JupyterLab
# Everything installs from pyproject.toml + uv.lock (backends) and tools/label-studio/uv.lock
# (Label Studio, kept in its own environment).

SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
PY := .venv/bin/python
LS_VENV := tools/label-studio/.venv
PYTEST_ARGS ?=

.PHONY: up down test install deps system-deps bench lint clean notebook docker-check

up: install
	$(PY) -m backends.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m backends.stack down; else echo "nothing to stop"; fi

# Two pytest workers (pytest-xdist), whole test files each: most tests wait on Label Studio, a
# backend or a job process, so one worker leaves the 2 CI cores two-thirds idle. PYTEST_WORKERS=0
# runs everything in one process (easier to read when debugging one test).
PYTEST_WORKERS ?= 2
test: install system-deps lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# ruff (pyflakes, pycodestyle, imports, bugbear, pyupgrade) on the repository and mypy on backends/,
# both configured in pyproject.toml; part of `make test`, so CI keeps them clean
lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy

install: $(UV) .venv/.synced $(LS_VENV)/.synced

$(UV):
	@echo "== installing uv $(UV_VERSION) (pip --user)"
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	@echo "== syncing the backends' environment (.venv) from uv.lock"
	$(UV) sync --frozen --all-groups
	@touch $@

$(LS_VENV)/.synced: tools/label-studio/pyproject.toml tools/label-studio/uv.lock | $(UV)
	@echo "== syncing Label Studio's own environment ($(LS_VENV)) from its uv.lock"
	$(UV) sync --frozen --project tools/label-studio
	@touch $@

# System packages the tests use: redis-server (RQ-mode tests) and Debian's chromium (the browser
# test drives it with Playwright; no browser download). Installed with apt where it is available and
# we are root; otherwise the tests that need them skip and say why, except in CI (CI=true), where
# a missing package fails the run here: a green CI must mean every test ran.
SYSTEM_PACKAGES := redis-server:redis-server chromium:chromium
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "== installing$$missing (apt)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || { echo "!! apt could not install$$missing"; [ "$$CI" != true ] || exit 1; }; \
	  else echo "!! missing$$missing and apt unavailable: the tests that need them will be skipped"; \
	    [ "$$CI" != true ] || { echo "!! CI=true: refusing to run the suite without them"; exit 1; }; fi; \
	fi

# JupyterLab from the lock (the notebook group), opened on notebooks/ at http://127.0.0.1:8888
notebook: install
	.venv/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser

# Builds every image, runs the compose stack and checks what a Docker user does (docker/check.py);
# needs a Docker daemon and Compose v2, ~20 GB of disk; not part of `make test`.
# TORCH_VARIANT=cuda where PyTorch's CPU index is unreachable; DOCKER_CHECK_ARGS=--keep leaves it up.
TORCH_VARIANT ?= cpu
DOCKER_CHECK_ARGS ?=
docker-check: install
	$(PY) docker/check.py --torch-variant $(TORCH_VARIANT) $(DOCKER_CHECK_ARGS)

bench: install
	$(PY) bench/protocol.py

clean:
	rm -rf .venv $(LS_VENV) .pytest_cache test-artifacts
