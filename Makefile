# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PORT ?= 8501

.PHONY: run test data bench clean-venv

# uv is bootstrapped with pip inside the venv so nothing lands in the system Python.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv

$(VENV)/.runtime: requirements.txt | $(UV)
	$(UV) pip install --quiet --python $(PY) -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m iml_core data --if-missing
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev
	scripts/ensure-chromium
	$(PY) -m pytest -q

data: $(VENV)/.runtime
	$(PY) -m iml_core data

clean-venv:
	rm -rf $(VENV)
