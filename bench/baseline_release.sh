#!/usr/bin/env bash
# The plain sequential release that deploybook's runbook replaces, as a pipeline script would
# do it with the stock tools: docker build and push per service, the pushed digest put into
# the manifests with sed, one kubectl apply, kubectl rollout status per Deployment, and a GET
# of each Service's /health through the API server's service proxy.
#
#   bench/baseline_release.sh NAMESPACE APP_DIR TAG SERVICE...
#
# APP_DIR holds one build context per service and manifests/SERVICE.yaml whose image is
# written as IMAGE_PREFIX/SERVICE (default dx29-bench). Registry and credentials come from the
# local stack's exports (eval "$(stack/env)"); the password is read from its file, never echoed.
set -euo pipefail

namespace=$1 app=$2 tag=$3
shift 3
services=("$@")
registry=${DEPLOYBOOK_REGISTRY:?run: eval "\$(stack/env)"}
prefix=${IMAGE_PREFIX:-dx29-bench}
pull_secret=${PULL_SECRET:-dx29-registry}
revision=$(git -C "$app" rev-parse HEAD)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private Docker config: the login does not touch the operator's ~/.docker.
export DOCKER_CONFIG=$work/docker

docker login "$registry" -u "$DEPLOYBOOK_REGISTRY_USER" --password-stdin \
    <"$DEPLOYBOOK_REGISTRY_PASSWORD_FILE" >/dev/null

kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" create secret docker-registry "$pull_secret" --docker-server="$registry" \
    --docker-username="$DEPLOYBOOK_REGISTRY_USER" \
    --docker-password="$(cat "$DEPLOYBOOK_REGISTRY_PASSWORD_FILE")" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" patch serviceaccount default \
    -p "{\"imagePullSecrets\":[{\"name\":\"$pull_secret\"}]}" >/dev/null

mkdir -p "$work/manifests"
for service in "${services[@]}"; do
    image=$registry/$prefix/$service
    docker build -q -t "$image:$tag" \
        --build-arg VERSION="$tag" --build-arg REVISION="$revision" \
        --label org.opencontainers.image.revision="$revision" \
        --label org.opencontainers.image.version="$tag" \
        "$app/$service" >/dev/null
    digest=$(docker push "$image:$tag" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p')
    [ -n "$digest" ] || { echo "baseline: no digest from docker push $image:$tag" >&2; exit 1; }
    sed "s#^\([[:space:]]*image:[[:space:]]*\)$prefix/$service[[:space:]]*\$#\1$image@$digest#" \
        "$app/manifests/$service.yaml" >"$work/manifests/$service.yaml"
done

kubectl -n "$namespace" apply -f "$work/manifests" >/dev/null

for service in "${services[@]}"; do
    kubectl -n "$namespace" rollout status "deployment/dx29-$service-deployment" --timeout=180s >/dev/null
done

for service in "${services[@]}"; do
    grep -q '^kind: Service$' "$app/manifests/$service.yaml" || continue
    kubectl get --raw "/api/v1/namespaces/$namespace/services/dx29-$service:80/proxy/health" >/dev/null
done
echo "baseline: released ${services[*]} to $namespace"
