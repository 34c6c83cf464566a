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
	$(BIN)/mypy inferq inferq_client inferq_cli api_service model_registry catalog workers load_testing serialization_type_test tests

# Regenerates proto/*_pb2.py (and *_pb2_grpc.py of the files that define a gRPC service);
# tests/kernel/test_proto_fresh.py fails when they are stale.
GRPC_PROTOS = $(shell grep -l '^service ' proto/*.proto)
proto: install
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. proto/*.proto examples/*.proto tests/models/seed/*.proto
	$(BIN)/python -m grpc_tools.protoc -I . --grpc_python_out=. $(GRPC_PROTOS)

# The digits classifier's weights (committed) and the big MLP (generated, not committed).
models: install
	$(BIN)/python -m workers.models.train_digits
	$(BIN)/python -m workers.models.make_big_mlp

# Locust against a running stack (`make up` in another terminal); see load_testing/README.md.
LOADTEST_HOST ?= http://127.0.0.1:8000
LOADTEST_USERS ?= 20
LOADTEST_SPAWN_RATE ?= 10
LOADTEST_RUN_TIME ?= 30s

loadtest: install
	mkdir -p load_testing/results
	$(BIN)/locust -f load_testing/locustfile.py --headless --host $(LOADTEST_HOST) \
		--users $(LOADTEST_USERS) --spawn-rate $(LOADTEST_SPAWN_RATE) \
		--run-time $(LOADTEST_RUN_TIME) --stop-timeout 15 --exit-code-on-error 1 \
		--csv load_testing/results/locust --html load_testing/results/locust.html

# inferq against a plain FastAPI + ONNX Runtime baseline, same machine, one run (load_testing/README.md).
bench: install services
	$(BIN)/python -m load_testing.bench $(BENCH_ARGS)

# Issue 19's failover scenario, three runs, each on fresh private servers (a 3-node RabbitMQ
# cluster with quorum queues, Redis with a replica and 3 Sentinels; never the shared ones);
# ~2 min a run; see load_testing/README.md ("Failover run"). One run is tests/faults/test_failover.py.
FAILOVER_ARGS ?= --runs 3
.PHONY: failover
failover: install
	$(BIN)/python -m load_testing.failover $(FAILOVER_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
