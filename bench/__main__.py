"""``python -m bench``: every figure of the benchmark in one unattended run (``make bench``).

Order matters for the 15-minute budget: kubectl's failure verdict takes the default 600 s
progress deadline, so that trial is started first and left waiting while start-up, release
and checks-at-scale are measured (with it, in threads: Helm's crash-loop and never-ready trials
and deploybook's never-ready one, each bound by a 180 s deadline); deploybook's crash trials run
last, then the kubectl verdict is collected. Helm (the second baseline) is built first if it is
not cached. Every namespace the benchmark made is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import checks_scale, failure_detection, helm_baseline, release, results, startup
from bench.notes import missed_targets
from bench.runner import say, wait_for_stack
from bench.tools import clear_bench_images, delete_namespace
from bench.workspace import REPO, create_workspace, prepare_sample_app, stack_env

FIGURES = ("startup", "release", "checks_scale", "failure_detection")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        metavar="N",
        help="runs per figure for release, failure and start-up (default 3; start-up uses 2N)",
    )
    parser.add_argument(
        "--scale-runs",
        default="3,2,1",
        metavar="A,B,C",
        help="runs at 10, 50 and 100 Deployments (default 3,2,1: one run at 100 takes minutes)",
    )
    parser.add_argument(
        "--only", default=",".join(FIGURES), metavar="FIGS", help=f"comma-separated subset of {', '.join(FIGURES)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark namespaces afterwards")
    args = parser.parse_args(argv)
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(args.only) - set(FIGURES))
    if unknown:
        parser.error(f"--only: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    try:
        args.scale_runs = tuple(int(x) for x in args.scale_runs.split(","))
    except ValueError:
        parser.error(f"--scale-runs: {args.scale_runs!r} is not a comma-separated list of integers")
    if len(args.scale_runs) != len(checks_scale.SIZES) or min(args.scale_runs) < 1:
        parser.error(f"--scale-runs: give {len(checks_scale.SIZES)} positive counts, e.g. 3,2,1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected figures and write bench/results/latest.{json,md}."""
    args = _args(argv)
    env = stack_env()
    started = time.monotonic()
    prepare_sample_app()
    ws = create_workspace()
    _stack_ready()
    say(f"engine: removed {clear_bench_images(env)} image(s) of earlier benchmark runs and the untagged ones")
    figures: dict[str, Any] = {}
    errors: list[str] = []
    # Helm, the second baseline, is built before anything is timed (once: it is cached by version).
    helm = bool({"release", "failure_detection"} & set(args.only)) and (
        _guarded("helm baseline (bench/helm/build.sh)", helm_baseline.ensure_helm, errors) is not None
    )
    steps = {
        "startup": lambda: startup.measure(env, args.runs * 2),
        "release": lambda: _release(ws, env, args, helm=helm),
        "checks_scale": lambda: _checks_scale(ws, env, args),
    }
    failure = (
        _guarded("failure_detection (start)", lambda: _start_failure(args, helm=helm), errors)
        if "failure_detection" in args.only
        else None
    )
    try:
        for name, step in steps.items():
            if name in args.only:
                say(f"{name}: measuring")
                figures[name] = _guarded(name, step, errors)
        if failure is not None:
            figures["failure_detection"] = _guarded(
                "failure_detection", lambda: _finish_failure(failure, args.runs), errors
            )
    finally:
        if not args.keep:
            for namespace in (release.BASELINE_NAMESPACE, "dx29-bench", failure_detection.NAMESPACE):
                delete_namespace(namespace)
            helm_baseline.delete_release_namespace()
    figures = {k: v for k, v in figures.items() if v is not None}
    data = {"meta": _meta(args, started), "figures": figures}
    data["errors"] = errors
    json_path, md_path = results.write(data, errors + missed_targets(figures))
    say(f"wrote {json_path.relative_to(REPO)} and {md_path.relative_to(REPO)}")
    print(md_path.read_text())
    return 1 if errors else 0


def _guarded(name: str, step: Callable[[], Any], errors: list[str]) -> Any:
    """Run one figure after the stack is up; an error is recorded, the other figures go on."""
    _stack_ready()
    try:
        return step()
    except Exception as e:
        errors.append(f"{name} did not complete: {type(e).__name__}: {e}")
        say(errors[-1])
        return None


def _release(ws: Any, env: dict[str, str], args: argparse.Namespace, *, helm: bool) -> dict[str, Any]:
    figure = release.measure(ws, env, args.runs, helm=helm)
    # The node takes 110 pods: the release namespaces make room for the 100 of checks_scale.
    if "checks_scale" in args.only and not args.keep:
        for namespace in (release.BASELINE_NAMESPACE, release.NAMESPACE):
            delete_namespace(namespace, wait=True)
        helm_baseline.delete_release_namespace(wait=True)
    return figure


def _checks_scale(ws: Any, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    runs = dict(zip(checks_scale.SIZES, args.scale_runs, strict=True))
    sizes = checks_scale.measure_sizes(ws, env, runs, keep=args.keep)
    return {"sizes": sizes, "growth_per_deployment": checks_scale.growth(sizes)}


def _stack_ready() -> None:
    if not wait_for_stack():
        raise SystemExit("bench: the local stack stayed down; see stack/status")


def _start_failure(args: argparse.Namespace, *, helm: bool) -> tuple[Any, Any, Any, Any]:
    from deploybook.cluster.connect import connect

    say("failure_detection: kubectl rollout status on a crashing image, left waiting (600 s deadline)")
    kube = connect(context="deploybook-admin")
    images = failure_detection.prepare()
    trial = failure_detection.start_kubectl_trial(kube, images)
    helm_trials = "Helm crash-loop and never-ready, " if helm else ""
    say(f"failure_detection: {helm_trials}deploybook never-ready trials left running in the background")
    return kube, images, trial, failure_detection.start_background_trials(kube, images, helm=helm)


def _finish_failure(failure: tuple[Any, Any, Any, Any], runs: int) -> dict[str, Any]:
    kube, images, trial, background = failure
    result = failure_detection.FailureResult()
    say("failure_detection: deploybook trials")
    failure_detection.deploybook_trials(kube, images, runs, result)
    failure_detection.finish_background_trials(background)
    failure_detection.finish_kubectl_trial(trial, result)
    return failure_detection.summary(result, trial.clock.first_crash, trial.applied, background)


def _meta(args: argparse.Namespace, started: float) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    runs = f"{args.runs} runs (start-up {args.runs * 2}; checks at 10/50/100: {'/'.join(map(str, args.scale_runs))})"
    return {
        "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
        "command": 'make bench  (eval "$(stack/env)" && .venv/bin/python -m bench ' + " ".join(sys.argv[1:]) + ")",
        "runs_note": runs,
        "total_s": round(time.monotonic() - started, 1),
        "helm": helm_baseline.version() if helm_baseline.built() else None,
        "figures_run": args.only,
    }


if __name__ == "__main__":
    sys.exit(main())
