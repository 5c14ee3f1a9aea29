"""Which tests run for which service, in which order, and which engine tasks that asks for.

A test that takes the ``service`` fixture runs once per service of the environment. Its
``stage(name)`` or ``check(name)`` marker names the engine task whose outcome it shows; the
tests run in stage order, then the built-in checks, then every other check (a team's own),
and a stable sort keeps services in the environment's order. Ordering and selection use the
markers, never the test names. The tasks the pipeline runs are exactly those of the tests
that were collected and selected.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from deploybook.release.names import CHECKS, STAGES

__all__ = ["chains_of", "order", "service_of", "task_of"]

TASK_ORDER = (*STAGES, *CHECKS)


def service_of(item: pytest.Item) -> str | None:
    """Name of the service a test is parametrized with, if any."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    svc = params.get("service")
    return getattr(svc, "name", svc) if svc is not None else None


def _marked(item: pytest.Item, name: str) -> str | None:
    marker = item.get_closest_marker(name)
    return str(marker.args[0]) if marker and marker.args else None


def task_of(item: pytest.Item) -> str | None:
    """The engine task a test shows: its stage or built-in check marker."""
    task = _marked(item, "stage") or _marked(item, "check")
    if task is not None and task not in TASK_ORDER:
        kind = "stage" if item.get_closest_marker("stage") else "check"
        known = STAGES if kind == "stage" else CHECKS
        raise pytest.UsageError(f"{item.nodeid}: unknown {kind} {task!r} (known: {', '.join(known)})")
    return task


def _rank(item: pytest.Item, checks_dir: Path) -> int:
    task = task_of(item)
    if task is not None:
        return TASK_ORDER.index(task)
    return len(TASK_ORDER) if checks_dir in Path(str(item.path)).parents else -1


def order(items: list[pytest.Item], checks_dir: Path) -> None:
    """Sort ``items`` in place: stages, then built-in checks, then other checks."""
    if any(_rank(i, checks_dir) >= 0 for i in items):
        items.sort(key=lambda i: _rank(i, checks_dir))


def chains_of(items: Iterable[pytest.Item]) -> dict[str, list[str]]:
    """Service -> the engine tasks its selected tests show, in task order."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        service, task = service_of(item), task_of(item)
        if service is not None and task is not None:
            wanted.setdefault(service, set()).add(task)
    return {service: [t for t in TASK_ORDER if t in tasks] for service, tasks in wanted.items()}
