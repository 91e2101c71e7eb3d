# shellcheck shell=bash
# Sourced by backup.sh and pgbackrest-backup.sh: a backup run's outcome as node-exporter
# textfile figures, fleet_backup_*{kind="<kind>"} in <dir>/fleet_backup_<kind>.prom, which the
# fleet-backups recording rules and alerts (infrastructure/monitoring/rules) read.

# write_backup_metrics DIR KIND SUCCESS STARTED [SIZE_BYTES]
#   DIR: the textfile directory (empty: nothing is written); SUCCESS: 1 or 0; STARTED: when
#   the run began (epoch seconds). Duration and size are written for a success only.
write_backup_metrics() {
    local dir=$1 kind=$2 success=$3 started=$4 size_bytes=${5:-}
    [ -n "$dir" ] || return 0
    local prom="$dir/fleet_backup_$kind.prom" now last_success=
    now=$(date +%s)
    if [ "$success" = 1 ]; then
        last_success=$now
    elif [ -f "$prom" ]; then
        # A failed run keeps the last success: the age alert counts from it.
        last_success=$(sed -n "s/^fleet_backup_last_success_timestamp_seconds{kind=\"$kind\"} //p" "$prom")
    fi
    (umask 022 && mkdir -p "$dir")  # node-exporter, another user, must enter it
    {
        backup_gauge "$kind" last_run_timestamp_seconds "When the last backup run ended." "$now"
        backup_gauge "$kind" last_run_success "1 if the last backup run succeeded." "$success"
        if [ -n "$last_success" ]; then
            backup_gauge "$kind" last_success_timestamp_seconds "When a backup last succeeded." "$last_success"
        fi
        if [ "$success" = 1 ]; then
            if [ -n "$size_bytes" ]; then
                backup_gauge "$kind" last_size_bytes "Size of the last successful backup." "$size_bytes"
            fi
            backup_gauge "$kind" last_duration_seconds "How long the last successful backup took." \
                "$((now - started))"
        fi
    } >"$prom.tmp"
    # node-exporter runs as its own user, whatever umask the backup keeps its files under.
    chmod 0644 "$prom.tmp"
    # Renamed into place so node-exporter never reads half a file (it ignores *.tmp).
    mv "$prom.tmp" "$prom"
}

backup_gauge() {
    # $1 kind, $2 name without the fleet_backup_ prefix, $3 help, $4 value.
    echo "# HELP fleet_backup_$2 $3"
    echo "# TYPE fleet_backup_$2 gauge"
    echo "fleet_backup_$2{kind=\"$1\"} $4"
}
