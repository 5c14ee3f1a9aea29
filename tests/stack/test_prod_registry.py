"""Prod's registry (localhost:5001): a second distribution registry with its own
password, TLS with the stack's CA for Docker and for containerd. An image pushed there
runs in dx29-prod, created by prod's deployer with a pull secret; its viewer may not exec."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY token /token
USER 10001:10001
ENTRYPOINT ["/bin/busybox", "sleep", "3600"]
"""


def status(sh, url: str, *, user: str | None = None, method: str = "GET") -> str:
    """HTTP status over TLS verified with the stack's CA; credentials reach curl on stdin."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
    args += ["--head"] if method == "HEAD" else ["-X", method]
    args += ["--cacert", sh.env["DEPLOYBOOK_PROD_REGISTRY_CA"]]
    if user is None:
        return sh(*args, url)
    return sh(*args, "-K", "-", url, input=f'user = "{user}"\n')


def prod_login(sh) -> str:
    password = Path(sh.env["DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    return f"{sh.env['DEPLOYBOOK_PROD_REGISTRY_USER']}:{password}"


def test_prod_registry_refuses_anonymous_and_the_first_registrys_password(sh) -> None:
    registry = sh.env["DEPLOYBOOK_PROD_REGISTRY"]
    assert registry == "localhost:5001"
    assert status(sh, f"https://{registry}/v2/") == "401"
    first = Path(sh.env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    assert status(sh, f"https://{registry}/v2/", user=f"{sh.env['DEPLOYBOOK_REGISTRY_USER']}:{first}") == "401"
    assert status(sh, f"https://{registry}/v2/", user=prod_login(sh)) == "200"


@pytest.fixture
def prod_image(sh, tmp_path: Path):
    """A tiny image built offline, pushed to prod's registry with docker login; yields
    (reference, digest, docker config dir) and deletes it from the registry afterwards."""
    registry = sh.env["DEPLOYBOOK_PROD_REGISTRY"]
    token = uuid.uuid4().hex
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "token").write_text(token)
    (context / "Dockerfile").write_text(DOCKERFILE)
    repository = f"stack-test/prod-{token[:8]}"
    ref = f"{registry}/{repository}:{token[:12]}"
    config = tmp_path / "docker-config"
    password = Path(sh.env["DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    sh(
        "docker",
        "login",
        "-u",
        sh.env["DEPLOYBOOK_PROD_REGISTRY_USER"],
        "--password-stdin",
        registry,
        input=password,
        DOCKER_CONFIG=str(config),
    )
    digest = None
    try:
        sh("docker", "build", "-q", "-t", ref, str(context))
        pushed = sh("docker", "push", ref, DOCKER_CONFIG=str(config))
        digest = next(w for w in pushed.split() if w.startswith("sha256:"))
        yield ref, digest, config
    finally:
        sh("docker", "rmi", "-f", ref, check=False)
        if digest:
            url = f"https://{registry}/v2/{repository}/manifests/{digest}"
            status(sh, url, user=prod_login(sh), method="DELETE")


def test_push_and_pull_with_credentials(sh, prod_image) -> None:
    ref, digest, config = prod_image
    registry, _, rest = ref.partition("/")
    repository, _, tag = rest.partition(":")
    url = f"https://{registry}/v2/{repository}/manifests/{tag}"
    assert status(sh, url, method="HEAD") == "401"
    sh("docker", "rmi", ref)
    sh("docker", "pull", "-q", ref, DOCKER_CONFIG=str(config))
    digests = json.loads(sh("docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref))
    assert f"{registry}/{repository}@{digest}" in digests, digests


def test_pod_in_dx29_prod_runs_an_image_from_prod_registry(sh, prod_image) -> None:
    """Prod's deployer creates the pull secret and the pod; containerd pulls over TLS with the
    stack's CA (hosts.toml for localhost:5001); the pod runs exactly the pushed digest."""
    ref, digest, config = prod_image
    name = f"stack-test-{uuid.uuid4().hex[:8]}"
    prod = ("kubectl", "--context", "deploybook-prod", "-n", "dx29-prod")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "imagePullSecrets": [{"name": name}],
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": ref, "imagePullPolicy": "Always"}],
        },
    }
    try:
        sh(
            *prod,
            "create",
            "secret",
            "generic",
            name,
            "--type=kubernetes.io/dockerconfigjson",
            f"--from-file=.dockerconfigjson={config / 'config.json'}",
        )
        sh(*prod, "create", "-f", "-", input=json.dumps(pod))
        sh(*prod, "wait", f"pod/{name}", "--for=condition=Ready", "--timeout=120s")
        running = json.loads(sh(*prod, "get", "pod", name, "-o", "json"))
        (container,) = running["status"]["containerStatuses"]
        assert container["imageID"].endswith(f"@{digest}"), (container["imageID"], digest)

        token = ref.rsplit(":", 1)[1]
        assert sh(*prod, "exec", name, "--", "/bin/busybox", "cat", "/token").startswith(token)
        viewer = ("kubectl", "--context", "deploybook-prod-view", "-n", "dx29-prod")
        refused = sh.proc(*viewer, "exec", name, "--", "/bin/busybox", "true")
        assert refused.returncode != 0 and "is forbidden: User" in refused.stderr, refused.stderr
        assert sh(*viewer, "auth", "can-i", "create", "pods/exec", check=False).strip() == "no"
        assert sh(*viewer, "get", "pod", name, "-o", "name").strip() == f"pod/{name}"
    finally:
        admin = ("kubectl", "--context", "deploybook-admin", "-n", "dx29-prod")
        sh(*admin, "delete", "pod", name, "--ignore-not-found", "--wait=false", check=False)
        sh(*admin, "delete", "secret", name, "--ignore-not-found", check=False)
