# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both create or reuse .venv/ through `make install`.
VENV := .venv
BIN := $(abspath $(VENV))/bin
# dvc.yaml's commands call `python`; make it the venv's.
export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

# The interpreter: PYTHON if given, else the one .venv/ was built with, else the first supported one
# on PATH (3.11 first: the worker image's and CI's).
PY_SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
ifeq ($(origin PYTHON),undefined)
PYTHON := $(or $(wildcard $(BIN)/python),$(firstword $(foreach candidate,python3.11 python3.12 python3.13 python3,\
    $(shell $(candidate) -c '$(PY_SUPPORTED)' >/dev/null 2>&1 && echo $(candidate)))))
endif
PY_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
ifeq ($(PYTHON),)
PY_ERROR := none of python3.11, python3.12, python3.13 and python3 on PATH is Python 3.11 to 3.13
else
PY_ERROR := '$(PYTHON)' is not Python 3.11, 3.12 or 3.13
endif

# torch: `auto` takes the CPU build from PyTorch's CPU index (or a mirror in pip's find-links), and
# PyPI's build of the same version only where neither serves this Python's wheel (it adds the CUDA
# libraries, about 3 GB). `TORCH=cpu` or `TORCH=pypi` decides without asking.
TORCH ?= auto
TORCH_VERSION := $(shell sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
PIP := $(BIN)/python -m pip --disable-pip-version-check
LOCKS := requirements/torch-cpu.lock requirements/torch-pypi.lock requirements/runtime.lock requirements/dev.lock

.PHONY: install install-runtime run test test-fast lint docs bench lock vendor clean

# The development environment (the runtime one plus tests, lint, docs and the lock tool).
install: $(VENV)/.dev-$(PY_VERSION)

# What the worker image holds: torch, requirements/runtime.lock and the project, no test tools.
install-runtime: $(VENV)/.runtime-$(PY_VERSION)

# Every lock is installed with --require-hashes and --no-deps: exactly what it pins, nothing resolved.
$(VENV)/.runtime-$(PY_VERSION): pyproject.toml $(LOCKS)
	@$(or $(PYTHON),false) -c '$(PY_SUPPORTED)' 2>/dev/null \
	    || { echo "make: $(PY_ERROR); set PYTHON, e.g. PYTHON=/usr/bin/python3.12" >&2; exit 1; }
	@test "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$(PY_VERSION)" \
	    || { rm -rf $(VENV) && echo "creating $(VENV)/ with $(PYTHON) (Python $(PY_VERSION))" && $(PYTHON) -m venv $(VENV); }
	@torch=$(TORCH); \
	if [ $$torch = auto ]; then \
	    if $(PIP) index versions torch --index-url $(TORCH_CPU_INDEX) 2>/dev/null | grep -qF '$(TORCH_VERSION)+cpu'; \
	    then torch=cpu; \
	    else torch=pypi; echo "make: torch $(TORCH_VERSION)+cpu for Python $(PY_VERSION) is neither on $(TORCH_CPU_INDEX)" \
	        "nor in pip's find-links; installing PyPI's build of it (with CUDA libraries)" >&2; \
	    fi; \
	fi; \
	echo "torch: requirements/torch-$$torch.lock"; \
	$(PIP) install --quiet --require-hashes --no-deps -r requirements/torch-$$torch.lock
	$(PIP) install --quiet --require-hashes --no-deps -r requirements/runtime.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat  # a path in a .pth: no import hook at every start
	$(PIP) check
	rm -f $(VENV)/.runtime-* $(VENV)/.dev-* && touch $@

$(VENV)/.dev-$(PY_VERSION): $(VENV)/.runtime-$(PY_VERSION)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(PIP) check
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
	python -m bench.bench_vs_mlflow  # MLflow in its own virtualenv under /tmp/bench_vs_mlflow
	python -m bench.bench_reproduce
	python -m bench.bench_tuning
	python -m bench.bench_platform
	python -m bench.bench_console
	python -m bench.bench_serving
	python -m bench.bench_interop
	python -m bench.bench_image  # needs a Docker engine
	python -m bench.report  # docs/benchmarks.md from bench/results/*.json

# Recompile the locks from pyproject.toml with uv. uv keeps the versions an output file already pins
# where pyproject admits them, so each lock starts as a copy of dev.lock: all agree on every version.
UV_COMPILE := uv pip compile --quiet --universal --python-version 3.11 --generate-hashes
lock: install
	$(UV_COMPILE) pyproject.toml --group dev --no-emit-package torch -o requirements/dev.lock
	cp requirements/dev.lock requirements/runtime.lock
	$(UV_COMPILE) pyproject.toml --no-emit-package torch -o requirements/runtime.lock
	cp requirements/dev.lock requirements/torch-pypi.lock
	echo "torch==$(TORCH_VERSION)" | $(UV_COMPILE) - --no-config -o requirements/torch-pypi.lock
	echo "torch==$(TORCH_VERSION)+cpu" | $(UV_COMPILE) - --no-config --no-deps --index-url $(TORCH_CPU_INDEX) \
	    --emit-index-url -o requirements/torch-cpu.lock \
	    || echo "make lock: $(TORCH_CPU_INDEX) unreachable; requirements/torch-cpu.lock kept as it was" >&2

# Fetch the console's front-end libraries again from the npm registry (lineage/console/static/vendor.json
# pins them): each tarball checked against its registry integrity hash, the files' sha256 recorded.
vendor: install
	python -m lineage.console.vendor

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
