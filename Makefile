# inferq's commands. `make up` runs the whole system; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install services browser up test lint proto models loadtest bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

services:
	bash scripts/ensure_services.sh

# Debian's Chromium, for the dashboard's browser test.
browser:
	bash scripts/ensure_browser.sh

up: install services
	$(BIN)/inferq up

test: install services browser
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy inferq api_service model_registry workers

# Regenerates proto/*_pb2.py; tests/test_proto_fresh.py fails when they are stale.
proto: install
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. proto/*.proto examples/*.proto

# The digits classifier's weights (committed) and the big MLP (generated, not committed).
models: install
	$(BIN)/python -m workers.models.train_digits
	$(BIN)/python -m workers.models.make_big_mlp

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
