"""Figure 1: a release of the sample app, deploybook against the plain sequential script.

Warm caches: one unmeasured release of each kind first. Then, per scenario (one service
changed, all four changed), rounds in which every tool runs once, in an order that rotates
from round to round so no tool always runs right after another's load. Before every single
run the changed services get a new file in their build context (a fresh nonce), so each run
really builds, pushes and rolls out new images and no run rides on the previous one's cache.

deploybook releases into namespace ``dx29-bench`` (``--env bench``), the script into
``dx29-bench-sh``, the Helm baseline (``bench/baseline_helm.sh``, when helm is built) into
``dx29-bench-helm``; all build the same contexts of the workspace copy. deploybook's ratios are
taken against the shell script, and against Helm as ``ratio_to_helm``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from bench import budget, helm_baseline
from bench.runner import PYTEST, Series, Timed, ratio, run_release, run_timed, run_with_stack, say, settle
from bench.workspace import BENCH, CHANGE_FILE, SERVICES, Workspace

NAMESPACE = "dx29-bench"
BASELINE_NAMESPACE = "dx29-bench-sh"
SCENARIOS = {"one service changed": ("gateway",), "all four changed": SERVICES}


def commands(ws: Workspace, *, helm: bool = False) -> dict[str, list[str]]:
    """Tool name -> the command line it runs (all from the workspace root)."""
    runbook = [PYTEST, "runbook", "--env", "bench", "-q"]
    tools = {
        "shell baseline": [str(BENCH / "baseline_release.sh"), BASELINE_NAMESPACE, str(ws.app), "baseline", *SERVICES],
        "deploybook": runbook,
        "deploybook -n auto": [*runbook, "-n", "auto"],
    }
    if helm:
        tools["helm baseline"] = helm_baseline.release_command(ws)
    return tools


def _run(tool: str, cmd: list[str], label: str, ws: Workspace, env: dict[str, str]) -> Timed:
    if tool == "shell baseline":
        return run_timed(label, cmd, cwd=ws.root, env=env)
    if tool == "helm baseline":
        return run_timed(label, cmd, cwd=ws.root, env=helm_baseline.script_env(env))
    return run_release(label, cmd, cwd=ws.root, env=env, own_namespace=NAMESPACE)


def warm_up(ws: Workspace, env: dict[str, str], *, helm: bool = False) -> list[str]:
    """One release of each kind, unmeasured; returns the problems seen."""
    problems = []
    for tool, cmd in commands(ws, helm=helm).items():
        if tool == "deploybook -n auto":
            continue
        label = f"release-warmup-{tool.split()[0]}"
        result = run_with_stack(label, partial(_run, tool, cmd, label, ws, env))
        if not result.ok:
            problems.append(f"warm-up {tool} exited {result.returncode}: {result.tail[-300:]}")
    return problems


def measure(ws: Workspace, env: dict[str, str], runs: int, *, helm: bool = False) -> dict[str, Any]:
    """Interleaved runs of every tool per scenario; medians and ratios to the baseline(s)."""
    tools = commands(ws, helm=helm)
    figures: dict[str, Any] = {"warm_up_problems": warm_up(ws, env, helm=helm), "scenarios": {}}
    names = list(tools)
    for scenario, changed in SCENARIOS.items():
        series = {tool: Series() for tool in tools}
        budgets: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
        for round_no in range(runs):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for tool in order:
                settle((NAMESPACE, BASELINE_NAMESPACE, helm_baseline.NAMESPACE))
                ws.change(changed)
                label = f"release-{len(changed)}changed-{tool.replace(' ', '_')}-{round_no + 1}"
                result = run_with_stack(label, partial(_run, tool, tools[tool], label, ws, env))
                if result.ok:
                    series[tool].values.append(round(result.seconds, 2))
                    if result.budget:
                        budgets[tool].append(result.budget)
                else:
                    series[tool].failures.append(f"{label}: exit {result.returncode}: {result.tail[-400:]}")
                say(
                    f"release: {scenario}: {tool} run {round_no + 1}: {result.seconds:.1f}s "
                    f"{'ok' if result.ok else 'FAILED (' + str(result.log) + ')'}"
                )
        figures["scenarios"][scenario] = _summary(series, budgets)
    restore(ws)
    return figures


def _summary(series: dict[str, Series], budgets: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians and ratios; for deploybook also the time to verdict and the time budget.

    The time to exit is the run's wall time (report and bundle written); the time to verdict
    ends when the verdict line is printed, every check done. The baselines end at their verdict.
    """
    base = series["shell baseline"].median
    summary = {
        tool: {
            "runs_s": s.values,
            "median_s": s.median,
            "ratio": ratio(s.median, base) if tool != "shell baseline" else 1.0 if base else None,
            "failures": s.failures,
        }
        for tool, s in series.items()
    }
    for tool, found in budgets.items():
        if found:
            median = budget.median_budget(found)
            summary[tool]["budget_s"] = median
            summary[tool]["verdict_median_s"] = median.get("verdict_s")
            summary[tool]["verdict_ratio"] = ratio(median.get("verdict_s"), base)
    if "helm baseline" in series:
        for tool in ("deploybook", "deploybook -n auto"):
            summary[tool]["ratio_to_helm"] = ratio(series[tool].median, series["helm baseline"].median)
    return summary


def restore(ws: Workspace) -> None:
    """Remove the change files from the workspace copy."""
    for service in SERVICES:
        (ws.context(service) / "app" / CHANGE_FILE).unlink(missing_ok=True)
