#!/bin/sh
# One-shot, once the broker is up: give the location service its broker client, with a role
# that may subscribe to every topic (it consumes all devices' telemetry through a shared
# subscription). The same client and role as fleet_devstack creates for `make run` and tests.
# Safe to run on every start: it converges on the same state, and it sets the password each
# time, so changing LOCATION_MQTT_PASSWORD and re-running it rotates the password.
set -eu

: "${MQTT_HOST:?must be set}"
: "${MQTT_PORT:?must be set}"
: "${VEHICLE_MQTT_ADMIN_USERNAME:?must be set}"
: "${VEHICLE_MQTT_ADMIN_PASSWORD:?must be set}"
: "${LOCATION_MQTT_USERNAME:?must be set}"
: "${LOCATION_MQTT_PASSWORD:?must be set}"

role=fleet-ingest

dynsec() {
    # mosquitto_ctrl 2.0 exits 0 even on an error reply, and later versions do not, so the
    # exit code of a single command means nothing here ("already exists" is the normal case on
    # a re-run). Errors are printed; the check at the end decides whether provisioning worked.
    mosquitto_ctrl -h "$MQTT_HOST" -p "$MQTT_PORT" \
        -u "$VEHICLE_MQTT_ADMIN_USERNAME" -P "$VEHICLE_MQTT_ADMIN_PASSWORD" \
        dynsec "$@" 2>&1 | grep -v -e 'without encryption' -e 'visible on the network' -e '^$' || true
}

dynsec createRole "$role"
dynsec addRoleACL "$role" subscribePattern '#' allow
dynsec addRoleACL "$role" subscribeLiteral '#' allow
# Its retained shared-subscription manifests, read by restore_shared_subscriptions.py.
dynsec addRoleACL "$role" publishClientSend 'fleet-internal/shared-subscriptions/#' allow
dynsec createClient "$LOCATION_MQTT_USERNAME" -p "$LOCATION_MQTT_PASSWORD"
dynsec setClientPassword "$LOCATION_MQTT_USERNAME" "$LOCATION_MQTT_PASSWORD"
dynsec addClientRole "$LOCATION_MQTT_USERNAME" "$role"

# The proof: log in as the location service and take the shared subscription it will use.
# mosquitto_sub fails on a refused login but only prints a refused subscription.
# shellcheck disable=SC2016 # '$share' is an MQTT topic prefix, not a shell variable.
if ! result=$(mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -V 5 \
    -u "$LOCATION_MQTT_USERNAME" -P "$LOCATION_MQTT_PASSWORD" \
    -t '$share/location/fleet/+/telemetry' -E 2>&1); then
    echo "provision-clients: $LOCATION_MQTT_USERNAME cannot log in: $result" >&2
    exit 1
fi
case "$result" in
    *denied*)
        echo "provision-clients: $LOCATION_MQTT_USERNAME may not subscribe: $result" >&2
        exit 1
        ;;
esac
echo "provision-clients: $LOCATION_MQTT_USERNAME can log in and subscribe"
