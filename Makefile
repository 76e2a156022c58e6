# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both create or reuse .venv/ through `make install`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# dvc.yaml's commands call `python`; make it the venv's.
export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install run test test-fast lint docs bench lock clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# Runs the `lineage-pipeline` Prefect flow once on this checkout (each DVC stage a task; a
# temporary local Prefect API unless PREFECT_API_URL points at a server), then summarises both
# gate verdicts. The summary prints even when a gate stopped the run; the exit status is the flow's.
run: install
	python -m flows.pipeline; status=$$?; python -m flows.summary; exit $$status

lint: install
	ruff check .
	ruff format --check .
	mypy
	lint-imports

# The documentation site (mkdocs, docs/): --strict fails on any warning, a broken link included.
docs: install
	mkdocs build --strict --site-dir $(or $(SITE_DIR),/tmp/retail-lineage-site)

test: lint docs
	pytest

# The edit-test loop: lint, unit tests and the config check (about a minute), no servers or pipeline runs.
test-fast: lint
	pytest tests/unit tests/test_config_agree.py

bench: install
	python -m bench.bench_stages
	python -m bench.bench_scale
	python -m bench.bench_orchestration
	python -m bench.bench_lineage
	python -m bench.bench_reproduce
	python -m bench.bench_tuning
	python -m bench.bench_platform
	python -m bench.report  # docs/benchmarks.md from bench/results/*.json

# Re-resolve requirements.in into requirements.lock in a scratch venv.
lock:
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install --quiet -r requirements.in
	/tmp/lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip==' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
