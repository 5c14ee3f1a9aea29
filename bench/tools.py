"""The stock tools the benchmark sets things up with: kubectl and the docker CLI.

Setup and cleanup go through the same commands an operator would type, so what the
benchmark measures in deploybook is never helped by a shortcut taken in the setup.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from bench.workspace import TMP


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 600.0) -> str:
    """Run kubectl with the stack's KUBECONFIG; stdout, or CalledProcessError naming the command."""
    proc = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def apply_yaml(text: str, namespace: str) -> None:
    """kubectl apply of a multi-document YAML text into ``namespace``."""
    kubectl("-n", namespace, "apply", "-f", "-", stdin=text)


def ensure_namespace(namespace: str) -> None:
    """Create ``namespace`` if missing (waiting if an earlier one is still terminating)."""
    kubectl("wait", "--for=delete", f"namespace/{namespace}", "--timeout=180s", check=False)
    text = kubectl("create", "namespace", namespace, "--dry-run=client", "-o", "yaml")
    kubectl("apply", "-f", "-", stdin=text)


def ensure_pull_secret(namespace: str, name: str = "bench-registry") -> str:
    """An image-pull secret for the stack's registry; the password is read from its file."""
    password = Path(os.environ["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    text = kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "docker-registry",
        name,
        f"--docker-server={os.environ['DEPLOYBOOK_REGISTRY']}",
        f"--docker-username={os.environ['DEPLOYBOOK_REGISTRY_USER']}",
        f"--docker-password={password}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    kubectl("-n", namespace, "apply", "-f", "-", stdin=text)
    return name


def delete_namespace(namespace: str, *, wait: bool = False) -> None:
    """Delete ``namespace`` (no error if absent)."""
    kubectl(
        "delete", "namespace", namespace, "--ignore-not-found", f"--wait={str(wait).lower()}", check=False, timeout=300
    )


def wait_available(namespace: str, timeout_s: int = 300) -> None:
    """Wait until every Deployment in ``namespace`` is Available."""
    kubectl(
        "-n",
        namespace,
        "wait",
        "--for=condition=Available",
        "deployment",
        "--all",
        f"--timeout={timeout_s}s",
        timeout=timeout_s + 30,
    )


def docker_env() -> dict[str, str]:
    """Environment with a private DOCKER_CONFIG logged in to the stack's registry."""
    config = Path(tempfile.mkdtemp(prefix="docker-", dir=_tmp()))
    env = dict(os.environ, DOCKER_CONFIG=str(config))
    with open(os.environ["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]) as password:
        subprocess.run(
            [
                "docker",
                "login",
                os.environ["DEPLOYBOOK_REGISTRY"],
                "-u",
                os.environ["DEPLOYBOOK_REGISTRY_USER"],
                "--password-stdin",
            ],
            stdin=password,
            env=env,
            check=True,
            capture_output=True,
        )
    return env


def docker(*args: str, env: dict[str, str]) -> str:
    """Run the docker CLI; stdout, or RuntimeError with docker's message."""
    proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def pushed_digest(push_output: str) -> str:
    """The ``sha256:...`` digest from ``docker push`` output."""
    for line in push_output.splitlines():
        if "digest: sha256:" in line:
            return line.split("digest: ", 1)[1].split()[0]
    raise RuntimeError(f"no digest in docker push output: {push_output[-300:]}")


def pods_json(namespace: str, selector: str) -> list[dict[str, object]]:
    """The pods matching ``selector``, as kubectl prints them."""
    items = json.loads(kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json"))["items"]
    return list(items)


def _tmp() -> Path:
    TMP.mkdir(parents=True, exist_ok=True)
    return TMP


BENCH_REPOSITORIES = ("dx29-bench", "bench-scale", "bench-tiny")  # the image prefixes of every figure


def clear_bench_images(env: dict[str, str]) -> int:
    """Remove the engine's images of earlier benchmark runs; returns how many references went.

    The classic builder's cache lookup walks every image the engine holds, so builds get slower
    as images pile up (4,360 on one long-used stack). Starting each benchmark from the same
    engine state keeps its figures from drifting with the machine's history; both tools build
    on that same engine. Only the benchmark's repositories (`BENCH_REPOSITORIES`) and untagged images
    go: untagged ones are what re-tagging left behind, no tag can reach them again.
    """
    listed = docker("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}", env=env)
    ours = []
    for repository, tag, digest in (line.split() for line in listed.splitlines()):
        if any(f"/{p}/" in repository or repository.startswith(f"{p}/") for p in BENCH_REPOSITORIES):
            ours.append(f"{repository}:{tag}" if tag != "<none>" else f"{repository}@{digest}")
    if ours:
        docker("rmi", *ours, env=env)
    docker("image", "prune", "--force", env=env)
    return len(ours)
