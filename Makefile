# The two commands a newcomer needs: `make demo` runs the whole pipeline locally, `make test` runs
# every test against the real local Kafka and ClickHouse. Both set themselves up from a fresh clone:
# a virtual environment in .venv, Kafka jars from Maven Central into .local/ (cached in ~/.m2).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format clean distclean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/livecommerce demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis test-artifacts

# Also removes the local Kafka and ClickHouse data (stop them first: livecommerce kafka stop ...).
distclean: clean
	rm -rf $(VENV) .local
