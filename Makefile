# cnnbook: two commands do all set-up.
#   make lab   -> create the environment (first time only) and open JupyterLab on START_HERE.ipynb
#   make test  -> create the environment (first time only) and run the whole test suite
# Everything lives in ./.venv, made from the python3 on your PATH (3.11 or newer).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cnnbook-installed
# Exact versions CI runs with; pyproject.toml keeps the ranges (CONTRIBUTING.md: refreshing).
CONSTRAINTS := constraints.txt
# Notebook collections executed by the test suite (fast mode).
NOTEBOOK_DIRS := notebooks solutions exercises

.PHONY: env lab test unit notebooks browser lint execute doctor benchmark progress clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cnnbook needs Python 3.11 or newer (found " + sys.version.split()[0] + ")"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,lab]"
	$(PY) -m cnnbook kernel
	touch $(STAMP)

env: $(STAMP)

# JupyterLab at the repository root, opening START_HERE.ipynb (cnnbook/lab.py holds the arguments;
# the browser test starts its server with the same ones). --allow-root is added when run as root.
lab: env
	$(PY) -m cnnbook lab

# The whole suite: lint, unit tests, and every notebook executed once in fast mode.
test: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy cnnbook
	CNNBOOK_FAST=1 MPLBACKEND=Agg $(PY) -m pytest tests $(NOTEBOOK_DIRS) \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

unit: env
	$(PY) -m pytest tests -m "not browser"

notebooks: env
	CNNBOOK_FAST=1 MPLBACKEND=Agg $(PY) -m pytest $(NOTEBOOK_DIRS) --nbval-lax --nbval-current-env

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

doctor: env
	$(PY) -m cnnbook doctor

# On a CUDA machine: the GPU tests (fp16 + grad scaler, bf16, GPUBatchLoader, channels-last,
# GPU checkpoint -> CPU) and notebook 14.15 in fast mode on the GPU (aim: under two minutes).
gpu-check: env
	$(PY) -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu-check needs a CUDA GPU (torch.cuda.is_available() is False)")'
	$(PY) -m pytest -q -rs tests/test_gpu.py -p no:cacheprovider
	CNNBOOK_FAST=1 MPLBACKEND=Agg $(PY) -m pytest -q --nbval-lax --nbval-current-env \
		-p no:cacheprovider notebooks/14_15_training_pipeline.ipynb

# Line coverage of cnnbook/ by the unit tests (pytest-cov, in the dev extra).
coverage: env
	$(PY) -m pytest tests -m "not browser" -q -p no:cacheprovider --cov=cnnbook \
		--cov-report=term-missing:skip-covered

# Exercise progress: which exercises pass, fail or are not attempted yet (your files are not changed).
#   make progress                                  -> exercises/ of this clone
#   make progress NOTEBOOKS="~/alice/exercises"    -> another folder or list of notebooks
progress: env
	$(PY) -m cnnbook progress $(NOTEBOOKS)

clean:
	rm -rf build .pytest_cache .ruff_cache .mypy_cache .coverage htmlcov
