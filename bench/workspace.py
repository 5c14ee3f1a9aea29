"""A private project root for benchmark runs, so they never touch a colleague's release.

deploybook reads environments from ``<rootdir>/environments`` and has no option for another
directory. The benchmark therefore builds a small project root under ``bench/results/tmp/root``
(git-ignored): copies of ``pytest.ini``, ``conftest.py``, ``runbook/`` and ``checks/`` (copied,
not linked: the plugin compares resolved paths with ``rootdir/runbook``), a link to the
``deploybook`` package, ``environments/`` from ``bench/environments/`` plus generated ones, and
a copy of the sample app whose images are renamed ``dx29-bench/*``. The copy is what the
benchmark changes to make a service's image digest move; the real ``apps/`` is never edited.
The copy sits inside the git checkout, so the release still records this repository's commit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
TMP = BENCH / "results" / "tmp"
SERVICES = ("gateway", "annotation", "terms", "worker")
IMAGE_PREFIX = "dx29-bench"
CHANGE_FILE = "bench-change"
_IMAGE_LINE = re.compile(r"^(\s*image:\s*)dx29/", re.MULTILINE)


@dataclass(frozen=True)
class Workspace:
    """Paths of the private root; ``root`` is where pytest runs."""

    root: Path

    @property
    def app(self) -> Path:
        """The copied sample app (``apps/dx29``)."""
        return self.root / "apps" / "dx29"

    @property
    def manifests(self) -> Path:
        """The copied manifests, images renamed to ``dx29-bench/*``."""
        return self.app / "manifests"

    @property
    def environments(self) -> Path:
        """The environments directory deploybook reads in this root."""
        return self.root / "environments"

    def context(self, service: str) -> Path:
        """Build context of ``service`` in the copy."""
        return self.app / service

    def change(self, services: tuple[str, ...]) -> str:
        """Give each service's context a new file so its image digest changes; returns the nonce."""
        nonce = uuid.uuid4().hex
        for name in services:
            (self.context(name) / "app" / CHANGE_FILE).write_text(nonce + "\n")
        return nonce


def prepare_sample_app() -> None:
    """Run ``apps/dx29/prepare`` (idempotent) so every build context has its rootfs."""
    subprocess.run([str(REPO / "apps" / "dx29" / "prepare")], check=True, capture_output=True)


def create_workspace(root: Path | None = None) -> Workspace:
    """Build (or refresh) the private root from the current tree and return it."""
    root = root or TMP / "root"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("pytest.ini", "conftest.py"):
        shutil.copy2(REPO / name, root / name)
    for name in ("runbook", "checks"):
        _replace_tree(REPO / name, root / name)
    for name in ("node_modules", "package.json"):  # the pinned Allure that writes the report
        link = root / name
        if not link.is_symlink():
            link.symlink_to(REPO / name)
    ws = Workspace(root)
    ws.environments.mkdir(exist_ok=True)
    for env in (BENCH / "environments").glob("*.yaml"):
        shutil.copy2(env, ws.environments / env.name)
    _copy_app(ws)
    return ws


def _replace_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))


def _copy_app(ws: Workspace) -> None:
    source = REPO / "apps" / "dx29"
    _replace_tree(source, ws.app)
    for manifest in ws.manifests.glob("*.yaml"):
        manifest.write_text(_IMAGE_LINE.sub(rf"\g<1>{IMAGE_PREFIX}/", manifest.read_text()))


def stack_env() -> dict[str, str]:
    """The process environment, checked for what the local stack exports.

    Python's default is kept for every measured command: bytecode is cached. A shell that
    exports ``PYTHONDONTWRITEBYTECODE`` (this machine's does) would make each run compile
    pytest, the plugins and deploybook again, and measure the compiler instead.
    """
    needed = (
        "KUBECONFIG",
        "DOCKER_HOST",
        "DEPLOYBOOK_REGISTRY",
        "DEPLOYBOOK_REGISTRY_CA",
        "DEPLOYBOOK_REGISTRY_USER",
        "DEPLOYBOOK_REGISTRY_PASSWORD_FILE",
    )
    missing = [k for k in needed if not os.environ.get(k)]
    if missing:
        raise SystemExit(f'bench: {", ".join(missing)} not set; run: eval "$(stack/env)" (or make bench)')
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
