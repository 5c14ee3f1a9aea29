"""Where a deploybook run's seconds go, from the ``timings.json`` it writes beside its record.

deploybook marks its phases on the wall clock (``deploybook.plugin.timings``) and the span of
every task of every service. Placed against the moment the benchmark started the process,
they give the time budget of one run:

    start-up        process start -> the session starts (interpreter, plugins, the context)
    session         the engine opens: connect, namespace, lock, manifests, preflight
    collection      the tests collected and ordered
    build ... rules each task kind, first start to last end over all services (they overlap)
    record          the tests done -> the record written and kept in the cluster, lock freed
    verdict         -> the verdict line printed
    report          -> the single-file report written
    bundle          -> the bundle packed
    exit            -> the process ended

``verdict_s`` (process start -> the verdict line) is the time to verdict; the run's wall time
is the time to exit.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TASKS = ("build", "push", "apply", "rollout", "endpoints", "digests", "containers", "rules")
PHASES = ("start-up", "session", "collection", *TASKS, "record", "verdict", "report", "bundle", "exit")
_BETWEEN = (  # phase -> (from mark, to mark)
    ("start-up", "launch", "session_start"),
    ("session", "session_start", "session_opened"),
    ("collection", "session_opened", "collected"),
    ("record", "tests_done", "closed"),
    ("verdict", "closed", "verdict"),
    ("report", "verdict", "report"),
    ("bundle", "report", "bundle"),
)


def read(run_dir: Path) -> dict[str, Any] | None:
    """The timings of one run, or None when it wrote none."""
    path = run_dir / "timings.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def budget(timings: Mapping[str, Any], launched: float, exited: float) -> dict[str, float]:
    """Seconds per phase of one run, and ``verdict_s``; ``launched``/``exited`` on the wall clock."""
    marks = {**timings.get("marks", {}), "launch": launched}
    spent: dict[str, float] = {}
    for phase, start, end in _BETWEEN:
        if start in marks and end in marks:
            spent[phase] = round(marks[end] - marks[start], 3)
    last = max((marks[m] for m in ("bundle", "report", "verdict") if m in marks), default=None)
    if last is not None:
        spent["exit"] = round(exited - last, 3)
    spans: dict[str, list[tuple[float, float]]] = {}
    for tasks in timings.get("tasks", {}).values():
        for task, (start, end) in tasks.items():
            spans.setdefault(task, []).append((start, end))
    for task, pairs in spans.items():
        spent[task] = round(max(e for _, e in pairs) - min(s for s, _ in pairs), 3)
    if "verdict" in marks:
        spent["verdict_s"] = round(marks["verdict"] - launched, 3)
    return spent


def median_budget(budgets: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The median of each phase over several runs (phases a run did not have are left out)."""
    found = list(budgets)
    keys = [p for p in (*PHASES, "verdict_s") if any(p in b for b in found)]
    return {k: round(statistics.median(b[k] for b in found if k in b), 3) for k in keys}
