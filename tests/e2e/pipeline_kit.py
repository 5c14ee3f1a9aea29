"""What the e2e tests of the dev -> test -> prod pipeline share: a runbook checkout on a clean
main, the records the environments keep in their clusters, and "nothing was applied".

The environments are the real ones (``environments/dev.yaml``, ``test.yaml``, ``prod.yaml``:
namespaces ``dx29-ENV``, contexts ``deploybook-ENV`` and ``deploybook-ENV-view``), released
from a :class:`~bad_input.sandbox.Sandbox`: a git checkout of this runbook on ``main``, as prod
requires, whose environment files a test may change for its case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bad_input.sandbox import Run, Sandbox, kubectl, namespaced_kinds, snapshot

ENVIRONMENTS = ("dev", "test", "prod")
SERVICES = ("gateway", "annotation", "terms", "worker")
CONFIGMAP = "deploybook-release"


def runbook(tmp: Path, env: dict[str, str], *, branch: str = "main", pipeline: bool = False) -> Sandbox:
    """A runbook checkout (committed, clean) on ``branch``; ``pipeline`` links what scripts/pipeline needs."""
    links = ("stack", "scripts", ".venv") if pipeline else ()
    return Sandbox.create(tmp / "runbook", env, "dx29-local-unused", branch=branch, links=links)


def stored(env: dict[str, str], environment: str, key: str = "release.json") -> dict[str, Any] | None:
    """A record the environment keeps in its ConfigMap (read with the admin context), or None."""
    out = kubectl(env, "-n", f"dx29-{environment}", "get", "configmap", CONFIGMAP, "-o", "json", "--ignore-not-found")
    if not out.strip():
        return None
    text = (json.loads(out).get("data") or {}).get(key)
    return json.loads(text) if text else None


def ensure_passed_test_release(env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """Test's current record, once it is a passed release (one is made when it is not)."""
    record = stored(env, "test")
    if record is None or record.get("outcome") != "passed" or record.get("dry_run"):
        box = runbook(tmp / "make-test-pass", env)
        run = box.run("runbook", "--env", "test", reports=tmp / "make-test-pass" / "reports")
        assert run.returncode == 0, f"could not make a passed test release:\n{run.output[-3000:]}"
        record = stored(env, "test")
    assert record is not None
    return record


def versions(env: dict[str, str], environment: str) -> dict[str, str]:
    """kind/name -> resourceVersion of everything in ``dx29-ENV``: equal before and after means untouched."""
    return snapshot(env, f"dx29-{environment}", namespaced_kinds(env))


def error_lines(run: Run) -> list[str]:
    """The ``ERROR:`` lines pytest printed for a refused run."""
    return [line for line in run.output.splitlines() if line.startswith("ERROR: ")]
