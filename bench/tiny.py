"""Tiny images for the failure and scale benchmarks: static busybox FROM scratch.

``ok`` serves ``/health`` with busybox httpd on 8080; ``crash`` prints a line and exits 1 at
start, like a service whose new version cannot read its configuration. Both build offline
from Debian's busybox-static, as the sample app does.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.tools import docker, pushed_digest
from bench.workspace import TMP

BUSYBOX = Path(os.environ.get("BUSYBOX", "/bin/busybox"))
APPLETS = ("sh", "id", "cat")
_ENTRYPOINTS = {
    "ok": '["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]',
    "crash": '["/bin/busybox", "sh", "-c", "echo starting; echo fatal: config missing >&2; exit 1"]',
}


def _context(variant: str) -> Path:
    ctx = TMP / "tiny" / variant
    (ctx / "www").mkdir(parents=True, exist_ok=True)
    (ctx / "bin").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, ctx / "bin" / "busybox")
    # The checks look inside containers with `sh -c "id -u"` and `cat /proc/net/tcp`.
    for applet in APPLETS:
        if not (ctx / "bin" / applet).is_symlink():
            (ctx / "bin" / applet).symlink_to("busybox")
    (ctx / "www" / "health").write_text('{"status":"ok"}\n')
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY bin /bin\nCOPY www /www\nUSER 10001:10001\n"
        f"EXPOSE 8080\nENTRYPOINT {_ENTRYPOINTS[variant]}\n"
    )
    return ctx


def build_and_push(variant: str, repository: str, *, env: dict[str, str], tag: str = "bench") -> str:
    """Build the ``variant`` image as ``REGISTRY/repository:tag``, push it, return ``repo@digest``."""
    image = f"{os.environ['DEPLOYBOOK_REGISTRY']}/{repository}"
    docker("build", "-q", "-t", f"{image}:{tag}", str(_context(variant)), env=env)
    return f"{image}@{pushed_digest(docker('push', f'{image}:{tag}', env=env))}"


def push_copies(source_ref: str, repositories: list[str], *, env: dict[str, str], tag: str = "bench") -> dict[str, str]:
    """Push one image under many repository names; repository -> ``repo@digest``."""
    registry = os.environ["DEPLOYBOOK_REGISTRY"]
    source = source_ref.split("@", 1)[0] + f":{tag}"

    def push(repository: str) -> tuple[str, str]:
        target = f"{registry}/{repository}:{tag}"
        docker("tag", source, target, env=env)
        digest = pushed_digest(docker("push", target, env=env))
        return repository, f"{registry}/{repository}@{digest}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(push, repositories))


def tiny_manifest(
    name: str, image: str, *, pull_secret: str, service: bool = False, ready_path: str = "/health"
) -> str:
    """A one-replica Deployment (and optionally its Service) running ``image``, tiny requests.

    ``ready_path`` is the readiness probe's HTTP path: one that answers 404 never gets ready.
    """
    deployment = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      automountServiceAccountToken: false
      enableServiceLinks: false
      imagePullSecrets: [{{name: {pull_secret}}}]
      securityContext: {{runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}}
      containers:
        - name: app
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: {ready_path}, port: http}}
            periodSeconds: 5
          resources:
            requests: {{cpu: 1m, memory: 4Mi}}
            limits: {{memory: 32Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
"""
    if not service:
        return deployment
    return (
        deployment
        + f"""---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""
    )
