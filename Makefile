# The two commands of the README: `make demo` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: install demo test lint bench clean

# Installs uv with pip if it is missing, then the locked dependencies into .venv, and axe-core (npm ci).
install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked --all-extras --python $(PYTHON)
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund; else echo "npm not found: the browser tests need node_modules/axe-core (npm ci)"; fi

demo: install
	$(VENV)/bin/battleground demo

test: install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

bench: install
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) .battleground .pytest_cache .mypy_cache .ruff_cache
