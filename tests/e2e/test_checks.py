"""The checks against the live stack; the read-only rule holds without a cluster."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ_ONLY_MODULES = [
    "checks",
    "deploybook/rollout.py",
    "deploybook/kubewatch.py",
    "deploybook/workload_status.py",
    "deploybook/endpoints.py",
    "deploybook/digests.py",
    "deploybook/containers.py",
    "deploybook/status.py",
]
# Kubernetes client write methods, dynamic-client writes and raw write requests.
WRITE = re.compile(
    r"\b(create|patch|replace|delete)_\w+\(|\.(create|patch|replace|delete)\(|"
    r"[\"'](POST|PUT|PATCH|DELETE)[\"']|kubectl\s+(apply|create|patch|delete|set)"
)


def test_checks_and_their_modules_never_write() -> None:
    files = [p for m in READ_ONLY_MODULES for p in ((ROOT / m).rglob("*.py") if (ROOT / m).is_dir() else [ROOT / m])]
    assert len(files) >= 9
    hits = [
        f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if WRITE.search(line)
    ]
    assert not hits, "write calls in read-only checks:\n" + "\n".join(hits)
