"""Figure 3: checks-only at 10, 50 and 100 Deployments of a tiny image in one namespace.

Each Deployment (1 replica, 1m CPU / 4Mi requested) is one service of a generated
environment ``scale-N`` with a Service and an HTTP check of ``/health``, running the tiny
image pushed under its own repository (``bench-scale/tiny-NNN``, one digest for all) so
every service's digest check has its own repository to ask. Sizes grow cumulatively; each is
measured with ``pytest checks --env scale-N --release FILE`` (the file records the pushed
digests) and with ``bench/baseline_checks.sh``, interleaved. Requests are counted in-process
by ``bench.count_requests``; the namespace is deleted at the end (kept with ``--keep``).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from bench.budget import median_budget
from bench.runner import PYTEST, Series, ratio, run_timed, run_with_stack, say
from bench.tiny import build_and_push, push_copies, tiny_manifest
from bench.tools import (
    apply_yaml,
    delete_namespace,
    docker_env,
    ensure_namespace,
    ensure_pull_secret,
    kubectl,
    wait_available,
)
from bench.workspace import BENCH, REPO, TMP, Workspace

NAMESPACE = "dx29-bench-scale"
SIZES = (10, 50, 100)
_REGISTRY_KEYS = """registry:
  address: ${DEPLOYBOOK_REGISTRY}
  username: ${DEPLOYBOOK_REGISTRY_USER}
  password_file: ${DEPLOYBOOK_REGISTRY_PASSWORD_FILE}
  ca_file: ${DEPLOYBOOK_REGISTRY_CA}
"""


def names(n: int) -> list[str]:
    """Deployment (and service) names of the first ``n``."""
    return [f"tiny-{i:03d}" for i in range(1, n + 1)]


def _environment(n: int) -> str:
    services = "".join(
        f"  - name: {name}\n    context: apps/scale\n    image: bench-scale/{name}\n    port: 8080\n"
        f"    manifest: {name}.yaml\n    http:\n      - path: /health\n"
        for name in names(n)
    )
    return (
        f"description: {n} tiny Deployments for the checks-at-scale benchmark (bench/checks_scale.py)\n"
        f"cluster:\n  context: deploybook-admin\n  namespace: {NAMESPACE}\n{_REGISTRY_KEYS}"
        "branch:\n  name: null\nmanifests:\n  path: apps/scale\ntimeouts:\n  rollout: 120\n  http: 10\n"
        f"services:\n{services}"
    )


def _record(n: int, refs: dict[str, str]) -> dict[str, Any]:
    services = {}
    for name in names(n):
        image, digest = refs[f"bench-scale/{name}"].split("@", 1)
        services[name] = {"image": image, "tag": "bench", "digest": digest}
    return {
        "run_id": f"bench-scale-{n}",
        "environment": f"scale-{n}",
        "namespace": NAMESPACE,
        "outcome": "passed",
        "started": "",
        "finished": "",
        "services": services,
    }


def prepare(ws: Workspace) -> tuple[dict[str, str], str]:
    """Namespace, pull secret, and the tiny image under every repository name."""
    ensure_namespace(NAMESPACE)
    secret = ensure_pull_secret(NAMESPACE)
    env = docker_env()
    source = build_and_push("ok", "bench-tiny/ok", env=env)
    refs = push_copies(source, [f"bench-scale/{name}" for name in names(max(SIZES))], env=env)
    (ws.root / "apps" / "scale").mkdir(parents=True, exist_ok=True)
    return refs, secret


def deploy(ws: Workspace, n: int, refs: dict[str, str], secret: str) -> Path:
    """Apply the first ``n`` Deployments, wait until Available; write env and record files."""
    manifests = ws.root / "apps" / "scale"
    docs = []
    for name in names(n):
        text = tiny_manifest(name, refs[f"bench-scale/{name}"], pull_secret=secret, service=True)
        (manifests / f"{name}.yaml").write_text(text)
        docs.append(text)
    apply_yaml("---\n".join(docs), NAMESPACE)
    wait_available(NAMESPACE)
    (ws.environments / f"scale-{n}.yaml").write_text(_environment(n))
    record = TMP / f"scale-{n}-release.json"
    record.write_text(json.dumps(_record(n, refs), indent=2))
    return record


def measure_sizes(ws: Workspace, env: dict[str, str], runs: dict[int, int], *, keep: bool = False) -> dict[str, Any]:
    """Per size (with its number of runs): deploybook and baseline times, request counts, ratio.
    With ``keep`` the namespace stays, holding the largest size's Deployments, for a look."""
    refs, secret = prepare(ws)
    env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    figures: dict[str, Any] = {}
    try:
        for n, count in runs.items():
            room = pod_room()
            if room is not None and room < n:
                figures[str(n)] = _not_measured(f"the node has room for {room} more pods (maxPods), not {n}")
                continue
            try:
                record = deploy(ws, n, refs, secret)
            except RuntimeError as e:
                figures[str(n)] = _not_measured(f"the {n} Deployments did not become Available: {str(e)[:300]}")
                continue
            figures[str(n)] = _measure_size(ws, env, n, record, count)
    finally:
        if not keep:
            delete_namespace(NAMESPACE)
    return figures


def pod_room() -> int | None:
    """Pods the node can still take besides this benchmark's own (allocatable minus running)."""
    try:
        node = json.loads(kubectl("get", "nodes", "-o", "json"))["items"][0]
        pods = json.loads(kubectl("get", "pods", "-A", "-o", "json", "--field-selector=status.phase!=Succeeded"))
    except (RuntimeError, IndexError, KeyError, ValueError):
        return None
    others = [
        p
        for p in pods["items"]
        if p["metadata"]["namespace"] != NAMESPACE and not p["metadata"].get("deletionTimestamp")
    ]
    return int(node["status"]["allocatable"]["pods"]) - len(others)


def _not_measured(reason: str) -> dict[str, Any]:
    return {
        "deploybook_runs_s": [],
        "deploybook_median_s": None,
        "deploybook_failures": [reason],
        "baseline_runs_s": [],
        "baseline_median_s": None,
        "baseline_failures": [],
        "ratio": None,
        "requests": None,
        "not_measured": reason,
    }


def _measure_size(ws: Workspace, env: dict[str, str], n: int, record: Path, runs: int) -> dict[str, Any]:
    deploybook, baseline, verdicts = Series(), Series(), Series()
    counts: list[dict[str, Any]] = []
    budgets: list[dict[str, float]] = []
    for round_no in range(1, runs + 1):
        log = TMP / f"scale-{n}-requests-{round_no}.json"
        cmd = [PYTEST, "checks", "--env", f"scale-{n}", f"--release={record}", "-q", "-p", "bench.count_requests"]
        label = f"checks-{n}-deploybook-{round_no}"
        result = run_with_stack(
            label, partial(run_timed, label, cmd, cwd=ws.root, env=dict(env, BENCH_REQUEST_LOG=str(log)))
        )
        target = deploybook.values if result.ok else deploybook.failures
        target.append(round(result.seconds, 2) if result.ok else f"exit {result.returncode}: {result.tail[-400:]}")
        if result.ok and "verdict_s" in result.budget:
            verdicts.values.append(result.budget["verdict_s"])
            budgets.append(result.budget)
        if log.is_file():
            counts.append(json.loads(log.read_text()))
        base_label = f"checks-{n}-baseline-{round_no}"
        base_cmd = [str(BENCH / "baseline_checks.sh"), NAMESPACE, *names(n)]
        base = run_with_stack(base_label, partial(run_timed, base_label, base_cmd, cwd=ws.root, env=env))
        (baseline.values if base.ok else baseline.failures).append(
            round(base.seconds, 2) if base.ok else f"exit {base.returncode}: {base.tail[-300:]}"
        )
        say(
            f"checks: {n} Deployments run {round_no}: deploybook {result.seconds:.1f}s "
            f"({'ok' if result.ok else 'FAILED'}), baseline {base.seconds:.1f}s ({'ok' if base.ok else 'FAILED'})"
        )
    return {
        "deploybook_runs_s": deploybook.values,
        "deploybook_median_s": deploybook.median,
        "deploybook_failures": deploybook.failures,
        "verdict_runs_s": verdicts.values,
        "verdict_median_s": verdicts.median,
        "verdict_ratio": ratio(verdicts.median, baseline.median),
        "budget_s": median_budget(budgets) if budgets else {},
        "baseline_runs_s": baseline.values,
        "baseline_median_s": baseline.median,
        "baseline_failures": baseline.failures,
        "ratio": ratio(deploybook.median, baseline.median),
        "requests": counts[-1] if counts else None,
    }


def growth(figures: dict[str, Any]) -> dict[str, Any]:
    """API requests per added Deployment between the smallest and largest size."""
    sizes = sorted(int(n) for n, f in figures.items() if f.get("requests"))
    if len(sizes) < 2:
        return {}
    lo, hi = figures[str(sizes[0])]["requests"], figures[str(sizes[-1])]["requests"]
    span = sizes[-1] - sizes[0]
    return {
        key: round((hi[key] - lo[key]) / span, 2)
        for key in (
            "api_requests",
            "api_watches",
            "api_gets_by_name",
            "http_checks_via_proxy",
            "registry_requests",
            "kubectl_processes",
        )
        if key in lo and key in hi
    }
