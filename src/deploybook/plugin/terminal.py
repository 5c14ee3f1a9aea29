"""What the operator reads while a run goes: session lines, live progress, the summaries.

:class:`Terminal` is the one writer of live lines. Session lines ("deploybook: ...") come from
the engine's start and end; progress lines ("  gateway     build | #4 [2/2] COPY app/ /app/") come from
the pipeline's queue and are written whenever a test waits, so every service's progress shows
while any of them is waited for. Output capture is suspended for each line, so lines appear
at once; a line repeated by the same task (a progress bar) is shown once.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping
from typing import Any

import pytest

from deploybook.evidence.record import ReleaseRecord
from deploybook.release.names import STAGES

__all__ = ["Terminal", "release_summary"]

LINE_LIMIT = 160


class Terminal:
    """Live lines for one session (``config``'s terminal reporter, capture suspended)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._last: dict[tuple[str, str], str] = {}
        self._pending: list[str] = []  # lines said before the terminal reporter exists

    def _write(self, *texts: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            self._pending += texts
            return
        lines, self._pending = [*self._pending, *texts], []
        if capman is None:
            for line in lines:
                reporter.write_line(line)
            return
        # Suspending the capture costs system calls: every line waiting goes out in one pause.
        with capman.global_and_fixture_disabled():
            reporter.ensure_newline()
            for line in lines:
                reporter.write_line(line)

    def say(self, text: str) -> None:
        """A session line."""
        self._write(f"deploybook: {text}")

    def progress(self, service: str, task: str, text: str) -> None:
        """A progress line of ``service``'s ``task``."""
        line = self._progress_line(service, task, text)
        if line:
            self._write(line)

    def drain(self, events: queue.Queue[tuple[str, str, str]]) -> None:
        """Write every progress line waiting in ``events``."""
        lines = []
        while True:
            try:
                service, task, text = events.get_nowait()
            except queue.Empty:
                break
            line = self._progress_line(service, task, text)
            if line:
                lines.append(line)
        if lines:
            self._write(*lines)

    def _progress_line(self, service: str, task: str, text: str) -> str | None:
        """The line to show, or None when the task said the same thing last (a progress bar)."""
        if self._last.get((service, task)) == text:
            return None
        self._last[(service, task)] = text
        return f"  {service:<11} {task:<5} | {text[:LINE_LIMIT]}"


def release_summary(reporter: Any, record: ReleaseRecord, service_names: tuple[str, ...]) -> None:
    """One line per service: each stage's outcome and the image deployed; where the record is."""
    reporter.section(f"deploybook release {record.run_id} ({record.environment})", sep="-", bold=True)
    reporter.write_line(f"{'service':<14}" + "".join(f"{s:<10}" for s in STAGES) + "image")
    services: Mapping[str, Any] = record.services
    for name in service_names:
        result = services.get(name)
        if result is None:
            continue
        outcomes = "".join(f"{result.stage_outcome(s) or '-':<10}" for s in STAGES)
        reporter.write_line(f"{name:<14}{outcomes}{result.ref or '-'}")
