"""Timed commands, the environment lock's wait-and-retry, and the statistics of the figures.

Every command's full output goes to a log file under ``bench/results/tmp/logs`` so a failed
or surprising run can be read afterwards; the results only keep the numbers and a short reason.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from bench import budget
from bench.workspace import TMP

LOGS = TMP / "logs"
PYTEST = str(Path(sys.executable).with_name("pytest"))
LOCK_RETRY_S = 15.0
LOCK_PATIENCE_S = 600.0


@dataclass
class Timed:
    """One timed command: wall seconds, exit code and where its output went."""

    label: str
    seconds: float
    returncode: int
    log: Path
    tail: str = ""
    budget: dict[str, float] = field(default_factory=dict)  # deploybook runs: bench.budget

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.returncode == 0


@dataclass
class Series:
    """Repeated measurements of one figure."""

    values: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        """Median of the successful runs (None when none succeeded)."""
        return statistics.median(self.values) if self.values else None


def run_timed(label: str, cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 900.0) -> Timed:
    """Run ``cmd``, return its wall time; output is written to ``LOGS/label.log``."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{label}.log"
    launched = time.time()
    start = time.monotonic()
    with log.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
    seconds = time.monotonic() - start
    return Timed(label, seconds, code, log, _tail(log), _budget(cwd, launched, launched + seconds))


def _budget(cwd: Path, launched: float, exited: float) -> dict[str, float]:
    """The time budget of the deploybook run that just ended in ``cwd`` ({} for other tools)."""
    runs = [p.parent for p in (cwd / "reports").glob("*/*/timings.json") if p.stat().st_mtime >= launched]
    timings = budget.read(max(runs, key=lambda r: r.stat().st_mtime)) if runs else None
    return budget.budget(timings, launched, exited) if timings else {}


def _tail(log: Path, lines: int = 6) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


def lock_held(result: Timed) -> bool:
    """True when a pytest run stopped because another release holds the environment lock."""
    if result.ok:
        return False
    return "LockHeld:" in result.log.read_text(errors="replace")


def run_release(label: str, cmd: list[str], *, cwd: Path, env: dict[str, str], own_namespace: str) -> Timed:
    """Run a deploybook release; while another release holds the lock, wait and try again.

    A lock in the benchmark's ``own_namespace`` held by a process of this machine that no
    longer exists (a benchmark killed while the API server was down) is deleted, as the
    lock's own hint says to do for a dead holder.
    """
    waited = 0.0
    while True:
        result = run_timed(label, cmd, cwd=cwd, env=env)
        if not lock_held(result) or waited >= LOCK_PATIENCE_S:
            return result
        if clear_stale_lock(result, own_namespace):
            continue
        say(f"{label}: environment lock held by another release, retrying in {LOCK_RETRY_S:.0f}s")
        time.sleep(LOCK_RETRY_S)
        waited += LOCK_RETRY_S


_HOLDER = re.compile(r"locked by (?P<user>[^@\s]+)@(?P<host>[^:\s]+):(?P<pid>\d+)/")


def clear_stale_lock(result: Timed, namespace: str) -> bool:
    """Delete the Lease in ``namespace`` when its holder is a dead process on this host."""
    match = _HOLDER.search(result.log.read_text(errors="replace"))
    if not match or match["host"] != socket.gethostname() or _alive(int(match["pid"])):
        return False
    say(f"lock in {namespace} held by dead process {match['pid']} of this machine: deleting the stale lease")
    proc = subprocess.run(
        ["kubectl", "-n", namespace, "delete", "lease", "deploybook-release", "--ignore-not-found"],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, rounded; None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def say(message: str) -> None:
    """Progress on stderr with a timestamp, so an unattended run can be followed."""
    print(time.strftime("%H:%M:%S ") + message, file=sys.stderr, flush=True)


STACK_STATUS = str(Path(__file__).resolve().parent.parent / "stack" / "status")
STACK_PATIENCE_S = 420.0


def stack_down() -> list[str]:
    """Components ``stack/status`` reports as not up (empty when all are up)."""
    try:
        proc = subprocess.run([STACK_STATUS], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"stack/status: {e}"]
    down = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] in ("down", "up") and fields[1] != "up":
            down.append(fields[0])
    return down


def wait_for_stack(patience_s: float = STACK_PATIENCE_S) -> bool:
    """Wait until every stack component is up (others may be restarting it); True when up."""
    waited = 0.0
    while True:
        down = stack_down()
        if not down:
            if waited:
                time.sleep(10.0)  # let the API server and kubelet settle after a restart
            return True
        if waited >= patience_s:
            return False
        say(f"stack: {', '.join(down)} down (someone may be restarting the stack); waiting")
        time.sleep(10.0)
        waited += 10.0


def run_with_stack(label: str, run: Callable[[], Timed], attempts: int = 3) -> Timed:
    """``run()``; when it fails while the stack is (or was) down, wait for the stack and redo it."""
    result = run()
    for _ in range(attempts - 1):
        if result.ok:
            break
        if not stack_down() and not _mentions_outage(result):
            break
        say(f"{label}: failed during a stack outage; waiting for the stack, then running it again")
        if not wait_for_stack():
            break
        result = run()
    return result


def _mentions_outage(result: Timed) -> bool:
    text = result.log.read_text(errors="replace")
    return "connection refused" in text.lower() or "cluster unreachable" in text


SETTLE_PATIENCE_S = 30.0


def settle(namespaces: Collection[str], patience_s: float = SETTLE_PATIENCE_S) -> float:
    """Wait until no pod in ``namespaces`` is terminating; the seconds waited.

    A rollout leaves the old pods in their grace period (up to 10 s in the sample app) while the
    next tool starts: without this, each run shares the machine with the previous run's tail,
    and which tool pays for whose tail depends on the order of the round.
    """
    started = time.monotonic()
    while time.monotonic() - started < patience_s:
        proc = subprocess.run(
            [
                "kubectl",
                "get",
                "pods",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.deletionTimestamp}{'\\n'}{end}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        lines = (line.split() for line in proc.stdout.splitlines())
        if proc.returncode == 0 and not any(len(f) > 1 and f[0] in namespaces for f in lines):
            break
        time.sleep(0.5)
    return time.monotonic() - started
