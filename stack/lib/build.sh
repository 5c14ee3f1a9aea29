# Binaries the stack needs but no package ships: the Kubernetes components
# (one binary, from the upstream Go modules pinned in stack/go.mod), CoreDNS
# (its Go module at a pinned version) and our pause program. Each is cached by
# version under $CACHE, so a warm `up` builds nothing.

KUBE_LDFLAGS="-s -w
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION
 -X k8s.io/component-base/version.gitMajor=1
 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION")
 -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"

build_kube() {
  [[ -x $KUBE_BIN ]] && return 0
  say "building Kubernetes $KUBE_VERSION components (cold: about 20 minutes on 2 cores; log: $LOGS/build-kube.log)"
  mkdir -p "$(dirname "$KUBE_BIN")" "$LOGS"
  (cd "$STACK_DIR" && CGO_ENABLED=0 go build -trimpath -tags selinux,notest,grpcnotrace \
     -ldflags "$KUBE_LDFLAGS" -o "$KUBE_BIN.tmp" ./kube) >"$LOGS/build-kube.log" 2>&1 \
    || die "building the Kubernetes components failed; see $LOGS/build-kube.log"
  mv "$KUBE_BIN.tmp" "$KUBE_BIN"
}

build_coredns() {
  [[ -x $COREDNS_BIN ]] && return 0
  say "building CoreDNS $COREDNS_VERSION (log: $LOGS/build-coredns.log)"
  mkdir -p "$(dirname "$COREDNS_BIN")" "$LOGS"
  GOBIN=$(dirname "$COREDNS_BIN") CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION" >"$LOGS/build-coredns.log" 2>&1 \
    || die "building CoreDNS failed; see $LOGS/build-coredns.log"
}

build_pause() {
  [[ -x $PAUSE_BIN ]] && return 0
  mkdir -p "$(dirname "$PAUSE_BIN")"
  gcc -static -O2 -o "$PAUSE_BIN" "$STACK_DIR/pause/pause.c" || die "building the pause program failed"
}
