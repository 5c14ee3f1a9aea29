"""``bench/results/latest.json`` and the markdown table beside it (``latest.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _fmt(value: float | None, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.2f} {unit}".strip()


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**no**")


def release_rows(figure: dict[str, Any]) -> list[list[str]]:
    """Per scenario and deploybook mode: time to verdict (every check done), then time to exit."""
    rows = []
    for scenario, tools in figure.get("scenarios", {}).items():
        base = tools["shell baseline"]["median_s"]
        for tool in ("deploybook", "deploybook -n auto"):
            t = tools[tool]
            mode = f"`pytest runbook`{' -n auto' if 'auto' in tool else ''}"
            verdict = t.get("verdict_ratio")
            rows.append(
                [
                    f"release, {scenario} ({mode}): time to verdict",
                    _fmt(t.get("verdict_median_s")),
                    _fmt(base),
                    _fmt(verdict, "x"),
                    "ratio <= 0.7",
                    _met(None if verdict is None else verdict <= 0.7),
                ]
            )
            r = t["ratio"]
            rows.append(
                [
                    f"release, {scenario} ({mode}): time to exit (report and bundle written)",
                    _fmt(t["median_s"]),
                    _fmt(base),
                    _fmt(r, "x"),
                    "ratio <= 1.0",
                    _met(None if r is None else r <= 1.0),
                ]
            )
    return rows


def budget_table(figure: dict[str, Any]) -> str:
    """Where deploybook's seconds go, per scenario (medians; task phases overlap)."""
    from bench.budget import PHASES

    scenarios = {name: tools["deploybook"].get("budget_s") or {} for name, tools in figure.get("scenarios", {}).items()}
    if not any(scenarios.values()):
        return ""
    lines = ["| phase | " + " | ".join(scenarios) + " |", "|---|" + "---|" * len(scenarios)]
    for phase in (*PHASES, "verdict_s"):
        cells = [_fmt(b.get(phase)) if phase in b else "-" for b in scenarios.values()]
        name = "process start -> verdict" if phase == "verdict_s" else phase
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failure_rows(figure: dict[str, Any]) -> list[list[str]]:
    """Apply-to-verdict and first-crash-to-verdict."""
    if not figure:
        return []
    kubectl = _fmt(figure.get("kubectl_apply_to_verdict_s"))
    if not figure.get("kubectl_valid"):
        kubectl = f"no verdict, stopped at the {kubectl} cap"
    return [
        [
            "failure detection: apply -> verdict (crash at start)",
            _fmt(figure.get("deploybook_apply_to_verdict_median_s")),
            kubectl,
            _fmt(figure.get("ratio"), "x"),
            "-",
            "-",
        ],
        [
            "failure detection: first crash -> verdict",
            _fmt(figure.get("deploybook_first_crash_to_verdict_median_s")),
            kubectl if not figure.get("kubectl_valid") else _fmt(figure.get("kubectl_first_crash_to_verdict_s")),
            "-",
            "<= 20 s",
            _met(figure.get("met")),
        ],
    ]


def helm_release_rows(figure: dict[str, Any]) -> list[list[str]]:
    """deploybook against the second baseline, Helm 3, per scenario and mode (when it ran)."""
    rows = []
    for scenario, tools in figure.get("scenarios", {}).items():
        helm = tools.get("helm baseline")
        if helm is None:
            continue
        for tool in ("deploybook", "deploybook -n auto"):
            t = tools[tool]
            rows.append(
                [
                    f"release, {scenario} (`pytest runbook`{' -n auto' if 'auto' in tool else ''}) "
                    "against Helm 3 (`baseline_helm.sh`)",
                    _fmt(t["median_s"]),
                    _fmt(helm["median_s"]),
                    _fmt(t.get("ratio_to_helm"), "x"),
                    "-",
                    "-",
                ]
            )
    return rows


def _trial(trial: dict[str, Any] | None, key: str) -> str:
    if not trial:
        return "not measured"
    if not trial.get("valid"):
        return f"no verdict ({trial.get('error') or trial.get('verdict') or 'see the log'})"
    return _fmt(trial.get(key))


def helm_failure_rows(figure: dict[str, Any]) -> list[list[str]]:
    """Crash-loop and never-ready verdicts, deploybook against Helm 3 (one trial of each)."""
    helm = figure.get("helm") or {}
    never = figure.get("never_ready") or {}
    rows = []
    timeout = f"--timeout {helm.get('timeout_s', '?')}s"
    if helm:
        rows.append(
            [
                f"failure detection: first crash -> verdict, against Helm 3 (`helm upgrade --wait --atomic {timeout}`)",
                _fmt(figure.get("deploybook_first_crash_to_verdict_median_s")),
                _trial(helm.get("crash"), "first_crash_to_verdict_s"),
                _fmt(helm.get("crash_ratio"), "x"),
                "-",
                "-",
            ]
        )
    if never:
        rows.append(
            [
                "failure detection: readiness probe never passes (404), apply -> verdict "
                f"(deploybook's rollout timeout {never.get('deploybook_timeout_s', 0):.0f} s"
                + (f"; Helm 3 `{timeout}`)" if helm else ")"),
                _trial(never.get("deploybook"), "apply_to_verdict_s"),
                _trial(helm.get("never_ready"), "apply_to_verdict_s") if helm else "-",
                _fmt(never.get("ratio_to_helm"), "x"),
                "-",
                "-",
            ]
        )
    return rows


def scale_rows(figure: dict[str, Any]) -> list[list[str]]:
    """Wall time per size, then the request growth."""
    rows = []
    for n, f in figure.get("sizes", {}).items():
        req = f.get("requests") or {}
        if f.get("not_measured"):
            rows.append(
                [f"checks only, {n} Deployments", "not measured", "-", "-", "<= 3 s" if n == "100" else "-", "n/a"]
            )
            continue
        verdict = f.get("verdict_median_s")
        top = n == "100"
        rows.append(
            [
                f"checks only, {n} Deployments, time to verdict (`pytest checks`; {req.get('api_requests', '?')} "
                f"API reads, {req.get('http_checks_via_proxy', '?')} HTTP checks, "
                f"{req.get('kubectl_processes', '?')} kubectl exec)",
                _fmt(verdict),
                _fmt(f["baseline_median_s"]),
                _fmt(f.get("verdict_ratio"), "x"),
                "<= 3 s" if top else "-",
                _met(None if verdict is None else verdict <= 3.0) if top else "-",
            ]
        )
        rows.append(
            [
                f"checks only, {n} Deployments, time to exit (report and bundle written)",
                _fmt(f["deploybook_median_s"]),
                _fmt(f["baseline_median_s"]),
                _fmt(f["ratio"], "x"),
                "-",
                "-",
            ]
        )
    growth = figure.get("growth_per_deployment") or {}
    if growth:
        rows.append(
            [
                "checks only: API requests added per Deployment (10 -> 100)",
                f"{growth['api_requests']}",
                "-",
                "-",
                "0 (list/watch per kind)",
                _met(growth["api_requests"] <= 0.05),
            ]
        )
    return rows


def startup_rows(figure: dict[str, Any]) -> list[list[str]]:
    """Collect-only wall time and peak RSS."""
    if not figure:
        return []
    return [
        [
            "start-up: `pytest runbook --env local --collect-only` wall time",
            _fmt(figure["deploybook_median_s"]),
            _fmt(figure["baseline_median_s"]),
            _fmt(figure["ratio_s"], "x"),
            "<= 0.5 s",
            _met(figure["met_s"]),
        ],
        [
            "start-up: peak RSS",
            _fmt(figure["deploybook_median_peak_rss_mb"], "MB"),
            _fmt(figure["baseline_median_peak_rss_mb"], "MB"),
            _fmt(figure["ratio_rss"], "x"),
            "<= 150 MB",
            _met(figure["met_rss"]),
        ],
    ]


def table(results: dict[str, Any]) -> str:
    """The markdown table: figure, deploybook, baseline, ratio, target, met?"""
    figs = results["figures"]
    rows = (
        release_rows(figs.get("release", {}))
        + helm_release_rows(figs.get("release", {}))
        + failure_rows(figs.get("failure_detection", {}))
        + helm_failure_rows(figs.get("failure_detection", {}))
        + scale_rows(figs.get("checks_scale", {}))
        + startup_rows(figs.get("startup", {}))
    )
    lines = ["| figure | deploybook | baseline | ratio | target | met? |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def rewrite_markdown() -> Path:
    """Render ``latest.md`` again from ``latest.json`` (after a change of the table's layout)."""
    from bench.notes import missed_targets

    data = json.loads((RESULTS / "latest.json").read_text())
    return write(data, data.get("errors", []) + missed_targets(data["figures"]))[1]


def write(results: dict[str, Any], notes: list[str]) -> tuple[Path, Path]:
    """Write both files; returns their paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / "latest.json", RESULTS / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    meta = results["meta"]
    text = [
        f"Measured {meta['finished']} on {meta['host']} ({meta['cpus']} cores), commit {meta['commit']}, "
        f"with `{meta['command']}` in {meta['total_s']:.0f} s. Medians of {meta['runs_note']}; "
        "baseline runs interleaved with deploybook's in the same invocation.",
        "",
        table(results),
        "",
    ]
    budget = budget_table(results["figures"].get("release", {}))
    if budget:
        text += [
            "Time budget of `pytest runbook` (seconds, medians; the stages of the services overlap, so "
            "each task row is its first start to its last end over all services):",
            "",
            budget,
            "",
        ]
    if notes:
        text += ["Notes and missed targets:", ""] + [f"- {n}" for n in notes] + [""]
    md_path.write_text("\n".join(text))
    return json_path, md_path
