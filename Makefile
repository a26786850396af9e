# One command sets up and runs the main job (`make run`), one sets up and runs the tests
# (`make test`). Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: setup run lint test test-all bench gpu-check report clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml plugins/rlcf-bench-example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]" -e plugins/rlcf-bench-example
	touch $@

## The main job: the embedded micro suite on this machine's CPU (or GPU), then the leaderboard.
run: setup
	$(BIN)/rlcf-bench run

## Lint and type checks (settings in pyproject.toml): ruff on all code, mypy --strict on the host and plugin packages.
lint: setup
	$(BIN)/ruff check rlcf_bench plugins baselines tests tools
	$(BIN)/mypy

## The default test suite (CPU, offline, < 15 minutes on 2 cores).
test: setup
	$(BIN)/pytest -q -m "not slow and not gpu"

## Everything, including slow checks (and GPU checks when CUDA is present).
test-all: setup
	$(BIN)/pytest -q

## pytest-benchmark timings of the methods' episodes.
bench: setup
	$(BIN)/pytest -q -m benchmark --benchmark-enable --benchmark-only tests/bench

## The GPU path on a lent one-GPU machine, offline (WHEELS=dir of carried wheels when there is no .venv):
## gpu tests, one paper-size episode per main method, CPU-vs-CUDA, fp16 checks, one summary (docs/gpu.md).
## `make gpu-check ARGS=--dry-run` runs the same script on the CPU with tiny sizes.
gpu-check:
	$(PYTHON) tools/gpu_check.py $(if $(WHEELS),--wheels $(WHEELS)) $(ARGS)

report: setup
	$(BIN)/rlcf-bench report --all-formats --out leaderboard/reports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
