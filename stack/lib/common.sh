# Shared settings and helpers for stack/up, stack/down, stack/status and stack/env.
# Sourced, not run. Every path the stack writes lives under $STATE (or $CACHE for
# binaries that outlive a state directory).

STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${DEPLOYBOOK_STACK_STATE:-/var/lib/deploybook-stack}
CACHE=${DEPLOYBOOK_STACK_CACHE:-/var/cache/deploybook-stack}

KUBE_VERSION=v1.34.4        # keep in step with stack/go.mod
COREDNS_VERSION=v1.14.7
REGISTRY_PORT=5000
REGISTRY=localhost:$REGISTRY_PORT
REGISTRY_USER=deploybook
PROD_REGISTRY_PORT=5001     # the second registry, prod's: own storage, htpasswd and password
PROD_REGISTRY=localhost:$PROD_REGISTRY_PORT
PROD_REGISTRY_USER=deploybook
GIT_PORT=8443               # the git server: nginx in front of git http-backend (fcgiwrap)
GIT_URL=https://localhost:$GIT_PORT
GIT_USER=deploybook
GIT_SERVER_USER=www-data    # the account git http-backend and nginx's workers run as
NODE_NAME=deploybook-node
BRIDGE=dbk0
NODE_IP=10.244.0.1          # the bridge's own address: the node and CoreDNS live here
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
KUBERNETES_SERVICE_IP=10.96.0.1
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
SANDBOX_IMAGE=deploybook.local/pause:1

# The sample app's repositories on the git server (see seed_repositories) and the
# environments on the one cluster, each with its namespace, users and contexts.
DX29_SERVICES=(gateway annotation terms worker)
DX29_ENVIRONMENTS=(dev test prod)

LOGS=$STATE/logs
RUN=$STATE/run
PKI=$STATE/pki
GIT_STATE=$STATE/git
GIT_REPOS=$GIT_STATE/repositories
KUBE_BIN=$CACHE/$KUBE_VERSION/kube
COREDNS_BIN=$CACHE/coredns-$COREDNS_VERSION/coredns
PAUSE_BIN=$CACHE/pause/pause

# The order in which components start; stack/down stops them in reverse.
COMPONENTS=(dockerd registry registry-prod git-http-backend git-server containerd etcd
            kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns)

say()  { printf '[stack] %s\n' "$*" >&2; }
die()  { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

pid_of() {  # prints the pid of a component we started, if it is still alive
  local f=$RUN/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  echo "$pid"
}

# start_component NAME CMD...: runs CMD in its own process group with output in
# $LOGS/NAME.log and records its pid. A second call while it runs does nothing.
start_component() {
  local name=$1; shift
  if pid_of "$name" >/dev/null; then return 0; fi
  mkdir -p "$LOGS" "$RUN"
  # Only stdin, stdout and stderr go to the component: a descriptor the caller holds (a flock
  # around `stack/up`, a CI runner's pipe), whatever its number, must not live on in a
  # daemon that outlives it. The subshell closes every other one, then becomes the daemon.
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      (( fd > 2 )) && eval "exec $fd>&-"
    done
    exec setsid "$@"
  ) >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# wait_until NAME SECONDS CMD...: polls CMD until it succeeds; fails naming the
# component and its log when the component died or the time ran out.
wait_until() {
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$name" >/dev/null; then
      tail -n 20 "$LOGS/$name.log" >&2 2>/dev/null
      die "$name exited during start-up; see $LOGS/$name.log"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 20 "$LOGS/$name.log" >&2 2>/dev/null
      die "$name not ready after ${seconds}s; see $LOGS/$name.log"
    fi
    sleep 0.5
  done
}

kubectl_admin() { kubectl --kubeconfig "$STATE/kubeconfig" --context deploybook-admin --request-timeout 10s "$@"; }
