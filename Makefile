# onceonly — the two commands: `make demo` and `make test`. Only Python 3.11, pip and make needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test lint format protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install onceonly with its dev tools

demo: $(STAMP) ## start the platform on loopback, run a caseworker scenario, stop
	$(PY) -m consumers.demo

test: $(STAMP) ## run the whole test suite
	$(PY) -m pytest

lint: $(STAMP) ## ruff, mypy, and the generated-code staleness check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/gen_protos.py --check

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos: $(STAMP) ## regenerate onceonly/v1 from protos/
	$(PY) scripts/gen_protos.py

clean:
	rm -rf var build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
