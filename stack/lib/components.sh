# How each component of the stack is installed, configured, started and
# waited for. Sourced by stack/up after common.sh, pki.sh and build.sh.

DEBIAN_PACKAGES=(docker.io docker-registry containerd runc containernetworking-plugins
                 iptables conntrack socat busybox-static apache2-utils openssl curl)

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
               POD_CIDR NODE_NAME CLUSTER_DOMAIN SANDBOX_IMAGE)

# render TEMPLATE DEST [NAME=VALUE...]: fills ${VAR} from the settings in common.sh, or
# from the values given; only those names are replaced, so a template's other $words
# stay as they are.
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
