# The two commands a newcomer needs: `make demo` runs the whole pipeline locally, `make test` runs
# every test against the real local Kafka and ClickHouse. Both set themselves up from a fresh clone:
# a virtual environment in .venv, Kafka jars from Maven Central into .local/ (cached in ~/.m2).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Debian packages the browser test needs (Chromium driven by playwright, CJK fonts for the page).
SYSTEM_PACKAGES := chromium fonts-noto-cjk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps demo test lint format clean distclean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,local]'
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
	  echo "installing $(SYSTEM_PACKAGES) from Debian for the browser test ..."; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); }

demo: $(STAMP)
	$(BIN)/livecommerce demo

test: $(STAMP) system-deps
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
