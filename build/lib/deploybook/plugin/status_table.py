"""Deployment status at a glance: one table at the end of a checks run.

Each check notes what it observed for its service with `note_status` (as a user property of
its test report, so the notes travel from pytest-xdist workers to the controller). The
`StatusTable` plugin gathers the notes from the reports and prints, in `pytest_terminal_summary`:

    service     running       recorded      ready  endpoints         released              commit
    gateway     sha256:1a2b…  sha256:1a2b…  1/1    1 ready, HTTP ok  2025-05-01T10:00:00Z  3f2c1d0

Cells nobody noted show "-"; a running digest that differs from the recorded one is marked "!".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

__all__ = ["COLUMNS", "STATUS_PROPERTY", "StatusTable", "format_table", "note_status"]

STATUS_PROPERTY = "deploybook.plugin.status_table"
COLUMNS = (
    ("service", "service"),
    ("running", "running"),
    ("recorded", "recorded"),
    ("replicas", "ready"),
    ("endpoints", "endpoints"),
    ("released", "released"),
    ("commit", "commit"),
)


def note_status(node: pytest.Item, service: str, **cells: str) -> None:
    """Note cells of `service`'s row (keys from COLUMNS) on the test's report."""
    unknown = set(cells) - {key for key, _ in COLUMNS}
    if unknown:
        raise ValueError(f"unknown status columns {sorted(unknown)}; known: {COLUMNS}")
    node.user_properties.append((STATUS_PROPERTY, {"service": service, **cells}))


def _short(digest: str) -> str:
    return digest[:19] + "…" if digest.startswith("sha256:") and len(digest) > 19 else digest


def _cells(row: Mapping[str, str]) -> list[str]:
    cells = []
    for key, _ in COLUMNS:
        value = row.get(key) or "-"
        cells.append(_short(value) if key in ("running", "recorded") else value)
    running, recorded = row.get("running"), row.get("recorded")
    if running and recorded and running != recorded:
        cells[1] = "! " + cells[1]
    return cells


def format_table(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """The table as lines: a header and one line per service, columns padded."""
    table = [[title for _, title in COLUMNS]] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]


class StatusTable:
    """pytest plugin: gathers status notes from test reports and prints the table at the end."""

    def __init__(self, title: str = "deployment status") -> None:
        self.title = title
        self.rows: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the notes of each test phase (xdist sends the worker's reports here)."""
        for key, value in report.user_properties:
            if key == STATUS_PROPERTY and isinstance(value, dict):
                cells = {k: str(v) for k, v in value.items() if v is not None}
                self.rows.setdefault(cells["service"], {}).update(cells)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the table once, after the run's results."""
        if not self.rows:
            return
        terminalreporter.write_sep("=", self.title)
        for line in format_table(self.rows[name] for name in sorted(self.rows)):
            terminalreporter.write_line(line)
