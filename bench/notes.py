"""Why a target was missed, written from the measured figures (for ``latest.md``)."""

from __future__ import annotations

from typing import Any


def _largest(budget: dict[str, float], count: int = 4) -> str:
    """The ``count`` largest phases of a time budget, as text."""
    phases = sorted(((v, k) for k, v in budget.items() if k != "verdict_s"), reverse=True)[:count]
    return ", ".join(f"{k} {v:.2f} s" for v, k in phases) or "not measured"


def _release(figure: dict[str, Any]) -> list[str]:
    notes = []
    for scenario, tools in figure.get("scenarios", {}).items():
        for tool in ("deploybook", "deploybook -n auto"):
            t = tools.get(tool, {})
            if t.get("failures"):
                first = " ".join(str(t["failures"][0]).split())
                notes.append(
                    f"release, {scenario}, {tool}: {len(t['failures'])} run(s) failed, so no median; "
                    f"first: ...{first[-330:]}"
                )
            verdict = t.get("verdict_ratio")
            missed = [
                f"time to verdict {verdict:.2f} > 0.7" if verdict is not None and verdict > 0.7 else "",
                f"time to exit {t['ratio']:.2f} > 1.0" if t.get("ratio") is not None and t["ratio"] > 1.0 else "",
            ]
            if any(missed):
                notes.append(
                    f"release, {scenario}, {tool}: {' and '.join(m for m in missed if m)}; the largest phases "
                    f"of its time budget: {_largest(t.get('budget_s') or {})}"
                )
    for problem in figure.get("warm_up_problems", []):
        notes.append(f"release warm-up: {problem}")
    return notes


def _failure(figure: dict[str, Any]) -> list[str]:
    if not figure:
        return []
    notes = [
        f"failure detection: kubectl measured once ({figure.get('kubectl_verdict') or 'no verdict'}); "
        f"deploybook {len(figure.get('deploybook_apply_to_verdict_s', []))} trials, causes "
        f"{', '.join(sorted(set(figure.get('deploybook_causes', [])))) or 'none'}. First crash = the "
        "container's terminated.finishedAt (1 s resolution)."
    ]
    if figure.get("met") is False:
        notes.append("failure detection: deploybook took more than 20 s after the first crash")
    return notes


def _helm_release(figure: dict[str, Any]) -> list[str]:
    notes = []
    ratios = []
    for scenario, tools in figure.get("scenarios", {}).items():
        helm = tools.get("helm baseline")
        if helm is None:
            continue
        if helm.get("failures"):
            first = " ".join(str(helm["failures"][0]).split())
            failed = len(helm["failures"])
            notes.append(f"release, {scenario}, Helm 3: {failed} run(s) failed; first: ...{first[-330:]}")
        if helm.get("ratio") is not None:
            ratios.append(f"{helm['ratio']:.2f} ({scenario})")
    if ratios:
        notes.append(
            f"release, Helm 3 (`bench/baseline_helm.sh`) against the shell baseline: {', '.join(ratios)}. Same "
            "build and push; then one `helm upgrade --install --wait --atomic` applies every object and waits for "
            "all of them together, and Helm 3 counts a Deployment ready once its new ReplicaSet's pods are ready "
            "(pkg/kube/ready.go), without waiting for the old pods to go as `kubectl rollout status` (and "
            "deploybook) do."
        )
    return notes


def _helm_failure(figure: dict[str, Any]) -> list[str]:
    helm = figure.get("helm") or {}
    if not helm:
        return []
    notes = []
    parts = []
    for case, trial in (("crash loop", helm.get("crash") or {}), ("never ready", helm.get("never_ready") or {})):
        if trial.get("valid"):
            parts.append(
                f"{case}: its wait gave up {trial.get('wait_gave_up_after_apply_s')} s after the upgrade started, "
                f"the atomic rollback ended it at {trial.get('apply_to_verdict_s')} s"
            )
        else:
            notes.append(
                f"failure detection, Helm 3 {case}: no verdict ({trial.get('error') or trial.get('verdict')}); "
                f"see {trial.get('log') or 'the logs'}"
            )
    if parts:
        notes.append(
            f"failure detection, Helm 3 ({helm.get('version')}, one trial of each): it waited its whole "
            f"`--timeout {helm.get('timeout_s')}s` ({'; '.join(parts)}). Helm 3's `--wait` polls readiness every "
            "2 s until the timeout and stops on nothing else, a crash loop included; Helm's default timeout is "
            "5m0s and its verdicts move with it. 180 s is the shell baseline's `rollout status --timeout` and the "
            "bench environment's rollout timeout."
        )
    never = figure.get("never_ready") or {}
    if never:
        mine = never.get("deploybook") or {}
        verdict = mine.get("verdict") or mine.get("error") or "none"
        if verdict.startswith("ReadinessProbeFailed"):
            how = (
                "its probe failure budget (timeouts.probe_failures_allowed, 2 per replica by default) ran out "
                "well before the rollout timeout"
            )
        else:
            how = (
                f"its rollout timeout ({never.get('deploybook_timeout_s', 0):.0f} s, the bench environment's; the "
                "smaller of it and progressDeadlineSeconds)"
            )
        notes.append(
            f"failure detection, readiness never passes: deploybook's verdict ({verdict}) came from {how}; Helm "
            "waits its --timeout, and `kubectl rollout status` would wait for the progress deadline (600 s; not "
            "measured here): to a deadline, a probe that never passes looks like a slow start."
        )
    return notes


def _scale(figure: dict[str, Any]) -> list[str]:
    notes = []
    sizes = figure.get("sizes", {})
    top = sizes.get("100") or (sizes[max(sizes, key=int)] if sizes else None)
    if top and top.get("verdict_median_s") and top["verdict_median_s"] > 3.0:
        notes.append(
            f"checks at 100 Deployments: verdict after {top['verdict_median_s']:.1f} s > 3 s. The checks of every "
            "service run side by side from one namespace snapshot; what remains is the fixed cost around them "
            "(start-up, the clients' imports, pytest's and Allure's per-test work for 500 tests)."
        )
    growth = figure.get("growth_per_deployment") or {}
    if growth and growth.get("api_requests", 0) > 0.05:
        notes.append(
            f"checks at scale: {growth['api_requests']} API reads, {growth['api_watches']} watches, "
            f"{growth['registry_requests']} registry requests and {growth['kubectl_processes']} kubectl "
            "processes added per Deployment (HTTP checks through the proxy counted apart): a check reads "
            "objects one by one instead of from the namespace snapshot (one list per kind)."
        )
    for n, f in sizes.items():
        if f.get("not_measured"):
            notes.append(f"checks at {n} Deployments not measured: {f['not_measured']}")
            continue
        for failure in f.get("deploybook_failures", []):
            notes.append(f"checks at {n}: a deploybook run failed: {str(failure)[-200:]}")
    return notes


def _startup(figure: dict[str, Any]) -> list[str]:
    if not figure or figure.get("met_s", True):
        return []
    return [
        f"start-up: {figure['deploybook_median_s']:.2f} s > 0.5 s; a bare pytest with this venv's plugins "
        f"already takes {figure['baseline_median_s']:.2f} s here, so deploybook's own part is "
        f"{figure['deploybook_median_s'] - figure['baseline_median_s']:.2f} s (its plugin's modules, the app and "
        "environment files, and the git state of the tree)."
    ]


def missed_targets(figures: dict[str, Any]) -> list[str]:
    """One sentence per missed target or failed run, with the reason."""
    return (
        _release(figures.get("release", {}))
        + _helm_release(figures.get("release", {}))
        + _failure(figures.get("failure_detection", {}))
        + _helm_failure(figures.get("failure_detection", {}))
        + _scale(figures.get("checks_scale", {}))
        + _startup(figures.get("startup", {}))
    )
