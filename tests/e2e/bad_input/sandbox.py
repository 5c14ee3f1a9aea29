"""A throwaway copy of the repository to run the real CLI against, and the cluster snapshot.

The deploybook plugin reads ``environments/`` and the git state from pytest's root
directory, so a case that needs a broken environment file or manifest gets its own
checkout: a small git repository holding copies of ``conftest.py``, ``pytest.ini``,
``runbook/``, ``checks/``, ``environments/`` and the sample app's manifests (under
``manifests/``), with the engine and the build contexts linked from this repository.
``local.yaml`` there targets the sandbox's own namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# Events are written by the cluster itself (probes, kubelet) at any time.
VOLATILE_KINDS = {"events", "events.events.k8s.io"}
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "deploybook-e2e",
    "GIT_AUTHOR_EMAIL": "e2e@deploybook.invalid",
    "GIT_COMMITTER_NAME": "deploybook-e2e",
    "GIT_COMMITTER_EMAIL": "e2e@deploybook.invalid",
    # A fixed date: the same files give the same commit, so sandboxes share built images.
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class Run:
    """One finished CLI run: its command, exit status, output and reports folder."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    reports: Path

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.stdout + "\n" + self.stderr

    def error_lines(self) -> list[str]:
        """Lines that state an error: pytest's ``ERROR:`` usage lines and failed-test lines."""
        keep = ("ERROR:", "ERROR ", "FAILED ", "E   ", "usage error", "release record FAILED")
        return [ln for ln in self.output.splitlines() if ln.strip().startswith(keep)]


class Sandbox:
    """A git checkout of the runbook with its own environments, manifests and namespace."""

    def __init__(self, root: Path, env: dict[str, str], namespace: str) -> None:
        self.root = root
        self.env = env
        self.namespace = namespace

    @classmethod
    def create(
        cls, root: Path, env: dict[str, str], namespace: str, *, branch: str = "main", links: tuple[str, ...] = ()
    ) -> Sandbox:
        """Copy the runbook into ``root``, point ``local`` at ``namespace``, commit it all.

        ``links`` are more of this repository's folders to link in, ignored by git (``stack``,
        ``scripts`` and ``.venv`` for ``scripts/pipeline``)."""
        root.mkdir(parents=True)
        for name in ("conftest.py", "pytest.ini", "app.yaml"):
            shutil.copy(ROOT / name, root / name)
        for name in ("runbook", "checks", "environments"):
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "apps" / "dx29" / "manifests", root / "manifests")
        for name in ("apps", "node_modules", "package.json", *links):  # node_modules: the pinned Allure
            (root / name).symlink_to(ROOT / name)
        ignored = "".join(f"{name}\n" for name in links)
        (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nreports/\nnode_modules\n" + ignored)
        box = cls(root, env, namespace)
        box.edit(
            "environments/local.yaml",
            ("namespace: dx29-local", f"namespace: {namespace}"),
            ("path: apps/dx29/manifests", "path: manifests"),
        )
        box.git("init", "--quiet", "--initial-branch", branch)
        box.commit("sandbox of the deploybook runbook")
        return box

    def git(self, *args: str) -> str:
        """Run git in the sandbox with a fixed identity and date."""
        proc = subprocess.run(
            ["git", *args],
            cwd=self.root,
            env={**self.env, **_GIT_IDENTITY},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return proc.stdout.strip()

    def commit(self, message: str) -> None:
        """Commit every change (the tree is clean afterwards)."""
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)

    def edit(self, relative: str, *replacements: tuple[str, str]) -> Path:
        """Replace text in a sandbox file; each old text must occur (a stale case fails loudly)."""
        path = self.root / relative
        text = path.read_text()
        for old, new in replacements:
            assert old in text, f"{relative} no longer contains {old!r}"
            text = text.replace(old, new)
        path.write_text(text)
        return path

    def write(self, relative: str, text: str) -> Path:
        """Write a sandbox file."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, *args: str, reports: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
        """``python -m pytest ARGS --reports-dir REPORTS`` in the sandbox, as an operator runs it."""
        command = [
            sys.executable,
            "-m",
            "pytest",
            *args,
            "--reports-dir",
            str(reports),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
        ]
        # A wide terminal: pytest would cut the one-line errors of the short summary at 80 columns.
        proc = subprocess.run(
            command,
            cwd=self.root,
            env={**(env or self.env), "COLUMNS": "4000"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr, reports)


def kubectl(env: dict[str, str], *args: str, context: str = "deploybook-admin", check: bool = True) -> str:
    """kubectl with the admin context; the output, or an assertion with kubectl's error.

    The fault suite restarts the API server on purpose; a refused connection is tried again
    for up to a minute so that a snapshot is taken, not skipped.
    """
    for _ in range(30):
        proc = subprocess.run(
            ["kubectl", "--context", context, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if "was refused" not in proc.stderr and "connection refused" not in proc.stderr:
            break
        time.sleep(2)
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def namespaced_kinds(env: dict[str, str]) -> list[str]:
    """Every listable namespaced resource type except events (written by the cluster itself)."""
    kinds = kubectl(env, "api-resources", "--verbs=list", "--namespaced", "-o", "name").split()
    return [k for k in kinds if k not in VOLATILE_KINDS]


def snapshot(env: dict[str, str], namespace: str, kinds: list[str]) -> dict[str, str]:
    """kind/name -> resourceVersion of every object in ``namespace``, and of the namespace itself."""
    found = json.loads(kubectl(env, "get", "namespace", namespace, "-o", "json", "--ignore-not-found") or "null")
    versions: dict[str, str] = {}
    if found:
        versions[f"Namespace/{namespace}"] = found["metadata"]["resourceVersion"]
        items: list[dict[str, Any]] = json.loads(kubectl(env, "-n", namespace, "get", ",".join(kinds), "-o", "json"))[
            "items"
        ]
        versions.update({f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in items})
    return versions


def delete_namespace(env: dict[str, str], namespace: str) -> None:
    """Delete a test namespace without waiting for its finalizers."""
    kubectl(env, "delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)


def environ_with(env: dict[str, str], **changes: str | None) -> dict[str, str]:
    """A copy of ``env`` with variables set (a value) or removed (None)."""
    result = dict(env)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


__all__ = [
    "ROOT",
    "Run",
    "Sandbox",
    "delete_namespace",
    "environ_with",
    "kubectl",
    "namespaced_kinds",
    "os",
    "snapshot",
]
