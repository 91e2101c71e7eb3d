#!/usr/bin/env bash
# Logical backup of Fleet Tracker: the four databases (pg_dump custom format), the broker's
# dynamic-security state (every device's credentials: without it no device can connect) and,
# when given, the auth signing keys; SHA-256 checksums; retention; an optional upload.
#
# Point-in-time recovery is pgBackRest's job (infrastructure/pgbackrest/, docs/operations.md);
# these dumps are the portable copy: they restore into any PostgreSQL 15+ with PostGIS
# (restore.sh).
#
# Where the data is comes from the same variables the services read, so one .env serves both:
#   AUTH_DATABASE_URL VEHICLE_DATABASE_URL LOCATION_DATABASE_URL NOTIFICATION_DATABASE_URL
#       (postgresql:// or postgresql+asyncpg:// URLs; one server or four)
#   MOSQUITTO_DYNSEC_FILE   the broker's dynamic-security.json (plain server: under
#                           /var/lib/mosquitto; `make run`: .state/mosquitto/)
#   AUTH_KEYS_DIR           optional: the auth service's signing keys (kept with the backup)
# With FLEET_BACKUP_COMPOSE=1 the databases and the broker file are read through
# `docker compose exec` from the compose stack instead (run it from the repository root).
#
#   FLEET_BACKUP_DIR              where backups go (default /var/backups/fleet-tracker)
#   FLEET_BACKUP_RETENTION_DAYS   older backups are deleted (default 30)
#   FLEET_BACKUP_UPLOAD           optional command, run with the finished backup's directory
#                                 as its argument (e.g. "rclone copy --immutable" wrapper);
#                                 a failed upload fails the backup
#   FLEET_BACKUP_TEXTFILE_DIR     optional node-exporter textfile directory: the outcome is
#                                 written there as fleet_backup_*.prom for the alerts
#
# Prints the backup's directory on the last line. Exit status 0 only if everything worked.
set -euo pipefail

# shellcheck source=SCRIPTDIR/backup-metrics.sh
. "$(dirname "$(readlink -f "$0")")/backup-metrics.sh"

backup_root=${FLEET_BACKUP_DIR:-/var/backups/fleet-tracker}
retention_days=${FLEET_BACKUP_RETENTION_DAYS:-30}
compose=${FLEET_BACKUP_COMPOSE:-0}
if [ "$compose" = 1 ]; then
    # The directory the compose node-exporter reads (docker-compose.yml).
    textfile_dir=${FLEET_BACKUP_TEXTFILE_DIR:-.state/backup-metrics}
else
    textfile_dir=${FLEET_BACKUP_TEXTFILE_DIR:-}
fi
services=(auth vehicle location notification)

started=$(date +%s)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
target="$backup_root/fleet-$stamp"
work="$target.partial"

write_metrics() {
    # $1: 1 for success, 0 for failure.
    local size
    size=$(du -sb "$target" 2>/dev/null | cut -f1 || true)
    write_backup_metrics "$textfile_dir" dump "$1" "$started" "${size:-0}"
}

fail() {
    echo "backup: $*" >&2
    rm -rf "$work"
    write_metrics 0
    exit 1
}
trap 'fail "failed at line $LINENO"' ERR

libpq_url() {
    # SQLAlchemy's driver suffix means nothing to libpq.
    printf '%s' "$1" | sed -E 's#^postgresql\+[a-z0-9]+://#postgresql://#'
}

umask 077  # dumps hold password hashes and the broker file device credentials
mkdir -p "$backup_root"
mkdir "$work"

for service in "${services[@]}"; do
    database="${service}_db"
    if [ "$compose" = 1 ]; then
        docker compose exec -T "$service-db" sh -c 'pg_dump -Fc -U "$POSTGRES_USER" "$POSTGRES_DB"' \
            >"$work/$database.dump"
    else
        var="${service^^}_DATABASE_URL"
        url=${!var:-}
        [ -n "$url" ] || fail "$var is not set"
        pg_dump -Fc --dbname="$(libpq_url "$url")" --file="$work/$database.dump"
    fi
    # A dump that pg_restore cannot list is not a backup.
    pg_restore --list "$work/$database.dump" >/dev/null
done

# The broker rewrites this file whenever a client changes: copy it until two reads agree and
# it parses, so a write in progress is never what we keep.
read_dynsec() {
    if [ "$compose" = 1 ]; then
        docker compose exec -T mosquitto cat /mosquitto/data/dynamic-security.json
    else
        [ -n "${MOSQUITTO_DYNSEC_FILE:-}" ] || fail "MOSQUITTO_DYNSEC_FILE is not set"
        cat "$MOSQUITTO_DYNSEC_FILE"
    fi
}
for _attempt in 1 2 3 4 5; do
    read_dynsec >"$work/dynamic-security.json"
    read_dynsec >"$work/dynamic-security.check"
    if cmp -s "$work/dynamic-security.json" "$work/dynamic-security.check" &&
        python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/dynamic-security.json"; then
        break
    fi
    sleep 1
done
cmp -s "$work/dynamic-security.json" "$work/dynamic-security.check" ||
    fail "the broker's dynamic-security file kept changing"
rm "$work/dynamic-security.check"

if [ -n "${AUTH_KEYS_DIR:-}" ]; then
    [ -d "$AUTH_KEYS_DIR" ] || fail "AUTH_KEYS_DIR $AUTH_KEYS_DIR is not a directory"
    tar -C "$AUTH_KEYS_DIR" -cf "$work/auth-keys.tar" .
fi

{
    echo "created=$stamp"
    echo "source=$([ "$compose" = 1 ] && echo compose || echo server)"
    echo "pg_dump=$(pg_dump --version)"
} >"$work/MANIFEST"
(cd "$work" && sha256sum -- * >SHA256SUMS)
mv "$work" "$target"

if [ -n "${FLEET_BACKUP_UPLOAD:-}" ]; then
    # Word splitting on purpose: the variable holds a command and its arguments.
    # shellcheck disable=SC2086
    $FLEET_BACKUP_UPLOAD "$target" || fail "upload failed: $FLEET_BACKUP_UPLOAD"
fi

# Retention: whole backups older than the period (never the one just made).
find "$backup_root" -mindepth 1 -maxdepth 1 -type d -name 'fleet-*' \
    -mtime +"$retention_days" ! -path "$target" -exec rm -rf {} +

trap - ERR
write_metrics 1
echo "backup: $(du -sh "$target" | cut -f1) in $(($(date +%s) - started)) s" >&2
echo "$target"
