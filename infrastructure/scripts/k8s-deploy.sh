#!/usr/bin/env bash
# Deploys one overlay of kubernetes/ to the cluster kubectl points at, as the pipeline does:
#
#   infrastructure/scripts/k8s-deploy.sh staging|production TAG [IMAGE_PREFIX]
#
# TAG is the image tag every Fleet Tracker image was pushed with (the pipeline's commit SHA);
# IMAGE_PREFIX is where they are (default ghcr.io/fleet-tracker/fleet-tracker). In order:
#   1. the images are set in a copy of the overlay (`kustomize edit set image`; the checkout
#      is left as it is) and the overlay is rendered once;
#   2. everything but the services and the Jobs is applied (settings, network policies, the
#      stateful parts, PgBouncer) and waited for;
#   3. the migration Jobs (and the broker provisioning) run, and are waited for: if one fails,
#      nothing is rolled out and its log is printed;
#   4. the services are applied and `kubectl rollout status` waits for each; if any rollout
#      fails, every service this run changed is rolled back (`kubectl rollout undo`).
# The Secrets must exist in the namespace already (docs/deploy.md).
set -euo pipefail

usage() {
    echo "usage: $0 staging|production TAG [IMAGE_PREFIX]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
environment=$1
tag=$2
prefix=${3:-ghcr.io/fleet-tracker/fleet-tracker}
case "$environment" in
    staging) namespace=staging ;;
    production) namespace=prod ;;
    *) usage ;;
esac
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "not an image tag: $tag" >&2; exit 2; }
timeout_s=${ROLLOUT_TIMEOUT_S:-600}
apps=(gateway auth vehicle location notification frontend mosquitto)
repo=$(cd "$(dirname "$0")/../.." && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$repo/kubernetes" "$work/"
overlay="$work/kubernetes/overlays/$environment"
(
    cd "$overlay"
    for app in "${apps[@]}"; do
        kustomize edit set image "ghcr.io/fleet-tracker/fleet-tracker/$app=$prefix/$app:$tag"
    done
)
rendered="$work/rendered.yaml"
kustomize build "$overlay" >"$rendered"

k() { kubectl --namespace "$namespace" "$@"; }

# Waits for every Deployment and StatefulSet matching a selector; fails if one does not finish.
wait_for_rollouts() {
    local name
    for name in $(k get deployment,statefulset --selector "$1" --output name); do
        k rollout status "$name" --timeout "${timeout_s}s" || return 1
    done
}

echo "deploy: $environment ($namespace), images $prefix/*:$tag"

# 2. Everything the services need, first.
infrastructure='app.kubernetes.io/component notin (service,migration)'
k apply --filename "$rendered" --selector "$infrastructure"
wait_for_rollouts "$infrastructure"

# 3. Migrations. A Job is immutable: the previous run's is deleted first.
migration='app.kubernetes.io/component=migration'
k delete job --selector "$migration" --ignore-not-found --wait
k apply --filename "$rendered" --selector "$migration"
deadline=$((SECONDS + timeout_s))
for job in $(k get job --selector "$migration" --output name); do
    while :; do
        state=$(k get "$job" --output 'jsonpath={.status.conditions[?(@.status=="True")].type}')
        case " $state " in
            *" Complete "*) echo "deploy: $job complete"; break ;;
            *" Failed "*)
                echo "deploy: $job failed; nothing is rolled out. Its log:" >&2
                k logs "$job" --tail 100 >&2 || true
                exit 1
                ;;
        esac
        if [ $SECONDS -ge $deadline ]; then
            echo "deploy: $job did not finish in ${timeout_s}s; nothing is rolled out" >&2
            exit 1
        fi
        sleep 5
    done
done

# 4. The services. Only those whose spec this apply changed are rolled back on a failure.
service='app.kubernetes.io/component=service'
generations() {
    k get deployment,statefulset --selector "$service" \
        --output 'jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.generation}{"\n"}{end}'
}
before=$(generations || true)
k apply --filename "$rendered" --selector "$service"
changed=()
while IFS= read -r line; do
    [ -n "$line" ] || continue
    name=${line%%=*}
    grep -qxF "$line" <<<"$before" || changed+=("${name,,}")
done <<<"$(generations)"

if wait_for_rollouts "$service"; then
    echo "deploy: $environment is at $tag"
    exit 0
fi
echo "deploy: a rollout failed; rolling back ${changed[*]:-nothing}" >&2
for workload in "${changed[@]}"; do
    k rollout undo "$workload" || true
done
for workload in "${changed[@]}"; do
    k rollout status "$workload" --timeout "${timeout_s}s" || true
done
exit 1
