# Two entry points on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_CORE := $(VENV)/.core-installed
STAMP_TEST := $(VENV)/.test-installed
EVIDENTLY_PEER := evidently==0.7.23 dynaconf uuid6 typing-inspect mypy_extensions deprecation \
	iterative-telemetry appdirs distro ujson nltk regex

.PHONY: demo test setup setup-test system-deps bench bench-peers clean

$(STAMP_CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[web]'
	touch $@

setup: $(STAMP_CORE)

# Debian packages the tests drive for real: Chromium for browser tests, Java for Spark.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium (browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing Java 17 (Spark tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

$(STAMP_TEST): $(STAMP_CORE) pyproject.toml
	# CPU build of torch from the local wheel; a plain `torch` requirement would pull CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[web,dev,spark,embeddings,bench]'
	# Evidently is the drift peer; its pins would downgrade plotly, numpy and scikit-learn, so it
	# lives in its own folder, installed without dependencies (the drift test skips without it).
	$(PIP) install -q --target .bench-peers --no-deps $(EVIDENTLY_PEER) || echo "note: Evidently peer not installed"
	touch $@

setup-test: $(STAMP_TEST) system-deps

demo: setup
	$(VENV)/bin/insightroi demo --out demo

# Two workers (the CI machine's cores), one test file per worker at a time: a module's fixtures
# (a demo world, a Spark session, a live server) are built once, on the worker that runs the file.
TEST_WORKERS ?= 2
test: setup-test
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=30

# NannyML, the drift peer, pins plotly < 6, lightgbm and FLAML: its own venv, driven by a worker.
.bench-nannyml/bin/python:
	$(PYTHON) -m venv .bench-nannyml
	.bench-nannyml/bin/pip install -q nannyml==0.13.1 statsmodels

bench-peers: .bench-nannyml/bin/python

bench: setup-test bench-peers
	$(PY) benchmarks/run.py --scale full

clean:
	rm -rf $(VENV) .bench-peers .bench-nannyml demo test-artifacts .pytest_cache
