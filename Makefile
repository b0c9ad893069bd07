# The two commands a new user needs are `make serve` and `make test`; each
# does its own set-up. Everything else here is a step of those two.

VENV    := .venv
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTHON  ?= python3

.PHONY: serve test setup generate lint check-generated tools

# The file plan lets every client read and write all under its root: serve a
# folder of its own, never the checkout with the service's code and .venv.
serve: $(STAMP)
	mkdir -p files
	$(BIN)/echo-service serve --root files

test: $(STAMP) tools
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres,bench]' -e clients/python
	touch $(STAMP)

# Tools the end-to-end and interop tests drive: grpcurl, grpc_health_probe,
# ghz, the Node and Go clients' dependencies, and a real proxy.
tools: $(STAMP)
	bash scripts/install_system.sh
	bash scripts/install_tools.sh

generate: $(STAMP)
	$(PY) scripts/generate.py
	bash scripts/generate_other.sh

lint: $(STAMP) tools
	$(PY) scripts/generate.py --check
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy echo_service clients/python/echo_client
	bash scripts/generate_other.sh --check
	cd clients/node && npm run --silent typecheck
	cd clients/go && test -z "$$(gofmt -l .)" && go vet ./...
