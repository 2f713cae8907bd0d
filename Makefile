# thingwire's two commands are `make run` and `make test`; both bootstrap everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
IMAGE := generated/thingwire/thingwire.binpb
BASELINE := proto/baseline.binpb
PROTOS := $(shell find proto -name '*.proto')

.PHONY: setup generate lint breaking run test bench check-generated baseline clean

setup: $(VENV)/.installed $(BUF) $(IMAGE)

# The virtualenv is rebuilt only when the dependencies change.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[server,agent,dev]'
	touch $@

$(BUF): package.json
	npm install --no-save --silent
	touch $@

# generated/ is committed; it is rebuilt when a .proto is newer (the output is deterministic,
# so a rebuild in a fresh clone changes nothing), and always by `make generate`.
$(IMAGE): $(PROTOS) scripts/generate_protos.py | $(VENV)/.installed
	$(PY) scripts/generate_protos.py

generate: $(VENV)/.installed
	$(PY) scripts/generate_protos.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(BUF) lint $(IMAGE) --path thingwire

# Compares the protos with the committed baseline image (rule set WIRE_JSON, buf.yaml).
breaking: setup
	$(BUF) breaking $(IMAGE) --against $(BASELINE)

# Accept the current protos as the new contract. Run deliberately, and say why in the commit.
baseline: generate
	cp $(IMAGE) $(BASELINE)

run: setup
	$(VENV)/bin/thingwire serve

test: setup lint breaking
	$(PY) -m pytest -q

# The benchmark suite (docs/benchmarks.md, "The benchmark suite"): every benchmark, one after
# the other, BENCH_RUNS runs each, one table of medians; not part of `make test`. Each starts
# its own stack on free ports; `make bench BENCHES=resource_calls` runs one,
# `make bench BENCH_ARGS=--quick` a short version of each.
BENCHES ?= unary_http auth_paths resource_calls routed_calls ingest_http push_cpu link_ingest \
	logbook_aggregation datacooee_statistics rollup_marks link_memory reconnect_storm
BENCH_RUNS ?= 3
bench: setup
	$(PY) -m bench.suite --runs $(BENCH_RUNS) --benches "$(BENCHES)" $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .ruff_cache
