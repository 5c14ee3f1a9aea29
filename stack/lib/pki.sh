# Certificates for the stack, made once per state directory with openssl.
# One CA signs every server and client certificate; a second CA signs the
# front-proxy client, as the API server's request-header authentication wants.

pki_cert() {  # pki_cert NAME CA SUBJECT [SANS] : key + cert signed by CA
  local name=$1 ca=$2 subject=$3 sans=${4:-}
  [[ -f $PKI/$name.crt ]] && return 0
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  chmod 600 "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  local ext=$PKI/$name.ext
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $sans ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

pki_ca() {  # pki_ca NAME CN
  [[ -f $PKI/$1.crt ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" 2>/dev/null
  chmod 600 "$PKI/$1.key"
}

make_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  pki_ca ca "deploybook local CA"
  pki_ca front-proxy-ca "deploybook front-proxy CA"
  pki_cert registry ca "/CN=$REGISTRY" "DNS:localhost,IP:127.0.0.1"
  pki_cert registry-prod ca "/CN=$PROD_REGISTRY" "DNS:localhost,IP:127.0.0.1"
  pki_cert git-server ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
  pki_cert etcd ca "/CN=etcd" "DNS:localhost,IP:127.0.0.1"
  pki_cert apiserver ca "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP"
  pki_cert kubelet ca "/CN=system:node:$NODE_NAME/O=system:nodes" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
  pki_cert apiserver-etcd-client ca "/CN=kube-apiserver-etcd-client"
  pki_cert apiserver-kubelet-client ca "/CN=kube-apiserver-kubelet-client"
  pki_cert admin ca "/CN=deploybook-admin/O=system:masters"
  pki_cert viewer ca "/CN=deploybook-viewer"
  # Each environment's two users; their group may read node health (environments.yaml).
  local env
  for env in "${DX29_ENVIRONMENTS[@]}"; do
    pki_cert "deployer-$env" ca "/CN=deploybook-$env-deployer/O=deploybook:environments"
    pki_cert "viewer-$env" ca "/CN=deploybook-$env-viewer/O=deploybook:environments"
  done
  pki_cert controller-manager ca "/CN=system:kube-controller-manager"
  pki_cert scheduler ca "/CN=system:kube-scheduler"
  pki_cert kube-proxy ca "/CN=system:kube-proxy"
  pki_cert loopback ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
  pki_cert coredns ca "/CN=deploybook:coredns"
  pki_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client"
  if [[ ! -f $PKI/sa.key ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI/sa.key"
  fi
}

# kubeconfig_for NAME USER [CONTEXT [NAMESPACE]]: a kubeconfig that reaches the API
# server on the node address, verifying its certificate against the stack's CA.
kubeconfig_for() {
  local file=$1 user=$2 context=${3:-$2} namespace=${4:-}
  local kc=(kubectl --kubeconfig "$file")
  "${kc[@]}" config set-cluster deploybook --server="https://$NODE_IP:$APISERVER_PORT" \
    --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null
  "${kc[@]}" config set-credentials "$context" --client-certificate="$PKI/$user.crt" \
    --client-key="$PKI/$user.key" --embed-certs >/dev/null
  "${kc[@]}" config set-context "$context" --cluster=deploybook --user="$context" \
    ${namespace:+--namespace="$namespace"} >/dev/null
  "${kc[@]}" config use-context "$context" >/dev/null
  chmod 600 "$file"
}

# environment_contexts: adds each environment's two contexts to $STATE/kubeconfig
# when they are missing (a kubeconfig from an older stack gains them), keeping the
# current context as it was.
environment_contexts() {
  local file=$STATE/kubeconfig current env
  current=$(kubectl --kubeconfig "$file" config current-context)
  for env in "${DX29_ENVIRONMENTS[@]}"; do
    kubectl --kubeconfig "$file" config get-contexts "deploybook-$env" >/dev/null 2>&1 \
      || kubeconfig_for "$file" "deployer-$env" "deploybook-$env" "dx29-$env"
    kubectl --kubeconfig "$file" config get-contexts "deploybook-$env-view" >/dev/null 2>&1 \
      || kubeconfig_for "$file" "viewer-$env" "deploybook-$env-view" "dx29-$env"
  done
  kubectl --kubeconfig "$file" config use-context "$current" >/dev/null
}
