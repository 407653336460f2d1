# Two commands matter: `make demo` and `make test`. Both work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := otel_gunicorn tests bench examples tools $(wildcard harness)

OLDEST_GUNICORN := 23.0.0
OLD := .venv-gunicorn-$(OLDEST_GUNICORN)

.PHONY: demo test test-unit test-fast test-chaos test-oldest system-tools lint dist docs docs-site bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The test and docs toolchain, for everything but the demo.
$(VENV)/.installed: pyproject.toml $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

# The demo needs the package and its own dependencies only (examples/app.py imports nothing else): no test toolchain.
$(VENV)/.installed-demo: pyproject.toml $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py

# `make test` is what CI runs: lint, the docs site, the wheel and sdist, the fast suite, the chaos suite, then the
# server tests on the oldest gunicorn. The stages run in this order, each a make of its own; the first that fails
# ends the run with one line naming it and the stages that did not run.
TEST_STAGES := lint docs-site dist test-fast test-chaos test-oldest
test:
	@set -- $(TEST_STAGES); while [ $$# -gt 0 ]; do stage=$$1; shift; \
	  $(MAKE) --no-print-directory $$stage || { echo "make test: stage $$stage failed; not run: $${*:-none}" >&2; exit 1; }; \
	done

# The tests start the real Prometheus server and promtool (Debian package `prometheus`), and drive
# `otel-gunicorn top` inside tmux. Installed when missing (as root, from the Debian registry).
SYSTEM_TOOLS := promtool:prometheus prometheus:prometheus tmux:tmux
system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q $$missing >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); \
	  else echo "make test needs the Debian packages:$$missing (apt-get install$$missing)" >&2; exit 1; fi; fi

# The unit tests alone (about a minute, no server started but the fork tests' own processes): the quickest loop.
test-unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit

# Unit and end-to-end tests (a few minutes): what a developer runs between changes.
test-fast: $(VENV)/.installed system-tools
	$(BIN)/python -m pytest -m "not chaos"

# Real gunicorn under signals, recycling, USR2 re-exec, scrape floods and collector outages (several minutes).
test-chaos: $(VENV)/.installed system-tools
	$(BIN)/python -m pytest -m chaos tests/chaos

# The end-to-end server tests again on the oldest gunicorn we support.
$(OLD)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLD)
	$(OLD)/bin/pip install --quiet --upgrade pip
	$(OLD)/bin/pip install --quiet -e '.[test]' 'gunicorn==$(OLDEST_GUNICORN)'
	touch $@

test-oldest: $(OLD)/.installed system-tools
	$(OLD)/bin/python -m pytest tests/e2e/test_core.py tests/e2e/test_server_metrics.py tests/e2e/test_configuration.py \
	  tests/e2e/test_log_destinations.py tests/e2e/test_hook_chain.py tests/e2e/test_request_errors.py \
	  tests/e2e/test_stuck_requests.py

# ruff (lint, unused noqa comments included, and format), mypy (strict for the package, checked for the tests and the
# harness), and the import-linter layer contract in pyproject.toml (docs/architecture.md).
lint: $(VENV)/.installed
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/mypy tests harness
	$(BIN)/lint-imports

# The sdist and the wheel (built from the sdist) into dist/, then checked: `twine check --strict`, their contents
# (tools/check_dist.py), and the wheel installed with its dependencies into a fresh venv outside the checkout's
# reach (-I: no PYTHONPATH, no current directory), where the public modules import and `otel-gunicorn` runs.
DIST_VENV := build/dist-venv
dist: $(VENV)/.installed
	rm -rf dist $(DIST_VENV)
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python tools/check_dist.py dist
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/pip install --quiet dist/*.whl
	$(DIST_VENV)/bin/python -I -c 'import sys, otel_gunicorn, otel_gunicorn.hooks, otel_gunicorn.conf, otel_gunicorn.logs; \
	  assert otel_gunicorn.__file__.startswith(sys.prefix), otel_gunicorn.__file__'
	env -u PYTHONPATH $(DIST_VENV)/bin/otel-gunicorn --help >/dev/null
	@echo "dist: $$(cd dist && echo *) built, checked, installed and imported in a fresh venv"

docs: $(VENV)/.installed
	$(BIN)/python -m otel_gunicorn._docs docs
	$(BIN)/python -m otel_gunicorn._operator_kit docs/grafana/otel-gunicorn.json docs/prometheus/otel-gunicorn.rules.yml
	$(MAKE) --no-print-directory docs-site

# The documentation site (mkdocs.yml over docs/) into site/: --strict fails on any warning, such as a broken link or
# anchor, or a page missing from the nav. (NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.)
docs-site: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The benchmarks, not part of `make test` (about 20 minutes on 2 cores; `make bench BENCH_ARGS=--quick`: a smoke run
# of a few minutes): write docs/benchmarks.md, its plots in docs/benchmarks/ and bench/results/latest.json. They need
# the `bench` extra and the load generator wrk (Debian package), installed when missing (as root, from the Debian
# registry) as system-tools does for the test tools.
BENCH_TOOLS := wrk
BENCH_VENV := .venv-bench
bench:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -e '.[bench]'
	@missing=""; for tool in $(BENCH_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q $$missing >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); \
	  else echo "make bench needs the Debian packages:$$missing (apt-get install$$missing)" >&2; exit 1; fi; fi
	$(BENCH_VENV)/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(OLD) $(BENCH_VENV) build dist *.egg-info .pytest_cache .hypothesis
