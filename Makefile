# Two commands matter: `make demo` and `make test`. Both work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

OLDEST_GUNICORN := 23.0.0
OLD := .venv-gunicorn-$(OLDEST_GUNICORN)

.PHONY: demo test test-oldest lint docs bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

# The tests start the real Prometheus server and promtool (Debian package `prometheus`).
test: $(VENV)/.installed
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q prometheus >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q prometheus >/dev/null)); \
	  else echo "make test needs the 'prometheus' package (promtool, prometheus): apt-get install prometheus" >&2; exit 1; fi; }
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-oldest

# The end-to-end server tests again on the oldest gunicorn we support.
$(OLD)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLD)
	$(OLD)/bin/pip install --quiet --upgrade pip
	$(OLD)/bin/pip install --quiet -e '.[test]' 'gunicorn==$(OLDEST_GUNICORN)'
	touch $@

test-oldest: $(OLD)/.installed
	$(OLD)/bin/python -m pytest tests/e2e/test_core.py tests/e2e/test_server_metrics.py tests/e2e/test_configuration.py

lint: $(VENV)/.installed
	$(BIN)/ruff check otel_gunicorn tests bench examples
	$(BIN)/ruff format --check otel_gunicorn tests bench examples
	$(BIN)/mypy

docs: $(VENV)/.installed
	$(BIN)/python -m otel_gunicorn._docs

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(OLD) build dist *.egg-info .pytest_cache .hypothesis
