# cnnbook: two commands do all set-up.
#   make lab   -> create the environment (first time only) and open JupyterLab on START_HERE.ipynb
#   make test  -> create the environment (first time only) and run the whole test suite
# Everything lives in ./.venv, made from the Python on your PATH (3.11 or newer) by
# scripts/setup_env.py, which is also the set-up without make (Windows: README.md).
# Linux without an NVIDIA GPU: `make lab CPU=1` installs PyTorch's CPU build (no CUDA libraries).

VENV   ?= .venv
ifeq ($(OS),Windows_NT)
PYTHON ?= python
PY     := $(VENV)/Scripts/python.exe
else
PYTHON ?= python3
PY     := $(VENV)/bin/python
endif
SETUP  := $(PYTHON) scripts/setup_env.py --venv $(VENV) $(if $(CPU),--cpu)
# Stamps written by scripts/setup_env.py: the students' install (lab extra) and the contributors'
# (dev extra, which includes lab).
LAB_STAMP := $(VENV)/.cnnbook-lab
DEV_STAMP := $(VENV)/.cnnbook-installed
# Exact versions CI runs with; pyproject.toml keeps the ranges (CONTRIBUTING.md: refreshing).
CONSTRAINTS := constraints.txt
# Notebook collections executed by the test suite (fast mode).
NOTEBOOK_DIRS := notebooks solutions exercises
# How the notebooks run under test: fast mode, no display, and DataLoader workers started with
# `spawn` as on macOS and Windows (cnnbook.config reads CNNBOOK_START_METHOD).
NOTEBOOK_ENV := CNNBOOK_FAST=1 MPLBACKEND=Agg CNNBOOK_START_METHOD=spawn

.PHONY: env env-lab lab test unit notebooks browser lint execute doctor benchmark gpu-check \
	coverage progress clean

$(LAB_STAMP): pyproject.toml $(CONSTRAINTS)
	$(SETUP)

$(DEV_STAMP): pyproject.toml $(CONSTRAINTS)
	$(SETUP) --dev

# env: what the tests need (dev extra); env-lab: what a student needs (lab extra).
env: $(DEV_STAMP)

env-lab: $(LAB_STAMP)

# JupyterLab at the repository root, opening START_HERE.ipynb (cnnbook/lab.py holds the arguments;
# the browser test starts its server with the same ones). --allow-root is added when run as root.
lab: env-lab
	$(PY) -m cnnbook lab

# The whole suite: lint, unit tests, and every notebook executed once in fast mode.
test: lint
	$(NOTEBOOK_ENV) $(PY) -m pytest tests $(NOTEBOOK_DIRS) \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

unit: env
	$(PY) -m pytest tests -m "not browser"

notebooks: env
	$(NOTEBOOK_ENV) $(PY) -m pytest $(NOTEBOOK_DIRS) --nbval-lax --nbval-current-env

# JupyterLab in headless Chromium (Debian's `chromium` package; no browser download).
browser: env
	CNNBOOK_REQUIRE_BROWSER=1 $(PY) -m pytest tests/browser -p no:cacheprovider

lint: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy cnnbook

# Executed copies of every notebook in build/executed/ (full mode unless CNNBOOK_FAST=1).
# PROFILE=laptop (float32, AVX2 kernels, 2 threads) or PROFILE=native also writes the README's
# run-time table for the section notebooks to build/times-$(PROFILE).md.
execute: env
	$(PY) scripts/execute_notebooks.py --out build/executed \
		$(if $(PROFILE),--profile $(PROFILE) --dirs notebooks --table build/times-$(PROFILE).md)

# Speed figures quoted in the README (needs CNNBOOK_DATA or an internet connection).
benchmark: env
	$(PY) benchmarks/bench_pipeline.py --repeats 5 --seconds 10
	$(PY) benchmarks/time_to_accuracy.py --runs 3 $(if $(PROFILE),--profile $(PROFILE))

doctor: env-lab
	$(PY) -m cnnbook doctor

# On a GPU machine: every notebook that trains on the device, in fast mode, and the precision
# rule on the real card (scripts/gpu_check.py says what it runs and prints the figures).
gpu-check: env
	$(PY) scripts/gpu_check.py

# Line coverage of cnnbook/ by the unit tests (pytest-cov, in the dev extra).
coverage: env
	$(PY) -m pytest tests -m "not browser" -q -p no:cacheprovider --cov=cnnbook \
		--cov-report=term-missing:skip-covered

# Exercise progress: which exercises pass, fail or are not attempted yet (your files are not changed).
#   make progress                                  -> exercises/ of this clone
#   make progress NOTEBOOKS="~/alice/exercises"    -> another folder or list of notebooks
#   make -s progress NOTEBOOKS="~/class/*/exercises" FORMAT=csv > class.csv   -> a class (or FORMAT=json)
progress: env-lab
	@$(PY) -m cnnbook progress $(NOTEBOOKS) $(if $(FORMAT),--$(FORMAT))

clean:
	$(PYTHON) -c "import shutil, sys; [shutil.rmtree(p, ignore_errors=True) for p in sys.argv[1:]]" \
		build .pytest_cache .ruff_cache .mypy_cache htmlcov
	$(PYTHON) -c "import pathlib; pathlib.Path('.coverage').unlink(missing_ok=True)"
