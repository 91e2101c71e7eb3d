#!/bin/sh
# Entry point of every service image: get the container ready, then run its command
# (gunicorn by default, or e.g. `alembic upgrade head` in a one-shot migration container).
set -eu

# Gunicorn workers keep their Prometheus samples as files in this directory. Files left by a
# previous run of the same container (a restart keeps /tmp) would be added into the new
# numbers, so start from an empty directory. Delete the contents rather than the directory:
# it may be a mount point.
: "${PROMETHEUS_MULTIPROC_DIR:?must be set (the image sets it)}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete

# Off by default: with several replicas they would race each other. Turn it on only where a
# single container starts at a time; docker compose uses a one-shot migration container instead.
if [ "${RUN_MIGRATIONS:-0}" = "1" ]; then
    echo "prestart: alembic upgrade head" >&2
    alembic upgrade head
fi

exec "$@"
