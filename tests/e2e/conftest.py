"""Shared e2e fixtures: throwaway environments, stack components, fault results.

- ``throwaway_environment`` writes ``environments/fault-<id>.yaml``: the local environment with
  its own namespace and image repositories (``fault-<id>/<service>``), so a test that breaks a
  release never touches ``dx29-local`` or its images. File and namespace are removed after the
  test, pass or fail.
- ``stop_component`` / ``start_component`` stop a stack component by its pid file and start it
  again with the stack's own start function; ``component_down`` restores it in a finally.
- ``fault_case`` collects one row of the fault table (``reports/reliability/faults.jsonl``);
  the row's ``passed`` is the test's real outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from throwaway import remove_environments

ROOT = Path(__file__).resolve().parents[2]
FAULTS_FILE = ROOT / "reports" / "reliability" / "faults.jsonl"
_STACK_LIBS = ("common", "pki", "build", "components")
START_FUNCTIONS = {
    "registry": "start_registry",
    "kube-apiserver": "start_apiserver",
    "kubelet": "start_kubelet",
    "git-server": "start_git_server",
}


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``fault`` marker: a test that breaks a stack component or a release on purpose."""
    config.addinivalue_line(
        "markers", "fault: breaks a stack component or a release on purpose (tests/e2e/test_faults.py)"
    )


@dataclass(frozen=True)
class ThrowawayEnvironment:
    """An environment file of its own: name (for ``--env``), namespace, file and image prefix."""

    name: str
    namespace: str
    file: Path
    image_prefix: str
    manifests: Path

    def repository(self, registry: str, service: str) -> str:
        """The full image repository of ``service`` in this environment."""
        return f"{registry}/{self.image_prefix}/{service}"


@pytest.fixture(scope="session")
def admin(cluster_ready: dict[str, str]) -> Any:
    """API clients with the stack's admin context."""
    from deploybook.cluster.connect import connect

    return connect(context="deploybook-admin", kubeconfig=cluster_ready["KUBECONFIG"])


@pytest.fixture(scope="session")
def registry_auth(cluster_ready: dict[str, str]) -> Any:
    """The stack registry's credentials, read from its password file."""
    from deploybook.images.credentials import resolve_credentials

    return resolve_credentials(
        cluster_ready["DEPLOYBOOK_REGISTRY"],
        username=cluster_ready["DEPLOYBOOK_REGISTRY_USER"],
        password_file=cluster_ready["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"],
    )


def _write_environment(
    name: str,
    namespace: str,
    prefix: str,
    manifests: Path,
    services: Sequence[str],
    lock_duration_s: int,
    contexts: dict[str, Path],
    prepare: dict[str, str] | None = None,
) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "environments" / "local.yaml").read_text())
    # A self-contained environment: its own list of services, from the app definition.
    doc["services"] = yaml.safe_load((ROOT / "app.yaml").read_text())["services"]
    doc["description"] = "Throwaway environment of the e2e fault tests (deleted afterwards)."
    doc["cluster"]["namespace"] = namespace
    doc["lock_duration_s"] = lock_duration_s
    doc["manifests"] = {"path": str(manifests)}
    kept = []
    left_out = [svc["name"] for svc in doc["services"] if svc["name"] not in services]
    for svc in doc["services"]:
        if svc["name"] not in services:
            continue
        # An HTTP check that goes through a service left out of this environment cannot pass.
        svc["http"] = [c for c in svc.get("http") or () if not any(o in json.dumps(c) for o in left_out)]
        svc["image"] = f"{prefix}/{svc['name']}"
        if svc["name"] in contexts:
            svc["context"] = str(contexts[svc["name"]])
            svc.pop("prepare", None)
        if prepare and svc["name"] in prepare:
            svc["prepare"] = prepare[svc["name"]]
        kept.append(svc)
    doc["services"] = kept
    return doc


def _copy_manifests(dest: Path, prefix: str, edit: Callable[[str, str], str] | None) -> Path:
    """The sample app's manifests with images renamed into the environment's repositories;
    ``edit(file name, text)`` may change them further (e.g. a slower readiness probe)."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in (ROOT / "apps" / "dx29" / "manifests").glob("*.yaml"):
        text = src.read_text().replace("image: dx29/", f"image: {prefix}/")
        (dest / src.name).write_text(edit(src.name, text) if edit else text)
    return dest


@pytest.fixture
def throwaway_environment(admin: Any) -> Iterator[Callable[..., ThrowawayEnvironment]]:
    """Factory: ``make(services=("gateway",), lock_duration_s=1800, contexts={}, edit=None, prepare={})``.

    ``prepare`` gives a service another prepare command (a slower one, say).

    Each call writes ``environments/fault-<id>.yaml`` (namespace ``dbk-fault-<id>``); every
    file and namespace made is deleted after the test, whatever happened.
    """
    made: list[ThrowawayEnvironment] = []

    def make(
        services: Sequence[str] = ("gateway",),
        lock_duration_s: int = 1800,
        contexts: dict[str, Path] | None = None,
        edit: Callable[[str, str], str] | None = None,
        prepare: dict[str, str] | None = None,
    ) -> ThrowawayEnvironment:
        ident = uuid.uuid4().hex[:8]
        name, namespace, prefix = f"fault-{ident}", f"dbk-fault-{ident}", f"fault-{ident}"
        # Inside the repository: a path source is recorded relative to it. reports/ is git-ignored.
        manifests = _copy_manifests(ROOT / "reports" / "e2e-manifests" / name, prefix, edit)
        file = ROOT / "environments" / f"{name}.yaml"
        doc = _write_environment(name, namespace, prefix, manifests, services, lock_duration_s, contexts or {}, prepare)
        file.write_text("# Written by tests/e2e; deleted when the test ends.\n" + yaml.safe_dump(doc, sort_keys=False))
        env = ThrowawayEnvironment(name, namespace, file, prefix, manifests)
        made.append(env)
        return env

    try:
        yield make
    finally:
        remove_environments(admin, made)


# --------------------------------------------------------------------------- stack components


def _state(env: dict[str, str]) -> Path:
    return Path(env.get("DEPLOYBOOK_STACK_STATE", "/var/lib/deploybook-stack"))


def component_pid(name: str, env: dict[str, str]) -> int | None:
    """The pid in ``$STATE/run/NAME.pid`` when that process is alive."""
    try:
        pid = int((_state(env) / "run" / f"{name}.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_component(name: str, env: dict[str, str], *, sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
    """Stop a stack component by its pid file and wait until it is gone (SIGKILL as last resort)."""
    pid = component_pid(name, env)
    if pid is None:
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    while component_pid(name, env) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.1)


def start_component(name: str, env: dict[str, str]) -> None:
    """Start a component with the stack's own function (it waits until the component answers)."""
    sources = "; ".join(f"source stack/lib/{lib}.sh" for lib in _STACK_LIBS)
    proc = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; {sources}; {START_FUNCTIONS[name]}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"could not start {name}: {proc.stderr[-2000:]}"


@contextmanager
def component_down(name: str, env: dict[str, str]) -> Iterator[None]:
    """Inside the block the test stops ``name`` when it wants; afterwards it runs again."""
    try:
        yield
    finally:
        if component_pid(name, env) is None:
            start_component(name, env)


def wait_node_ready(admin: Any, timeout_s: float = 120) -> None:
    """Wait until every node reports Ready=True and carries no node-lifecycle taint (after a kubelet restart)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            nodes = admin.core.list_node().items
            ready = all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ()) for n in nodes)
            # The node controller lifts its unreachable/not-ready taints a moment after Ready.
            tainted = any(t.key.startswith("node.kubernetes.io/") for n in nodes for t in n.spec.taints or ())
            if nodes and ready and not tainted:
                return
        except Exception:
            pass
        time.sleep(1)
    raise AssertionError(f"node not Ready within {timeout_s}s after the kubelet restart")


# --------------------------------------------------------------------------- releases


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Release:
    """A ``pytest runbook`` (or ``checks``) subprocess whose output is followed line by line."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A shell without job control starts background jobs with SIGINT ignored, and Python
            # then installs no KeyboardInterrupt handler: the release under test gets the default.
            preexec_fn=_default_sigint,
        )

    @property
    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float) -> bool:
        """True once ``text`` appears in the output; False when the process ended or time ran out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                return text in self.output
            time.sleep(0.05)
        return False

    def wait(self, timeout_s: float = 600) -> int:
        """Exit code of the process (killed when it outlives ``timeout_s``)."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self.handle.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process (only to it, not its group)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to the release's whole process group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # started in a session of its own: pgid == pid


@pytest.fixture
def release_runner(cluster_ready: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Release]]:
    """Factory: ``start("runbook", "--env", NAME, ...)`` -> a running `Release`; all are ended afterwards."""
    started: list[Release] = []

    def start(*args: str) -> Release:
        reports = tmp_path / "reports"
        run = Release([*args, "--reports-dir", str(reports)], cluster_ready, tmp_path / f"run-{len(started)}.log")
        started.append(run)
        return run

    try:
        yield start
    finally:
        for run in started:
            if run.proc.poll() is None:
                run.kill()
                run.proc.wait(timeout=30)
            run.handle.close()


def records_of(reports: Path, env_name: str) -> list[dict[str, Any]]:
    """Every release.json written under ``reports/ENV/``, oldest first."""
    files = sorted((reports / env_name).glob("*/release.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in files]


@pytest.fixture(scope="session")
def stack_kit() -> SimpleNamespace:
    """The helpers above for test modules (a conftest is not importable by its module name)."""
    return SimpleNamespace(
        root=ROOT,
        component_down=component_down,
        component_pid=component_pid,
        stop_component=stop_component,
        start_component=start_component,
        wait_node_ready=wait_node_ready,
        records_of=records_of,
    )


# --------------------------------------------------------------------------- fault table


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so ``fault_case`` knows the real outcome."""
    report = yield
    setattr(item, f"_fault_report_{report.when}", report)
    return report


@pytest.fixture
def fault_case(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A row of the fault table; the test fills ``case``, ``expected``, ``observed``, ``lost``.

    Written to ``reports/reliability/faults.jsonl`` after the test (one line per case, the
    latest run of a case replacing the earlier one), with ``passed`` from the test's outcome.
    """
    row: dict[str, Any] = {
        "suite": "faults",
        "case": request.node.name,
        "expected": "",
        "observed": "",
        "lost": "unknown",
    }
    yield row
    call = getattr(request.node, "_fault_report_call", None)
    row["passed"] = bool(call is not None and call.passed)
    if call is not None and call.failed and not row["observed"]:
        row["observed"] = str(call.longrepr)[-400:]
    row["test"] = request.node.nodeid
    row["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _write_row(row)


def _write_row(row: dict[str, Any]) -> None:
    FAULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if FAULTS_FILE.is_file():
        rows = [json.loads(line) for line in FAULTS_FILE.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("case") != row["case"]] + [row]
    tmp = FAULTS_FILE.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    tmp.replace(FAULTS_FILE)
