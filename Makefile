# One virtual environment for everything; `make demo` and `make test` create it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo up test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(PY) -m wakeful_local demo

# `make up APP="sh examples/django/start.sh"` runs your own app command in each task.
up: setup
	$(PY) -m wakeful_local up $(if $(APP),--app='$(APP)')

lint: setup
	$(PY) -m ruff check .

# Two workers (one per core): most tests wait on real processes, moto and Terraform. A file's
# tests stay on one worker, so its module fixtures (a Terraform apply) run once.
test: setup lint
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: setup
	$(PY) bench/bench_agent.py
	$(PY) bench/bench_wake.py
	$(PY) bench/bench_front_door.py
	$(PY) bench/bench_replication.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench/results
