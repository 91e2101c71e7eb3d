#!/usr/bin/env bash
# Deploys Fleet Tracker with docker compose on this host (for Kubernetes, see
# infrastructure/scripts/k8s-deploy.sh and docs/deploy.md):
#
#   infrastructure/scripts/deploy.sh ENV [TAG]
#
# ENV names the env file, `.env.ENV` at the repository root (ENV_FILE overrides the path),
# which must set every variable docker-compose.prod.yml requires (its `${VAR:?...}`) and
# point AUTH_SIGNING_KEY_PATH at an existing key (default ./secrets/auth-signing-key.pem).
# Without TAG the images are built here from this checkout; with TAG they are pulled from
# IMAGE_PREFIX (default ghcr.io/fleet-tracker/fleet-tracker), as the pipeline pushed them.
# Then the stack is started and waited for: migrations complete, every service ready.
#
# It prints variable names, never their values: no `set -x`, no `docker compose config`
# output, and the env file is read as data, not run as a script.
set -euo pipefail

usage() {
    echo "usage: $0 ENV [TAG]   (reads .env.ENV; see the header of this script)" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
environment=$1
tag=${2:-}
[[ "$environment" =~ ^[a-z][a-z0-9-]*$ ]] || usage
if [ -n "$tag" ] && ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    echo "deploy: not an image tag: $tag" >&2
    exit 2
fi
repo=$(cd "$(dirname "$0")/../.." && pwd)
env_file=${ENV_FILE:-$repo/.env.$environment}
if [ ! -f "$env_file" ]; then
    echo "deploy: no env file $env_file (copy .env.example and set the production secrets)" >&2
    exit 1
fi

# The value the env file gives NAME, as compose reads it: the last `NAME=value` line, with
# one pair of surrounding quotes removed.
value_of() {
    local line
    line=$(grep -E "^(export )?$1=" "$env_file" | tail -n 1) || return 0
    line=${line#export }
    line=${line#*=}
    line=${line%$'\r'}
    if [[ "$line" =~ ^\"(.*)\"$ || "$line" =~ ^\'(.*)\'$ ]]; then
        line=${BASH_REMATCH[1]}
    fi
    printf '%s' "$line"
}

mapfile -t required < <(grep -oE '\$\{[A-Z0-9_]+:\?' "$repo/docker-compose.prod.yml" \
    | sed -E 's/^\$\{([A-Z0-9_]+):\?$/\1/' | sort -u)
missing=()
for name in "${required[@]}"; do
    [ -n "$(value_of "$name")" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deploy: $env_file does not set: ${missing[*]}" >&2
    exit 1
fi
token=$(value_of INTERNAL_SERVICE_TOKEN)
if [ ${#token} -lt 32 ]; then
    echo "deploy: INTERNAL_SERVICE_TOKEN must be at least 32 characters" >&2
    exit 1
fi
key_path=$(value_of AUTH_SIGNING_KEY_PATH)
key_path=${key_path:-./secrets/auth-signing-key.pem}
[[ "$key_path" = /* ]] || key_path="$repo/$key_path"
if [ ! -r "$key_path" ]; then
    echo "deploy: no signing key at $key_path (AUTH_SIGNING_KEY_PATH)" >&2
    exit 1
fi

files=(--file "$repo/docker-compose.yml" --file "$repo/docker-compose.prod.yml")
if [ -n "$tag" ]; then
    # The images to pull instead of building: one override, made here and thrown away.
    prefix=${IMAGE_PREFIX:-ghcr.io/fleet-tracker/fleet-tracker}
    override=$(mktemp)
    trap 'rm -f "$override"' EXIT
    echo "services:" >"$override"
    for service in gateway auth vehicle location notification; do
        printf '  %s:\n    image: %s/%s:%s\n' "$service" "$prefix" "$service" "$tag" >>"$override"
        if [ "$service" != gateway ]; then
            printf '  %s-migrate:\n    image: %s/%s:%s\n' "$service" "$prefix" "$service" "$tag" \
                >>"$override"
        fi
    done
    printf '  auth-signing-key:\n    image: %s/auth:%s\n' "$prefix" "$tag" >>"$override"
    files+=(--file "$override")
fi
compose() { docker compose --project-directory "$repo" --env-file "$env_file" "${files[@]}" "$@"; }

echo "deploy: $environment from $env_file, images ${tag:+$prefix/*:$tag}${tag:-built here}"
# Interpolation and the merge of the files, checked before anything is touched.
compose config --quiet
if [ -n "$tag" ]; then
    compose pull --quiet
    compose up --detach --no-build --wait --wait-timeout 600 --remove-orphans
else
    compose up --detach --build --wait --wait-timeout 600 --remove-orphans
fi
compose ps
echo "deploy: $environment is up"
