"""The local stack does what a real cluster does: an image built offline and
pushed with credentials runs as a Deployment pulled with an imagePullSecret,
the pod reports the registry digest, and a Service answers through the API
server's proxy and, by DNS name, from another pod."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import STACK, kubectl_json, run

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
USER 10001:10001
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def manifests(namespace: str, image: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      imagePullSecrets: [{{name: pull}}]
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {namespace}}}
spec:
  imagePullSecrets: [{{name: pull}}]
  containers:
  - name: client
    image: {image}
    command: [/bin/busybox, sleep, "3600"]
"""


@pytest.fixture
def pushed_image(env: dict[str, str], tmp_path: Path) -> tuple[str, str, str, Path]:
    """Builds a tiny web image offline, pushes it with auth; returns
    (reference, pushed digest, page token, docker config dir)."""
    token = uuid.uuid4().hex
    context = tmp_path / "context"
    (context / "www").mkdir(parents=True)
    (context / "www" / "index.html").write_text(token)
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(DOCKERFILE)
    ref = f"{env['DEPLOYBOOK_REGISTRY']}/stack-test/web:{token[:12]}"
    config = tmp_path / "docker-config"
    env = dict(env, DOCKER_CONFIG=str(config))
    password = Path(env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    run("docker", "login", "-u", env["DEPLOYBOOK_REGISTRY_USER"], "--password-stdin",
        env["DEPLOYBOOK_REGISTRY"], env=env, input=password)
    run("docker", "build", "-q", "-t", ref, str(context), env=env)
    pushed = run("docker", "push", ref, env=env)
    digest = next(w for w in pushed.split() if w.startswith("sha256:"))
    return ref, digest, token, config


def test_node_is_ready(env: dict[str, str]) -> None:
    node = kubectl_json(env, "get", "node", "deploybook-node")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True", node["status"]["conditions"]


def test_status_reports_every_component_up() -> None:
    out = subprocess.run([str(STACK / "status")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    for component in ("dockerd", "registry", "containerd", "etcd", "kube-apiserver", "kubelet", "coredns"):
        assert f"{component} " in out.stdout and "down" not in out.stdout, out.stdout


def test_registry_refuses_anonymous_pull(env: dict[str, str]) -> None:
    code = run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
               env["DEPLOYBOOK_REGISTRY_CA"], f"https://{env['DEPLOYBOOK_REGISTRY']}/v2/_catalog", env=env)
    assert code == "401"


def test_deployment_pulls_with_secret_and_serves(env, namespace, pushed_image) -> None:
    ref, digest, token, config = pushed_image
    run("kubectl", "-n", namespace, "create", "secret", "generic", "pull",
        "--type=kubernetes.io/dockerconfigjson", f"--from-file=.dockerconfigjson={config / 'config.json'}", env=env)
    run("kubectl", "apply", "-f", "-", env=env, input=manifests(namespace, ref))
    run("kubectl", "-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", env=env)

    pods = kubectl_json(env, "-n", namespace, "get", "pods", "-l", "app=web")["items"]
    image_ids = [s["imageID"] for p in pods for s in p["status"]["containerStatuses"]]
    assert image_ids and all(i.endswith(f"@{digest}") for i in image_ids), (image_ids, digest)

    via_proxy = run("kubectl", "get", "--raw", f"/api/v1/namespaces/{namespace}/services/web:80/proxy/", env=env)
    assert via_proxy == token

    run("kubectl", "-n", namespace, "wait", "pod/client", "--for=condition=Ready", "--timeout=120s", env=env)
    via_dns = run("kubectl", "-n", namespace, "exec", "client", "--", "/bin/busybox", "wget", "-qO-",
                  "-T", "5", "http://web/", env=env)
    assert via_dns == token
