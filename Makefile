# `make serve` and `make test` do their own set-up: a virtualenv in .venv with ordergraph (and,
# for the tests, its dev tools) installed, again whenever pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install test lint serve bench web browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

# The browser pages (playground, desk): npm packages from the registry, copied into web/dist
# (git-ignored). Without Node.js the service still runs; the playground then loads from a CDN.
WEB_STAMP := web/dist/manifest.json

$(WEB_STAMP): web/package.json web/package-lock.json web/build.mjs $(wildcard web/src/*)
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix web --no-audit --no-fund --loglevel=error && node web/build.mjs; \
	else \
		echo "make: npm (Node.js 18+) not found: the playground will load GraphiQL from a CDN and /desk is unavailable; install Node.js and run make again" >&2; \
	fi

web: $(WEB_STAMP)

install: $(STAMP) $(WEB_STAMP)

# What the browser tests need beyond Python: Node.js for the build and Debian's Chromium
# (Playwright's own browser download is not used). Installed with apt when we may.
browser-deps:
	@missing=""; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make: installing$$missing (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "make: missing$$missing: the browser tests will skip (install them to run those tests)" >&2; \
		fi; \
	fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: browser-deps lint
	@$(MAKE) --no-print-directory web
	$(BIN)/pytest

serve: $(STAMP) $(WEB_STAMP)
	$(BIN)/ordergraph serve

# `make bench`: the dev install plus the bench extra (aiohttp, matplotlib, eventsourcing), then
# the full benchmark; BENCH_ARGS passes options, e.g. BENCH_ARGS="--quick --backends sqlite".
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)
