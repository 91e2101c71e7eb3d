# Fleet Tracker — the commands a developer types. `make run` starts everything, `make test`
# tests everything; both install what is missing first (as root; otherwise they say how).

SHELL := /bin/bash
UV = $(shell command -v uv 2>/dev/null || echo $$HOME/.local/bin/uv)

.PHONY: help bootstrap sync run stop test lint format bench-gateway bench-ingest bench-detection bench-reports drill

help:
	@echo "make run     start the whole stack locally (Ctrl-C or 'make stop' stops it)"
	@echo "make test    run every test against real PostgreSQL, Redis and Mosquitto"
	@echo "make lint    ruff check and format check"
	@echo "make bench-gateway / bench-ingest / bench-detection / bench-reports   benchmarks (see README)"
	@echo "make drill    recovery drills: restore time (RTO), a crash's data loss (RPO); not in make test"

bootstrap:
	@infrastructure/local/bootstrap.sh

sync: bootstrap
	@$(UV) sync --all-packages --locked --quiet

run: sync
	@$(UV) run --no-sync fleet-dev run

stop:
	@$(UV) run --no-sync fleet-dev stop

# Two workers: most of the suite waits on servers starting, stopping and answering, so two
# files at a time take about half the time on two cores (TEST_WORKERS=0 runs in one process).
TEST_WORKERS ?= 2
test: sync
	@$(UV) run --no-sync pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup)

lint: sync
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync ruff format --check .

format: sync
	@$(UV) run --no-sync ruff check --fix .
	@$(UV) run --no-sync ruff format .

bench-gateway: sync
	@$(UV) run --no-sync python services/gateway/bench/bench_gateway.py

bench-ingest: sync
	@$(UV) run --no-sync python services/location/bench/ingest.py

bench-detection: sync
	@$(UV) run --no-sync python services/location/bench/detection.py

bench-reports: sync
	@$(UV) run --no-sync python services/location/bench/reports.py

# --- the dashboard (frontend/) ----------------------------------------------------------------
# `make run` serves frontend/dist; it is rebuilt only when missing or older than its sources.
FRONTEND_SOURCES := $(shell find frontend/src frontend/scripts frontend/index.html \
	frontend/package.json frontend/vite.config.ts frontend/tsconfig.json -type f 2>/dev/null)
FRONTEND_DEPS := frontend/node_modules/.package-lock.json

.PHONY: frontend-build frontend-lint frontend-test
run: frontend-build
lint: frontend-lint
# Built before the tests start: the browser tests would build it otherwise, while the other
# worker's gateway tests serve it.
test: frontend-test frontend-build

$(FRONTEND_DEPS): frontend/package-lock.json | bootstrap
	@cd frontend && npm ci --no-audit --no-fund --loglevel=error

frontend/dist/index.html: $(FRONTEND_DEPS) $(FRONTEND_SOURCES)
	@cd frontend && npm run build --silent

frontend-build: frontend/dist/index.html

frontend-lint: $(FRONTEND_DEPS)
	@cd frontend && npx eslint --max-warnings=0 . && npx prettier --check --log-level=warn .

# The generated API types match the checked-in OpenAPI document (which the gateway's
# test_openapi.py checks against the services), then the unit tests.
frontend-test: $(FRONTEND_DEPS)
	@cd frontend && npm run --silent check:api && npx vitest run

# --- the dashboard's benchmark (needs the build: frontend-build) ------------------------------
.PHONY: bench-dashboard
bench-dashboard: sync frontend-build
	@$(UV) run --no-sync python services/gateway/bench/dashboard.py $(BENCH_ARGS)
.PHONY: bench-trackers
# Teltonika over TCP against MQTT, and 10,000 held tracker connections; QUICK=1 for a short run.
bench-trackers: sync
	@$(UV) run --no-sync python services/location/bench/trackers.py $(if $(QUICK),--quick)

# The recovery drills (docs/operations.md): backup.sh, destroy, restore.sh, check (RTO);
# point-in-time restore; a crash at the shipped archive_timeout (RPO). `-m ""`: the drills
# `make test` leaves out too.
drill: sync
	@$(UV) run --no-sync pytest tests/recovery -q -s -p no:cacheprovider -m ""
