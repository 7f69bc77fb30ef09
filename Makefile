# deepshrink: `make demo` and `make test` set up .venv on first use and reuse it after.
PYTHON ?= python3
PYTEST_ARGS ?=
# The suite runs on this many processes (pytest-xdist); each test uses one torch thread.
TEST_WORKERS ?= 2
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepshrink-installed
# The shared datasets sit beside the repository; an explicit DEEPSHRINK_DATA wins.
SHARED_DATA := $(abspath ../shared/datasets)
export DEEPSHRINK_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: demo test lint format venv clean baselines

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)" -e ".[dev]"
	@touch $(STAMP)

# The main job on the embedded default data: recipes/demo_digits.yaml into runs/demo (replaced).
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/deepshrink run recipes/demo_digits.yaml --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

baselines: $(STAMP)
	$(BIN)/python benchmarks/train_baselines.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
