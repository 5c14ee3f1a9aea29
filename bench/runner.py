"""Timed commands, the environment lock's wait-and-retry, and the statistics of the figures.

Every command's full output goes to a log file under ``bench/results/tmp/logs`` so a failed
or surprising run can be read afterwards; the results only keep the numbers and a short reason.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    return Timed(label, seconds, code, log, _tail(log))


def _tail(log: Path, lines: int = 6) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


def lock_held(result: Timed) -> bool:
    """True when a pytest run stopped because another release holds the environment lock."""
    if result.ok:
        return False
    return "LockHeld:" in result.log.read_text(errors="replace")


def run_release(label: str, cmd: list[str], *, cwd: Path, env: dict[str, str]) -> Timed:
    """Run a deploybook release; while another release holds the lock, wait and try again."""
    waited = 0.0
    while True:
        result = run_timed(label, cmd, cwd=cwd, env=env)
        if not lock_held(result) or waited >= LOCK_PATIENCE_S:
            return result
        print(f"  {label}: environment lock held by another release, retrying in {LOCK_RETRY_S:.0f}s")
        time.sleep(LOCK_RETRY_S)
        waited += LOCK_RETRY_S


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, rounded; None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def say(message: str) -> None:
    """Progress on stderr with a timestamp, so an unattended run can be followed."""
    print(time.strftime("%H:%M:%S ") + message, file=sys.stderr, flush=True)
