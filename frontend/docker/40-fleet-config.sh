#!/bin/sh
# Writes the dashboard's runtime configuration from the environment, at container start:
#   FLEET_MAP_STYLE_URL   a MapLibre style URL (empty: the offline base layer)
#   FLEET_API_BASE_URL    the public API's origin (empty: the page's own origin)
# nginx serves the file as /config.json. Values must be plain URLs: quotes, backslashes and
# control characters are refused rather than escaped, so the JSON can never be broken.
set -eu

out_dir="${FLEET_CONFIG_DIR:-/tmp/fleet-config}"
style="${FLEET_MAP_STYLE_URL:-}"
api="${FLEET_API_BASE_URL:-}"

for value in "$style" "$api"; do
  case "$value" in
    *'"'* | *\\* | *[[:cntrl:]]*)
      echo "fleet-config: FLEET_MAP_STYLE_URL / FLEET_API_BASE_URL must be plain URLs" >&2
      exit 1
      ;;
  esac
done

mkdir -p "$out_dir"
if [ -n "$style" ]; then
  style_json="\"$style\""
else
  style_json=null
fi
printf '{"mapStyleUrl": %s, "apiBaseUrl": "%s"}\n' "$style_json" "$api" > "$out_dir/config.json"
echo "fleet-config: wrote $out_dir/config.json"
