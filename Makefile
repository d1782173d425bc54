# kmtl: every target creates .venv with the project's own Python packages first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kmtl-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test bench lint docs clean

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP)

## Train the main job on the embedded penguins data and say where the results are.
demo: $(STAMP)
	$(VENV)/bin/kmtl train examples/penguins.yaml

# Test processes (pytest-xdist); 2 fits the 2-core CI machine: the suite's time is
# mostly single-threaded tracing and Python, so two workers nearly halve it.
TEST_WORKERS ?= 2
# One TensorFlow thread per op in the tests (their tensors are tiny): two workers
# with a pool of two threads each fought over the two cores, and this measured
# 12 % faster on tests/weighting and tests/architectures (3:11 to 2:49). The
# benchmarks keep TensorFlow's default.
test: export TF_NUM_INTRAOP_THREADS ?= 1

## Run the whole test suite (census tests read ../shared/data/census-income or KMTL_DATA_DIR),
## then every Python block of README.md and docs/ (pytest-markdown-docs) and the check
## that the outputs they show are the ones docs/scripts/make_outputs.py wrote.
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --markdown-docs \
		--markdown-docs-syntax=superfences README.md docs/

DEEPCTR_STAMP := .venv-deepctr/.installed

# DeepCTR (Keras 2) in its own environment: the reference of the census epoch benchmark.
$(DEEPCTR_STAMP):
	test -x .venv-deepctr/bin/python || $(PYTHON) -m venv .venv-deepctr
	.venv-deepctr/bin/python -m pip install --quiet --upgrade pip
	.venv-deepctr/bin/python -m pip install --quiet "tensorflow~=2.21.0" \
		"tf-keras~=2.21.0" "deepctr==0.9.4" pandas scikit-learn
	touch $(DEEPCTR_STAMP)

## Run the benchmarks; results go to benchmarks/results/*.json and a printed table.
bench: $(STAMP) $(DEEPCTR_STAMP)
	$(PY) benchmarks/run.py

## ruff, and the import-linter contracts of .importlinter (layers import downward only).
lint: $(STAMP)
	$(VENV)/bin/ruff check kmtl tests benchmarks examples docs/hooks docs/scripts conftest.py
	$(VENV)/bin/lint-imports --no-cache

## Build the documentation site into site/ (a broken link or a missing API object fails).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .venv-deepctr build site *.egg-info .pytest_cache
