# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv

.PHONY: install demo test lint bench clean

$(UV):
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv

install: $(UV)
	$(UV) sync --locked --all-extras --python $(PYTHON)

demo: install
	$(VENV)/bin/battleground demo

test: install
	$(VENV)/bin/python -m pytest -n 2 --timeout=600
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

bench: install
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) .battleground .pytest_cache .mypy_cache .ruff_cache
