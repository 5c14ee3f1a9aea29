"""Where a run's seconds go: phase marks and task spans, written to ``RUN_DIR/timings.json``.

The pytest layer marks the phases it drives (configure, collected, session opened, tests
done, record written, verdict, report, bundle); the pipeline knows when each task of each
service ran. Both are written as wall-clock seconds since the epoch, so a benchmark that
started the process can place them against its own clock: start-up and collection, session
start and lock, preflight, build, push, apply, rollout wait, checks, record, report, bundle,
exit. Written last, after the bundle, so it is not part of the evidence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deploybook.release.pipeline import Pipeline

__all__ = ["TIMINGS_FILE", "Timings"]

TIMINGS_FILE = "timings.json"


class Timings:
    """Phase marks of one session, in the order they happened."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        # Task spans are kept by the pipeline on the monotonic clock; one pair of readings
        # taken together turns them into wall-clock time.
        self._wall, self._mono = time.time(), time.monotonic()

    def mark(self, phase: str) -> None:
        """Note that ``phase`` ended (or began, for the ``*_start`` marks) now."""
        self.marks.setdefault(phase, time.time())

    def as_dict(self, pipeline: Pipeline | None) -> dict[str, Any]:
        """Marks and, per service and task, its [start, end] on the wall clock."""
        tasks: dict[str, dict[str, list[float]]] = {}
        for (service, task), span in (pipeline.timings() if pipeline is not None else {}).items():
            wall = self._wall - self._mono
            tasks.setdefault(service, {})[task] = [round(span.started + wall, 4), round(span.finished + wall, 4)]
        return {"marks": {k: round(v, 4) for k, v in self.marks.items()}, "tasks": tasks}

    def write(self, run_dir: Path, pipeline: Pipeline | None) -> Path:
        """Write ``RUN_DIR/timings.json``."""
        path = run_dir / TIMINGS_FILE
        path.write_text(json.dumps(self.as_dict(pipeline), indent=2, sort_keys=True) + "\n")
        return path
