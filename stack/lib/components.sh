# How each component of the stack is installed, configured, started and
# waited for. Sourced by stack/up after common.sh, pki.sh and build.sh.

DEBIAN_PACKAGES=(docker.io docker-registry containerd runc containernetworking-plugins
                 iptables conntrack socat busybox-static apache2-utils openssl curl
                 git nginx fcgiwrap)

# Runs once on every fresh state directory, even when every package is already
# installed (then `apt-get install` is a quick no-op), so the step and its log are
# walked the same way on a new machine and on a warm one. The package lists are
# refreshed only when the install from the current lists fails.
install_packages() {
  [[ -f $STATE/packages.done && -z $(missing_packages) ]] && return 0
  say "installing from Debian's packages (log: $LOGS/apt.log)"
  : >"$LOGS/apt.log"
  apt_install >>"$LOGS/apt.log" 2>&1 \
    || { apt-get update >>"$LOGS/apt.log" 2>&1 && apt_install >>"$LOGS/apt.log" 2>&1; } \
    || die "installing Debian's packages failed; see $LOGS/apt.log"
  local still; still=$(missing_packages)
  [[ -z $still ]] || die "still not installed after apt-get:$still; see $LOGS/apt.log"
  : >"$STATE/packages.done"
}

missing_packages() {  # prints " NAME" for each package dpkg does not list as installed
  local p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || printf ' %s' "$p"
  done
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${DEBIAN_PACKAGES[@]}"
}

# The settings a template under conf/ may name as ${VAR}.
TEMPLATE_VARS=(STATE PKI LOGS REGISTRY REGISTRY_PORT PROD_REGISTRY PROD_REGISTRY_PORT BRIDGE NODE_IP
               POD_CIDR NODE_NAME CLUSTER_DOMAIN SANDBOX_IMAGE GIT_STATE GIT_REPOS GIT_PORT GIT_URL
               GIT_SERVER_USER)

# render TEMPLATE DEST [NAME=VALUE...]: fills ${VAR} from the settings in common.sh, or
# from the values given; only those names are replaced, so nginx's own $variables and
# a shell script's stay as they are.
render() {
  local template=$1 dest=$2 name values=() names=()
  shift 2
  for name in "${TEMPLATE_VARS[@]}"; do values+=("$name=${!name}"); names+=("\${$name}"); done
  for name in "$@"; do values+=("$name"); names+=("\${${name%%=*}}"); done
  mkdir -p "$(dirname "$dest")"
  env "${values[@]}" envsubst "${names[*]}" <"$STACK_DIR/conf/$template" >"$dest"
}

# credentials_for DIR USER [GROUP]: a random password in DIR/password (0600, made once)
# and DIR/htpasswd with its bcrypt hash, rewritten only when it does not match. With a
# GROUP, that group may read the htpasswd file (for a server that does not run as root).
credentials_for() {
  local dir=$1 user=$2 group=${3:-}
  mkdir -p "$dir"
  if [[ ! -s $dir/password ]]; then
    (umask 077; openssl rand -hex 24 >"$dir/password")
  fi
  chmod 600 "$dir/password"
  if ! htpasswd -vi "$dir/htpasswd" "$user" <"$dir/password" >/dev/null 2>&1; then
    (umask 077; htpasswd -iBc "$dir/htpasswd" "$user" <"$dir/password" 2>/dev/null) \
      || die "htpasswd could not write $dir/htpasswd"
  fi
  if [[ -n $group ]]; then
    chown "root:$group" "$dir/htpasswd"; chmod 640 "$dir/htpasswd"
  else
    chmod 600 "$dir/htpasswd"
  fi
}

write_configs() {
  render registry.yml "$STATE/registry/config.yml"
  render registry-prod.yml "$STATE/registry-prod/config.yml"
  render git-server.conf "$GIT_STATE/nginx.conf"
  render containerd.toml "$STATE/containerd/config.toml"
  render hosts.toml "$STATE/containerd/certs.d/$REGISTRY/hosts.toml"
  render hosts.toml "$STATE/containerd/certs.d/$PROD_REGISTRY/hosts.toml" REGISTRY="$PROD_REGISTRY"
  render cni.conflist "$STATE/cni/net.d/10-deploybook.conflist"
  render kubelet.yaml "$STATE/kubelet/config.yaml"
  render scheduler.yaml "$STATE/scheduler/config.yaml"
  render kube-proxy.yaml "$STATE/kube-proxy/config.yaml"
  render Corefile "$STATE/coredns/Corefile"
  : >"$STATE/kubelet/resolv.conf"   # pods with dnsPolicy Default get no outside resolver
  # dockerd reads registry trust from this fixed place only.
  install -D -m 0644 "$PKI/ca.crt" "/etc/docker/certs.d/$REGISTRY/ca.crt"
  install -D -m 0644 "$PKI/ca.crt" "/etc/docker/certs.d/$PROD_REGISTRY/ca.crt"

  credentials_for "$STATE/registry" "$REGISTRY_USER"
  credentials_for "$STATE/registry-prod" "$PROD_REGISTRY_USER"
  credentials_for "$GIT_STATE" "$GIT_USER" "$GIT_SERVER_USER"

  mkdir -p "$STATE/kubeconfigs"
  local kc
  for kc in controller-manager scheduler kube-proxy coredns; do
    [[ -f $STATE/kubeconfigs/$kc ]] || kubeconfig_for "$STATE/kubeconfigs/$kc" "$kc" deploybook
  done
  [[ -f $STATE/kubeconfigs/kubelet ]] || kubeconfig_for "$STATE/kubeconfigs/kubelet" kubelet deploybook
  if [[ ! -f $STATE/kubeconfig ]]; then
    kubeconfig_for "$STATE/kubeconfig" viewer deploybook-view
    kubeconfig_for "$STATE/kubeconfig" admin deploybook-admin   # last one set is current
  fi
  environment_contexts
}

prepare_host() {
  # The bridge exists before the API server so the node address is there to bind.
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

start_dockerd() {
  start_component dockerd dockerd --data-root "$STATE/docker/data" --exec-root "$STATE/docker/exec" \
    --host "unix://$STATE/docker/docker.sock" --pidfile "$STATE/docker/docker.pid" \
    --bridge=none --iptables=false --ip-masq=false
  wait_until dockerd 60 docker -H "unix://$STATE/docker/docker.sock" version
}

registry_answers() {  # registry_answers [ADDRESS]: 401 means up, the registry asks for credentials
  [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" "https://${1:-$REGISTRY}/v2/") == 401 ]]
}

start_registry() {
  start_component registry docker-registry serve "$STATE/registry/config.yml"
  wait_until registry 30 registry_answers
}

start_registry_prod() {
  start_component registry-prod docker-registry serve "$STATE/registry-prod/config.yml"
  wait_until registry-prod 30 registry_answers "$PROD_REGISTRY"
}

# The git server: nginx (component git-server) terminates TLS, asks for the basic
# credentials and hands each repository request to fcgiwrap (component
# git-http-backend), which runs `git http-backend` as $GIT_SERVER_USER, the owner of
# the repositories. See conf/git-server.conf.
GIT_BACKEND_SOCKET=$GIT_STATE/run/fcgiwrap.sock
GIT_PROBE_URL=$GIT_URL/dx29-gateway.git/info/refs?service=git-upload-pack

git_server_answers() {  # 401 means up: nginx answers over verified TLS and asks for credentials
  [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" "$GIT_PROBE_URL") == 401 ]]
}

git_backend_answers() {  # with the credentials, git http-backend advertises a repository's refs
  local answer
  # The password reaches curl on stdin (its config), never on a command line.
  answer=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' --cacert "$PKI/ca.crt" -K - \
    "$GIT_PROBE_URL" <<<"user = \"$GIT_USER:$(<"$GIT_STATE/password")\"") \
    && [[ $answer == '200 application/x-git-upload-pack-advertisement' ]]
}

git_backend_listening() { [[ -S $GIT_BACKEND_SOCKET ]]; }

start_git_server() {
  mkdir -p "$GIT_STATE/run" "$GIT_STATE/nginx" "$GIT_STATE/home"
  chown "$GIT_SERVER_USER:$GIT_SERVER_USER" "$GIT_STATE/run"
  chmod 750 "$GIT_STATE/run"
  # $GIT_SERVER_USER walks down to the repositories and reads the htpasswd file.
  setpriv --reuid="$GIT_SERVER_USER" --regid="$GIT_SERVER_USER" --init-groups \
    test -r "$GIT_STATE/htpasswd" -a -x "$GIT_REPOS" \
    || die "$GIT_SERVER_USER cannot read $GIT_STATE/htpasswd or enter $GIT_REPOS: every directory above $GIT_STATE must be searchable by others (chmod o+x)"
  pid_of git-http-backend >/dev/null || rm -f "$GIT_BACKEND_SOCKET"   # a stale socket blocks the bind
  # A clean environment (HOME without a .gitconfig, no root's variables), the one script
  # fcgiwrap may run, and the repositories' owner as the user it runs as.
  start_component git-http-backend env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$GIT_STATE/home" \
    setpriv --reuid="$GIT_SERVER_USER" --regid="$GIT_SERVER_USER" --init-groups \
    fcgiwrap -c 4 -p /usr/lib/git-core/git-http-backend -s "unix:$GIT_BACKEND_SOCKET"
  wait_until git-http-backend 30 git_backend_listening
  start_component git-server nginx -e stderr -p "$GIT_STATE/nginx" -c "$GIT_STATE/nginx.conf" -g 'daemon off;'
  wait_until git-server 30 git_server_answers
  wait_until git-http-backend 30 git_backend_answers
}

ctr_k8s() { ctr --address "$STATE/containerd/containerd.sock" -n k8s.io "$@"; }

start_containerd() {
  start_component containerd containerd --config "$STATE/containerd/config.toml"
  wait_until containerd 30 ctr_k8s version
  if ! ctr_k8s images ls -q | grep -qx "$SANDBOX_IMAGE"; then
    local ctx; ctx=$(mktemp -d)
    cp "$PAUSE_BIN" "$STACK_DIR/pause/Dockerfile" "$ctx/"
    docker -H "unix://$STATE/docker/docker.sock" build -q -t "$SANDBOX_IMAGE" "$ctx" >>"$LOGS/sandbox-image.log" 2>&1
    docker -H "unix://$STATE/docker/docker.sock" save "$SANDBOX_IMAGE" | ctr_k8s images import - >/dev/null
    rm -rf "$ctx"
  fi
}

# Health checks capture the answer before matching it: with pipefail, `cmd | grep -q`
# fails whenever grep stops reading early and cmd dies of SIGPIPE.
etcd_healthy() {
  local answer
  answer=$(curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
    --key "$PKI/apiserver-etcd-client.key" https://127.0.0.1:2379/health) && [[ $answer == *'"health":"true"'* ]]
}

start_etcd() {
  local tls=(--cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" --trusted-ca-file "$PKI/ca.crt"
             --client-cert-auth --peer-cert-file "$PKI/etcd.crt" --peer-key-file "$PKI/etcd.key"
             --peer-trusted-ca-file "$PKI/ca.crt" --peer-client-cert-auth)
  start_component etcd "$KUBE_BIN" etcd --name deploybook --data-dir "$STATE/etcd" \
    --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
    --listen-peer-urls https://127.0.0.1:2380 --initial-advertise-peer-urls https://127.0.0.1:2380 \
    --initial-cluster deploybook=https://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    "${tls[@]}"
  wait_until etcd 60 etcd_healthy
}

apiserver_ready() { kubectl_admin get --raw /readyz; }

start_apiserver() {
  start_component kube-apiserver "$KUBE_BIN" kube-apiserver \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --etcd-servers https://127.0.0.1:2379 --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key"
  wait_until kube-apiserver 120 apiserver_ready
  kubectl_admin apply -f "$STACK_DIR/conf/rbac.yaml" >/dev/null
}

loopback_healthy() {  # loopback_healthy PORT: a component's /healthz over verified TLS
  local answer
  answer=$(curl -sf --cacert "$PKI/ca.crt" "https://localhost:$1/healthz") && [[ $answer == ok ]]
}

start_controller_manager() {
  local kc=$STATE/kubeconfigs/controller-manager
  start_component kube-controller-manager "$KUBE_BIN" kube-controller-manager \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --tls-cert-file "$PKI/loopback.crt" --tls-private-key-file "$PKI/loopback.key" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials --leader-elect=false --service-cluster-ip-range "$SERVICE_CIDR"
  wait_until kube-controller-manager 60 loopback_healthy 10257
}

start_scheduler() {
  local kc=$STATE/kubeconfigs/scheduler
  start_component kube-scheduler "$KUBE_BIN" kube-scheduler --config "$STATE/scheduler/config.yaml" \
    --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --tls-cert-file "$PKI/loopback.crt" --tls-private-key-file "$PKI/loopback.key"
  wait_until kube-scheduler 60 loopback_healthy 10259
}

node_registered() { kubectl_admin get node "$NODE_NAME"; }

start_kubelet() {
  mkdir -p "$STATE/kubelet/root"
  start_component kubelet "$KUBE_BIN" kubelet --config "$STATE/kubelet/config.yaml" \
    --kubeconfig "$STATE/kubeconfigs/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$STATE/kubelet/root" --cert-dir "$STATE/kubelet/pki"
  wait_until kubelet 90 node_registered
}

proxy_synced() {
  local rules
  rules=$(iptables -t nat -S KUBE-SERVICES 2>/dev/null) && [[ $rules == *default/kubernetes* ]]
}

start_kube_proxy() {
  start_component kube-proxy "$KUBE_BIN" kube-proxy --config "$STATE/kube-proxy/config.yaml"
  wait_until kube-proxy 60 proxy_synced
}

dns_answers() {
  local answer
  answer=$(busybox nslookup "kubernetes.default.svc.$CLUSTER_DOMAIN" "$NODE_IP") && [[ $answer == *"$KUBERNETES_SERVICE_IP"* ]]
}

start_coredns() {
  start_component coredns "$COREDNS_BIN" -conf "$STATE/coredns/Corefile"
  wait_until coredns 60 dns_answers
}

node_ready() {
  [[ $(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

wait_node_ready() {
  wait_until kubelet 120 node_ready
  # Pods need the namespace's default ServiceAccount before they can be created.
  wait_until kube-controller-manager 60 kubectl_admin get serviceaccount default -n default
}

# The sample app's repositories on the git server, made from apps/dx29/ when they do not
# exist; an existing repository is left exactly as it is (pushes to it are kept).
DX29_APP=$(dirname "$STACK_DIR")/apps/dx29
DX29_PROD_TWO_REPLICAS=(gateway annotation)   # as environments/prod.yaml says
# Seed commits do not depend on this machine's git configuration or clock: the same
# apps/dx29 gives the same commit ids on every machine.
SEED_IDENTITY=(GIT_AUTHOR_NAME=deploybook-stack GIT_AUTHOR_EMAIL=stack@deploybook.local
               GIT_COMMITTER_NAME=deploybook-stack GIT_COMMITTER_EMAIL=stack@deploybook.local
               GIT_AUTHOR_DATE=2025-01-01T00:00:00Z GIT_COMMITTER_DATE=2025-01-01T00:00:00Z)

seed_git() {  # git with no system or global configuration and the seed identity
  env -u GIT_DIR -u GIT_WORK_TREE -u GIT_INDEX_FILE GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
    "${SEED_IDENTITY[@]}" git "$@"
}

seed_repositories() {
  rm -rf "$GIT_STATE/tmp"   # what an interrupted seed left
  mkdir -p "$GIT_REPOS" "$GIT_STATE/tmp"
  chmod 755 "$GIT_STATE" "$GIT_REPOS"
  local service
  for service in "${DX29_SERVICES[@]}"; do
    seed_repository "dx29-$service" "main develop" service_tree "$service"
  done
  seed_repository dx29-env-test main environment_tree test
  seed_repository dx29-env-prod main environment_tree prod
}

# seed_repository NAME "BRANCH..." FILL ARGS...: unless NAME.git exists, runs FILL ARGS
# DIR to write the tree, commits it once and makes a bare NAME.git with every BRANCH at
# that commit (HEAD: the first). The repository is built aside and moved into place, so
# an interrupted up never leaves half a repository behind.
seed_repository() {
  local name=$1 branches=$2 repo=$GIT_REPOS/$1.git work
  shift 2
  [[ -e $repo ]] && return 0
  say "seeding git repository $name (log: $LOGS/git-seed.log)"
  work=$(mktemp -d "$GIT_STATE/tmp/$name.XXXXXX")
  if ! build_repository "$work" "$name" "$branches" "$@" >>"$LOGS/git-seed.log" 2>&1; then
    rm -rf "$work"
    die "seeding $name failed; see $LOGS/git-seed.log"
  fi
  mv -T "$work/$name.git" "$repo" || die "could not move the seeded $name into $GIT_REPOS"
  rm -rf "$work"
  echo "seeded $name: $(seed_git --git-dir="$repo" rev-parse HEAD) on $branches" >>"$LOGS/git-seed.log"
}

build_repository() {  # build_repository WORK NAME "BRANCH..." FILL ARGS...
  local work=$1 name=$2 branches=$3 branch
  shift 3
  local tree=$work/tree bare=$work/$name.git
  echo "seeding $name from $DX29_APP"
  mkdir "$tree" || return 1
  "$@" "$tree" || return 1
  seed_git -C "$tree" init -q --template= --initial-branch="${branches%% *}" || return 1
  seed_git -C "$tree" add -A || return 1
  seed_git -C "$tree" commit -q -m "Seed $name from deploybook's apps/dx29" || return 1
  seed_git init -q --bare --template= "$bare" || return 1
  seed_git --git-dir="$bare" config receive.fsckObjects true || return 1
  for branch in $branches; do
    seed_git -C "$tree" push -q "$bare" "HEAD:refs/heads/$branch" || return 1
  done
  seed_git --git-dir="$bare" symbolic-ref HEAD "refs/heads/${branches%% *}" || return 1
  chown -R "$GIT_SERVER_USER:$GIT_SERVER_USER" "$bare"
}

# service_tree SERVICE DIR: the service's build context (apps/dx29/SERVICE without the
# rootfs/ that the monorepo's prepare fills), common/ when its image runs the shared
# HTTP server, its own prepare, and its dev manifest under manifests/.
service_tree() {
  local service=$1 tree=$2
  [[ -f $DX29_APP/$service/Dockerfile ]] || { echo "no $DX29_APP/$service/Dockerfile"; return 1; }
  tar -C "$DX29_APP/$service" --exclude=./rootfs -cf - . | tar -C "$tree" -xf - || return 1
  if grep -q '"/app/serve"' "$tree/Dockerfile"; then
    mkdir "$tree/common" && cp -p "$DX29_APP"/common/* "$tree/common/" || return 1
  fi
  install -m 0755 "$STACK_DIR/conf/dx29/prepare" "$tree/prepare" &&
  install -m 0644 "$STACK_DIR/conf/dx29/gitignore" "$tree/.gitignore" &&
  install -m 0644 "$STACK_DIR/conf/dx29/dockerignore" "$tree/.dockerignore" &&
  install -D -m 0644 "$DX29_APP/manifests/$service.yaml" "$tree/manifests/$service.yaml" &&
  render dx29/service-README.md "$tree/README.md" SERVICE="$service"
}

# environment_tree ENV DIR: manifests/SERVICE.yaml for every service; prod runs two
# replicas of some.
environment_tree() {
  local env=$1 tree=$2 service manifest
  mkdir -p "$tree/manifests"
  for service in "${DX29_SERVICES[@]}"; do
    manifest=$tree/manifests/$service.yaml
    install -m 0644 "$DX29_APP/manifests/$service.yaml" "$manifest" || return 1
    if [[ $env == prod && " ${DX29_PROD_TWO_REPLICAS[*]} " == *" $service "* ]]; then
      sed -i 's/^  replicas: 1$/  replicas: 2/' "$manifest"
      [[ $(grep -c '^  replicas: 2$' "$manifest") == 1 ]] \
        || { echo "$manifest: expected one 'replicas: 1' of the Deployment to raise to 2"; return 1; }
    fi
  done
  render dx29/env-README.md "$tree/README.md" ENV_NAME="$env"
}

# The three environments on the one cluster: namespaces dx29-ENV, each with a deployer
# and a viewer (conf/environment.yaml), and what every environment's users share
# (conf/environments.yaml: node health).
apply_environments() {
  local env
  for env in "${DX29_ENVIRONMENTS[@]}"; do
    render environment.yaml "$STATE/environments/$env.yaml" ENV_NAME="$env"
  done
  # The API server makes kube-node-lease shortly after it is ready.
  wait_until kube-apiserver 60 kubectl_admin get namespace kube-node-lease
  {
    kubectl_admin apply -f "$STACK_DIR/conf/environments.yaml" &&
    kubectl_admin apply -f "$STATE/environments"
  } >>"$LOGS/environments.log" 2>&1 || die "applying the environments' namespaces and RBAC failed; see $LOGS/environments.log"
}
