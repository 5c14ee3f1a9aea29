#!/usr/bin/env bash
# The second baseline: the release most teams would run with Helm 3 instead of deploybook.
# Build and push exactly as bench/baseline_release.sh does, then the same manifests as a chart
# (templates/ = the sample app's manifests, each image line turned into a value) and one
#   helm upgrade --install RELEASE CHART --namespace NS --create-namespace \
#        --values DIGESTS --wait --atomic --timeout 180s
# then the same GET of each Service's /health through the API server's service proxy.
#
#   bench/baseline_helm.sh NAMESPACE APP_DIR TAG SERVICE...
#
# The pushed digests go in as values (images.SERVICE: REGISTRY/PREFIX/SERVICE@sha256:...), not
# written into the templates: a Helm team keeps the chart fixed and changes only the values per
# release. Both render the same objects. helm is $HELM, or what bench/helm/build.sh prints (the
# pinned release, built once into the stack's cache). Registry and credentials come from the local
# stack's exports (eval "$(stack/env)"); the password is read from its file, never echoed.
set -euo pipefail

namespace=$1 app=$2 tag=$3
shift 3
services=("$@")
registry=${DEPLOYBOOK_REGISTRY:?run: eval "\$(stack/env)"}
prefix=${IMAGE_PREFIX:-dx29-bench}
pull_secret=${PULL_SECRET:-dx29-registry}
release=${HELM_RELEASE:-dx29}
timeout=${HELM_TIMEOUT:-180s}
helm=${HELM:-$("$(dirname "$0")/helm/build.sh")}
revision=$(git -C "$app" rev-parse HEAD)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private Docker config and Helm homes: nothing touches the operator's ~/.docker or ~/.config/helm.
export DOCKER_CONFIG=$work/docker HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache \
    HELM_DATA_HOME=$work/helm/data

docker login "$registry" -u "$DEPLOYBOOK_REGISTRY_USER" --password-stdin \
    <"$DEPLOYBOOK_REGISTRY_PASSWORD_FILE" >/dev/null

# The same namespace, pull secret and service account as the shell baseline: the chart holds only
# the app's manifests, and the credentials never become a Helm value (stored in the release).
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" create secret docker-registry "$pull_secret" --docker-server="$registry" \
    --docker-username="$DEPLOYBOOK_REGISTRY_USER" \
    --docker-password="$(cat "$DEPLOYBOOK_REGISTRY_PASSWORD_FILE")" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" patch serviceaccount default \
    -p "{\"imagePullSecrets\":[{\"name\":\"$pull_secret\"}]}" >/dev/null

chart=$work/chart
mkdir -p "$chart/templates"
printf 'apiVersion: v2\nname: dx29\ndescription: The dx29 sample app (bench/baseline_helm.sh)\ntype: application\nversion: 0.1.0\nappVersion: "%s"\n' \
    "$tag" >"$chart/Chart.yaml"
echo "images:" >"$work/digests.yaml"
for service in "${services[@]}"; do
    image=$registry/$prefix/$service
    docker build -q -t "$image:$tag" \
        --build-arg VERSION="$tag" --build-arg REVISION="$revision" \
        --label org.opencontainers.image.revision="$revision" \
        --label org.opencontainers.image.version="$tag" \
        "$app/$service" >/dev/null
    digest=$(docker push "$image:$tag" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p')
    [ -n "$digest" ] || { echo "baseline-helm: no digest from docker push $image:$tag" >&2; exit 1; }
    sed "s#^\([[:space:]]*image:[[:space:]]*\)$prefix/$service[[:space:]]*\$#\1{{ .Values.images.$service | quote }}#" \
        "$app/manifests/$service.yaml" >"$chart/templates/$service.yaml"
    grep -q "{{ .Values.images.$service " "$chart/templates/$service.yaml" || {
        echo "baseline-helm: $app/manifests/$service.yaml has no line 'image: $prefix/$service'" >&2
        exit 1
    }
    echo "  $service: \"$image@$digest\"" >>"$work/digests.yaml"
done

"$helm" upgrade --install "$release" "$chart" --namespace "$namespace" --create-namespace \
    --values "$work/digests.yaml" --wait --atomic --timeout "$timeout" >/dev/null

for service in "${services[@]}"; do
    grep -q '^kind: Service$' "$app/manifests/$service.yaml" || continue
    kubectl get --raw "/api/v1/namespaces/$namespace/services/dx29-$service:80/proxy/health" >/dev/null
done
echo "baseline-helm: released ${services[*]} to $namespace as Helm release $release"
