# Fleet Tracker — the commands a developer types. `make run` starts everything, `make test`
# tests everything; both install what is missing first (as root; otherwise they say how).

SHELL := /bin/bash
UV = $(shell command -v uv 2>/dev/null || echo $$HOME/.local/bin/uv)

.PHONY: help bootstrap sync run stop test lint format bench-gateway bench-ingest bench-detection drill

help:
	@echo "make run     start the whole stack locally (Ctrl-C or 'make stop' stops it)"
	@echo "make test    run every test against real PostgreSQL, Redis and Mosquitto"
	@echo "make lint    ruff check and format check"
	@echo "make bench-gateway / bench-ingest / bench-detection   benchmarks (see README)"

bootstrap:
	@infrastructure/local/bootstrap.sh

sync: bootstrap
	@$(UV) sync --all-packages --locked --quiet

run: sync
	@$(UV) run --no-sync fleet-dev run

stop:
	@$(UV) run --no-sync fleet-dev stop

test: sync
	@$(UV) run --no-sync pytest

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

# The recovery drill (docs/operations.md): backup.sh, destroy, restore.sh, check; prints RTO.
drill: sync
	@$(UV) run --no-sync pytest tests/recovery -q -s -p no:cacheprovider
