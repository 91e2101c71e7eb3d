#!/usr/bin/env bash
# The daily pgBackRest backup (full unless told otherwise) of every stanza given, and its
# outcome for node-exporter: fleet_backup_*{kind="pgbackrest"} in
# $FLEET_BACKUP_TEXTFILE_DIR/fleet_backup_pgbackrest.prom, which BackupTooOld and
# BackupMissing watch (infrastructure/monitoring/rules).
#
#   pgbackrest-backup.sh [--PGBACKREST-OPTION...] STANZA...
#
# Plain server, as postgres: `pgbackrest-backup.sh fleet`. Options go to every `pgbackrest
# backup`: --type=diff or --type=incr instead of the full one, --config=... and so on.
#
#   FLEET_BACKUP_TEXTFILE_DIR   optional node-exporter textfile directory (compose: defaults
#                               to .state/backup-metrics, the directory its node-exporter reads)
#   FLEET_BACKUP_COMPOSE=1      back each stanza up inside its server's container
#                               (`docker compose exec -u postgres <stanza>-db`, from the
#                               repository root; COMPOSE_FILE names the prod override)
#
# A run is one set of figures with no stanza label: it succeeded only if every stanza's backup
# did (the rules take the newest success per kind, so a stanza of its own would hide behind
# the others). A failed stanza does not stop the others. Exit status 0 only if all succeeded.
set -euo pipefail

# shellcheck source=SCRIPTDIR/backup-metrics.sh
. "$(dirname "$(readlink -f "$0")")/backup-metrics.sh"

compose=${FLEET_BACKUP_COMPOSE:-0}
if [ "$compose" = 1 ]; then
    textfile_dir=${FLEET_BACKUP_TEXTFILE_DIR:-.state/backup-metrics}
else
    textfile_dir=${FLEET_BACKUP_TEXTFILE_DIR:-}
fi

options=()
stanzas=()
for arg in "$@"; do
    case $arg in
        --*) options+=("$arg") ;;
        *) stanzas+=("$arg") ;;
    esac
done
if [ ${#stanzas[@]} = 0 ]; then
    echo "usage: $0 [--PGBACKREST-OPTION...] STANZA..." >&2
    exit 2
fi
case " ${options[*]} " in
    *" --type="*) ;;
    *) options=(--type=full "${options[@]}") ;;
esac

started=$(date +%s)
failed=()
for stanza in "${stanzas[@]}"; do
    if [ "$compose" = 1 ]; then
        pgbackrest=(docker compose exec -T -u postgres "$stanza-db" pgbackrest)
    else
        pgbackrest=(pgbackrest)
    fi
    if ! "${pgbackrest[@]}" "--stanza=$stanza" "${options[@]}" backup; then
        failed+=("$stanza")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    write_backup_metrics "$textfile_dir" pgbackrest 0 "$started"
    echo "pgbackrest-backup: failed for ${failed[*]}" >&2
    exit 1
fi
write_backup_metrics "$textfile_dir" pgbackrest 1 "$started"
echo "pgbackrest-backup: ${stanzas[*]} in $(($(date +%s) - started)) s" >&2
