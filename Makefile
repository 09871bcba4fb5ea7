# onceonly — the two commands: `make demo` and `make test`. Only Python 3.11, pip and make needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo console test fuzz lint format protos clean bench bench-usage bench-resident soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install onceonly with its dev tools

demo: $(STAMP) ## start the platform on loopback, run a caseworker scenario, stop
	$(PY) -m onceonly demo

console: $(STAMP) ## the demo platform and the web console, left running for a person to browse (Ctrl-C stops)
	$(PY) -m onceonly demo --keep

# The storage, ledger and policy-store tests also run on PostgreSQL: scripts/pg.sh starts a
# throwaway server on loopback (installing Debian's postgresql package if there is none),
# passes its URL in ONCEONLY_TEST_POSTGRES_URL, and stops it afterwards, pass or fail.
# The console's browser tests drive Debian's Chromium (scripts/chromium.sh installs it if missing).
test: $(STAMP) ## run the whole test suite (SQLite, a throwaway PostgreSQL on loopback, headless Chromium)
	ONCEONLY_CHROMIUM=$$(scripts/chromium.sh path) PYTHON=$(PY) scripts/pg.sh run $(PY) -m pytest $(PYTEST_ARGS)

# The hostile-input tests (tests/hostile) with twenty times the default number of cases, random seeds.
fuzz: $(STAMP) ## property-based hostile input at depth (HYPOTHESIS_PROFILE=deep): every RPC, raw bytes, parsers
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest tests/hostile --hypothesis-show-statistics $(PYTEST_ARGS)

# About 8 minutes: interleaved rounds, capacity sweeps, bulk and a profile, on SQLite and on a
# throwaway PostgreSQL server with durable commits (its own cluster under var/bench/pg).
bench: $(STAMP) ## measure the broker against a bare relay over the same providers (var/bench/latest.json)
	PYTHON=$(PY) PG_DIR=var/bench/pg PG_DURABLE=1 scripts/pg.sh run sh -c '$(PY) -m bench --database-url "$$ONCEONLY_TEST_POSTGRES_URL" $(BENCH_ARGS)'

# Usage facts over a year of 10 million traces on a throwaway PostgreSQL (about 10 minutes;
# e.g. USAGE_BENCH_ARGS="--traces 1000000" for a quicker look); writes var/bench/usage_facts.json.
bench-usage: $(STAMP) ## time the usage aggregates behind the console and open data (PostgreSQL)
	PYTHON=$(PY) scripts/pg.sh run sh -c '$(PY) -m bench.usage_facts --database-url "$$ONCEONLY_TEST_POSTGRES_URL" $(USAGE_BENCH_ARGS)'

bench-resident: $(STAMP) ## time a resident's own access log with 1,000 entries (PostgreSQL)
	PYTHON=$(PY) scripts/pg.sh run sh -c '$(PY) -m bench.resident_log --database-url "$$ONCEONLY_TEST_POSTGRES_URL" $(RESIDENT_BENCH_ARGS)'

# A bounded soak (default 180 s; e.g. SOAK_ARGS="--duration 60"): mixed workload while providers
# are restarted and one is slowed; writes var/soak/latest.json; fails if any answer was untraced.
soak: $(STAMP) ## soak the platform under faults (var/soak/latest.json; lost must be 0)
	$(PY) -m soak $(SOAK_ARGS)

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
	-scripts/pg.sh stop
	rm -rf var build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
