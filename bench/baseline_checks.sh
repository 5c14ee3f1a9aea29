#!/usr/bin/env bash
# Checks-only the plain way, the baseline of figure 3: per Deployment `kubectl rollout status`
# (returns at once when rolled out) and a GET of its Service's /health through the API
# server's service proxy, one after the other.
#
#   bench/baseline_checks.sh NAMESPACE NAME...
set -euo pipefail
namespace=$1
shift
for name in "$@"; do
    kubectl -n "$namespace" rollout status "deployment/$name" --timeout=60s >/dev/null
    kubectl get --raw "/api/v1/namespaces/$namespace/services/$name:80/proxy/health" >/dev/null
done
echo "baseline: checked $# Deployments in $namespace"
