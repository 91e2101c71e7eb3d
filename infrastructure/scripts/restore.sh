#!/usr/bin/env bash
# Restore a backup made by backup.sh into an empty system:
#
#   infrastructure/scripts/restore.sh /var/backups/fleet-tracker/fleet-20261201T020000Z
#
# The same variables as backup.sh say where things go (the *_DATABASE_URL of the four
# services, MOSQUITTO_DYNSEC_FILE, optionally AUTH_KEYS_DIR). Order of a recovery
# (docs/operations.md): stop the services and the broker, run this, start the broker, then the
# services. The checksums are verified first; nothing is touched if one does not match.
#
# A database that does not exist is created (the URL's user needs CREATEDB, or be the server's
# superuser, as compose's POSTGRES_USER is); one that already holds tables is refused unless
# FLEET_RESTORE_REPLACE=1, which drops what is there first. The broker file is refused while a
# broker might run on it: the broker keeps the file's contents in memory and would write its
# own back.
set -euo pipefail

backup=${1:?usage: restore.sh BACKUP_DIRECTORY}
replace=${FLEET_RESTORE_REPLACE:-0}
services=(auth vehicle location notification)
started=$(date +%s)

fail() {
    echo "restore: $*" >&2
    exit 1
}

libpq_url() {
    printf '%s' "$1" | sed -E 's#^postgresql\+[a-z0-9]+://#postgresql://#'
}

[ -f "$backup/SHA256SUMS" ] || fail "$backup has no SHA256SUMS: not a finished backup"
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || fail "checksums do not match"

for service in "${services[@]}"; do
    var="${service^^}_DATABASE_URL"
    [ -n "${!var:-}" ] || fail "$var is not set"
done
[ -n "${MOSQUITTO_DYNSEC_FILE:-}" ] || fail "MOSQUITTO_DYNSEC_FILE is not set"
if [ -e "$MOSQUITTO_DYNSEC_FILE" ] && [ "$replace" != 1 ]; then
    fail "$MOSQUITTO_DYNSEC_FILE exists: stop the broker and move it away (or FLEET_RESTORE_REPLACE=1)"
fi

for service in "${services[@]}"; do
    var="${service^^}_DATABASE_URL"
    url=$(libpq_url "${!var}")
    database=${url##*/}
    database=${database%%\?*}
    server=${url%/*}/postgres
    exists=$(psql "$server" -XAtc "SELECT 1 FROM pg_database WHERE datname = '$database'")
    if [ "$exists" = 1 ]; then
        tables=$(psql "$url" -XAtc "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        if [ "$tables" != 0 ]; then
            [ "$replace" = 1 ] || fail "$database already holds $tables tables (FLEET_RESTORE_REPLACE=1 drops them)"
            psql "$server" -Xq -v ON_ERROR_STOP=1 -c "DROP DATABASE \"$database\" WITH (FORCE)"
            exists=""
        fi
    fi
    if [ "$exists" != 1 ]; then
        psql "$server" -Xq -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$database\""
    fi
    # Objects are owned by whoever restores: the dump's owner may not exist on a new server.
    pg_restore --no-owner --no-acl --exit-on-error --dbname="$url" "$backup/${service}_db.dump"
    echo "restore: ${service}_db restored" >&2
done

mkdir -p "$(dirname "$MOSQUITTO_DYNSEC_FILE")"
install -m 600 "$backup/dynamic-security.json" "$MOSQUITTO_DYNSEC_FILE.partial"
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$MOSQUITTO_DYNSEC_FILE.partial"
fi
mv "$MOSQUITTO_DYNSEC_FILE.partial" "$MOSQUITTO_DYNSEC_FILE"
echo "restore: broker credentials restored to $MOSQUITTO_DYNSEC_FILE" >&2

if [ -f "$backup/auth-keys.tar" ]; then
    [ -n "${AUTH_KEYS_DIR:-}" ] || fail "the backup holds signing keys: set AUTH_KEYS_DIR"
    mkdir -p "$AUTH_KEYS_DIR"
    chmod 700 "$AUTH_KEYS_DIR"
    tar -C "$AUTH_KEYS_DIR" -xf "$backup/auth-keys.tar"
    echo "restore: signing keys restored to $AUTH_KEYS_DIR" >&2
fi

echo "restore: done in $(($(date +%s) - started)) s" >&2
