#!/usr/bin/env bash
# Builds Helm 3 for the benchmark's second baseline from its Go module, at the release pinned in
# bench/helm/go.mod (a `tool` directive: no Go source of ours, none of Helm's copied), and
# caches it by version beside the stack's binaries, so a warm bench builds nothing:
#
#   bench/helm/build.sh        # prints the path of the helm binary, building it if missing
#
# ${DEPLOYBOOK_STACK_CACHE:-/var/cache/deploybook-stack}/helm-<version>/helm. The build's output
# goes to bench/results/tmp/logs/build-helm.log, named in the error when it fails. Cold, on 2
# cores, the build takes minutes; it runs under nice so the stack keeps its share.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${DEPLOYBOOK_STACK_CACHE:-/var/cache/deploybook-stack}
logs=${BENCH_LOGS:-$here/../results/tmp/logs}

die() { echo "bench/helm/build.sh: $*" >&2; exit 1; }

# The versions are read from go.mod, not from `go list`: a warm cache needs no Go toolchain.
module_version() { awk -v m="$1" '$1 == m { print $2; exit }' "$here/go.mod"; }
version=$(module_version helm.sh/helm/v3)
client_go=$(module_version k8s.io/client-go)
[[ $version =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "no helm.sh/helm/v3 release pinned in $here/go.mod (found '${version}')"
[[ $client_go =~ ^v0\.([0-9]+)\.[0-9]+$ ]] || die "no k8s.io/client-go v0.X.Y in $here/go.mod (found '${client_go}')"
kube_minor=${BASH_REMATCH[1]}

bin=$cache/helm-$version/helm
if [[ ! -x $bin ]]; then
  command -v go >/dev/null || die "helm $version is not cached at $bin and there is no go toolchain to build it"
  mkdir -p "$(dirname "$bin")" "$logs"
  log=$(cd "$logs" && pwd)/build-helm.log
  echo "bench: building helm $version from its Go module (cold: several minutes on 2 cores; log: $log)" >&2
  # The same -X values as Helm's own Makefile for a release tag: the version, a clean tree, and
  # the Kubernetes version `helm template` assumes without a cluster (client-go v0.N -> 1.N).
  ldflags="-s -w
    -X helm.sh/helm/v3/internal/version.version=$version
    -X helm.sh/helm/v3/internal/version.metadata=
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor"
  tmp=$bin.tmp.$$
  trap 'rm -f "$tmp"' EXIT
  start=$SECONDS
  (cd "$here" && CGO_ENABLED=0 nice go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp" \
    helm.sh/helm/v3/cmd/helm) >"$log" 2>&1 || die "building helm $version failed; see $log"
  "$tmp" version --short >>"$log" 2>&1 || die "the helm $version just built does not run; see $log"
  mv "$tmp" "$bin"
  echo "bench: built helm $version in $((SECONDS - start)) s: $bin" >&2
fi
echo "$bin"
