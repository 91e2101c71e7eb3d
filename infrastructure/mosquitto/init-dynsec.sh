#!/bin/sh
# One-shot, before the broker starts: create the dynamic-security file with the admin client
# (the vehicle service's broker credentials) if the data volume has none yet. An existing file
# is left alone: it holds every device's credentials.
set -eu

dynsec_file="${DYNSEC_FILE:-/mosquitto/data/dynamic-security.json}"
: "${VEHICLE_MQTT_ADMIN_USERNAME:?must be set}"
: "${VEHICLE_MQTT_ADMIN_PASSWORD:?must be set}"

if [ -f "$dynsec_file" ]; then
    echo "init-dynsec: $dynsec_file exists, leaving it as it is"
    exit 0
fi

# mosquitto_ctrl writes the file in place; build it beside the target and rename it so that a
# broker never starts on a half-written file.
mosquitto_ctrl dynsec init "$dynsec_file.partial" \
    "$VEHICLE_MQTT_ADMIN_USERNAME" "$VEHICLE_MQTT_ADMIN_PASSWORD" >/dev/null
chmod 600 "$dynsec_file.partial"
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$dynsec_file.partial"
fi
mv "$dynsec_file.partial" "$dynsec_file"
echo "init-dynsec: created $dynsec_file with admin client $VEHICLE_MQTT_ADMIN_USERNAME"
