"""The local stack does what a real cluster does: an image built offline and
pushed with credentials runs as a Deployment pulled with an imagePullSecret,
the pod reports the registry digest, and a Service answers through the API
server's proxy and, by DNS name, from another pod."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

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
def pushed_image(sh, tmp_path: Path) -> tuple[str, str, str, Path]:
    """Builds a tiny web image offline and pushes it with auth; returns
    (reference, pushed digest, page token, docker config dir)."""
    token = uuid.uuid4().hex
    context = tmp_path / "context"
    (context / "www").mkdir(parents=True)
    (context / "www" / "index.html").write_text(token)
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(DOCKERFILE)
    registry = sh.env["DEPLOYBOOK_REGISTRY"]
    ref = f"{registry}/stack-test/web:{token[:12]}"
    config = tmp_path / "docker-config"
    password = Path(sh.env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    sh(
        "docker",
        "login",
        "-u",
        sh.env["DEPLOYBOOK_REGISTRY_USER"],
        "--password-stdin",
        registry,
        input=password,
        DOCKER_CONFIG=str(config),
    )
    sh("docker", "build", "-q", "-t", ref, str(context))
    pushed = sh("docker", "push", ref, DOCKER_CONFIG=str(config))
    digest = next(w for w in pushed.split() if w.startswith("sha256:"))
    return ref, digest, token, config


def test_node_is_ready(sh) -> None:
    node = sh.json("get", "node", "deploybook-node")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True", node["status"]["conditions"]


def test_status_reports_every_component_up(stack_command) -> None:
    status = stack_command("status")
    assert status.returncode == 0, status.stdout
    lines = [line for line in status.stdout.splitlines() if line.split()[1:2] in (["up"], ["down"])]
    assert len(lines) == 13 and all(line.split()[1] == "up" for line in lines), status.stdout


def test_registry_refuses_anonymous_requests(sh) -> None:
    code = sh(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        sh.env["DEPLOYBOOK_REGISTRY_CA"],
        f"https://{sh.env['DEPLOYBOOK_REGISTRY']}/v2/_catalog",
    )
    assert code == "401"


def test_deployment_pulls_with_secret_and_serves(sh, namespace, pushed_image) -> None:
    ref, digest, token, config = pushed_image
    sh(
        "kubectl",
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "pull",
        "--type=kubernetes.io/dockerconfigjson",
        f"--from-file=.dockerconfigjson={config / 'config.json'}",
    )
    sh("kubectl", "apply", "-f", "-", input=manifests(namespace, ref))
    sh("kubectl", "-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s")

    pods = sh.json("-n", namespace, "get", "pods", "-l", "app=web")["items"]
    image_ids = [s["imageID"] for p in pods for s in p["status"]["containerStatuses"]]
    assert image_ids and all(i.endswith(f"@{digest}") for i in image_ids), (image_ids, digest)

    via_proxy = sh("kubectl", "get", "--raw", f"/api/v1/namespaces/{namespace}/services/web:80/proxy/")
    assert via_proxy == token

    sh("kubectl", "-n", namespace, "wait", "pod/client", "--for=condition=Ready", "--timeout=120s")
    # Static busybox cannot resolve names through libc (no NSS in a scratch
    # image), so the name goes through its own DNS client, as the sample app does.
    service_ip = sh.json("-n", namespace, "get", "service", "web")["spec"]["clusterIP"]
    # nslookup walks the whole search list and exits 1 when a later suffix misses.
    lookup = sh(
        "kubectl", "-n", namespace, "exec", "client", "--", "/bin/busybox", "nslookup", "-type=a", "web", check=False
    )
    assert f"web.{namespace}.svc.cluster.local" in lookup and service_ip in lookup, lookup
    via_dns = sh(
        "kubectl",
        "-n",
        namespace,
        "exec",
        "client",
        "--",
        "/bin/busybox",
        "timeout",
        "5",
        "/bin/busybox",
        "wget",
        "-qO-",
        f"http://{service_ip}/",
    )
    assert via_dns == token


def test_passwords_are_private_and_never_printed_or_logged(sh, stack_command) -> None:
    """Each server (registry, prod's registry, git) has its own random password, only in
    its 0600 file: not in status or env output, an exported value or any stack log."""
    state = Path(sh.env["DEPLOYBOOK_STACK_STATE"])
    files = [
        "DEPLOYBOOK_REGISTRY_PASSWORD_FILE",
        "DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE",
        "DEPLOYBOOK_GIT_PASSWORD_FILE",
    ]
    secrets = {}
    for variable in files:
        path = Path(sh.env[variable])
        assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_uid == 0, path
        secrets[variable] = path.read_text().strip()
    assert len(set(secrets.values())) == len(files) and all(len(s) >= 32 for s in secrets.values())
    printed = stack_command("status").stdout + stack_command("env").stdout
    logs = {log: log.read_bytes() for log in (state / "logs").glob("*.log")}
    for variable, secret in secrets.items():
        assert secret not in printed, variable
        assert not any(secret in value for value in sh.env.values()), variable
        assert [log for log, text in logs.items() if secret.encode() in text] == [], variable
