"""The second baseline, Helm 3: the pinned binary, its release namespace and the tiny charts.

``helm`` is built from its Go module at the release pinned in ``bench/helm/go.mod`` by
``bench/helm/build.sh`` and cached by version beside the stack's binaries
(``$DEPLOYBOOK_STACK_CACHE/helm-<version>/helm``), so a warm bench builds nothing. The release
baseline is ``bench/baseline_helm.sh`` in namespace ``dx29-bench-helm``; the failure trials
(``bench/failure_detection.py``) install tiny charts written here into the failure namespace.
Every helm here runs with private ``HELM_*_HOME`` directories under ``bench/results/tmp``.

Every Helm run uses ``--timeout 180s``: the shell baseline's ``kubectl rollout status
--timeout=180s`` and the bench environment's ``timeouts.rollout``. Helm 3 ``--wait`` polls
readiness every 2 s until then and stops on nothing else (a crash loop included); ``--atomic``
then rolls back and waits again. Helm's own default is ``5m0s``: its verdicts move with it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.runner import LOGS
from bench.tiny import tiny_manifest
from bench.tools import delete_namespace
from bench.workspace import BENCH, SERVICES, TMP, Workspace

BUILD = BENCH / "helm" / "build.sh"
SCRIPT = BENCH / "baseline_helm.sh"
NAMESPACE = "dx29-bench-helm"
RELEASE = "dx29"
TIMEOUT_S = 180
_HOMES = TMP / "helm-home"
_CHARTS = TMP / "helm-charts"
_binary: list[str] = []  # the path, once built (or found) in this process


def ensure_helm() -> str:
    """The pinned helm binary's path; built by ``bench/helm/build.sh`` when it is not cached."""
    if not _binary:
        LOGS.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [str(BUILD)], capture_output=True, text=True, env=dict(os.environ, BENCH_LOGS=str(LOGS)), timeout=3600
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip() or f"{BUILD} exited {proc.returncode}")
        _binary.append(proc.stdout.strip().splitlines()[-1])
    return _binary[0]


def built() -> bool:
    """True once ``ensure_helm`` has found or built the binary in this process."""
    return bool(_binary)


def env() -> dict[str, str]:
    """The process environment with private Helm homes (never the operator's ~/.config/helm)."""
    homes = {f"HELM_{kind}_HOME": str(_HOMES / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")}
    return dict(os.environ, **homes)


def helm(*args: str, timeout: float = 600.0, check: bool = True) -> str:
    """Run the pinned helm; stdout, or RuntimeError with helm's own message."""
    proc = subprocess.run([ensure_helm(), *args], env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def version() -> str:
    """``helm version --short`` of the pinned binary."""
    return helm("version", "--short").strip()


def release_command(ws: Workspace) -> list[str]:
    """The release baseline's command line (run from the workspace root, like the shell one)."""
    return [str(SCRIPT), NAMESPACE, str(ws.app), "baseline", *SERVICES]


def script_env(base: dict[str, str]) -> dict[str, str]:
    """``base`` plus HELM, the cached binary (the script makes its own private Helm homes)."""
    return {**base, "HELM": ensure_helm()}


def uninstall(release: str, namespace: str) -> None:
    """``helm uninstall`` (no error when there is no such release or namespace)."""
    helm("uninstall", release, "--namespace", namespace, "--ignore-not-found", timeout=300, check=False)


def delete_release_namespace(*, wait: bool = False) -> None:
    """The release baseline's cleanup: helm uninstall, then the namespace."""
    if built():
        uninstall(RELEASE, NAMESPACE)
    delete_namespace(NAMESPACE, wait=wait)


def tiny_chart(name: str, *, pull_secret: str) -> Path:
    """A chart of one tiny Deployment ``name`` whose image and readiness path are values."""
    chart = _CHARTS / name
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
    manifest = tiny_manifest(
        name, "{{ .Values.image | quote }}", pull_secret=pull_secret, ready_path="{{ .Values.readyPath }}"
    )
    (chart / "templates" / "deployment.yaml").write_text(manifest)
    return chart


def upgrade_command(
    release: str, chart: Path, namespace: str, *, image: str, ready_path: str = "/health", atomic: bool = True
) -> list[str]:
    """``helm upgrade --install ... --wait [--atomic] --timeout 180s --debug`` of a tiny chart."""
    return [
        ensure_helm(),
        "upgrade",
        "--install",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--set-string",
        f"image={image},readyPath={ready_path}",
        "--wait",
        *(["--atomic"] if atomic else []),
        "--timeout",
        f"{TIMEOUT_S}s",
        "--debug",
    ]
