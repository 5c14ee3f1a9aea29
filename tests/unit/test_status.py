"""The end-of-run status table, through a real pytest run (pytester)."""

from __future__ import annotations

import pytest

from deploybook.plugin.status_table import format_table

pytest_plugins = ["pytester"]

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_table_marks_a_digest_that_differs() -> None:
    lines = format_table(
        [
            {"service": "gateway", "running": A, "recorded": A, "replicas": "1/1"},
            {"service": "terms", "running": B, "recorded": A, "endpoints": "0 ready"},
        ]
    )
    assert lines[0].split() == [
        "service",
        "running",
        "recorded",
        "ready",
        "endpoints",
        "released",
        "commit",
    ]
    assert lines[1].startswith("gateway") and "1/1" in lines[1]
    assert "! sha256:bbbbbbbbbbbb" in lines[2] and "0 ready" in lines[2]


def test_notes_from_tests_end_in_one_table(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from deploybook.plugin.status_table import StatusTable\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(StatusTable(), 'deploybook-status')\n"
    )
    pytester.makepyfile(
        "from deploybook.plugin.status_table import note_status\n"
        "def test_rollout(request):\n"
        "    note_status(request.node, 'gateway', replicas='1/1', commit='3f2c1d0')\n"
        "def test_endpoints(request):\n"
        "    note_status(request.node, 'gateway', endpoints='1 ready, HTTP ok')\n"
        "    assert False, 'a failing check still fills its cells'\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*= deployment status =*",
            "service*running*recorded*ready*endpoints*released*commit",
            "gateway*-*-*1/1*1 ready, HTTP ok*-*3f2c1d0",
        ]
    )
    result.assert_outcomes(passed=1, failed=1)
