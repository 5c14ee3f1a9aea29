"""Figure 4: start-up of ``pytest runbook --env local --collect-only``, wall time and peak RSS.

The baseline is a bare ``pytest --collect-only`` of an empty directory with the same venv
(same plugins auto-loaded: xdist, testinfra, allure), run alternately with deploybook's.
Peak memory is the maximum RSS ``/usr/bin/time`` reports for each run alone.
The deploybook run happens in the repository itself: collecting contacts no cluster and
takes no lock, so it cannot disturb a release.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from typing import Any

from bench.runner import PYTEST, Series, ratio, say
from bench.workspace import REPO

TIME = "/usr/bin/time"
TARGET_S = 0.5
TARGET_MB = 150.0


def _measure(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one run of ``cmd``.

    Peak RSS comes from ``/usr/bin/time -f %M``: a child forked from this (large) Python
    process would inherit its high-water mark across exec and report it as its own.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.monotonic()
        proc = subprocess.run(
            [TIME, "-q", "-f", "%M", "-o", rss.name, *cmd],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.monotonic() - start
        kilobytes = float(rss.read().strip().splitlines()[-1])
    return seconds, kilobytes / 1024.0, proc.returncode


def measure(env: dict[str, str], runs: int) -> dict[str, Any]:
    """Alternate deploybook and baseline ``runs`` times; medians, ratios and targets."""
    empty = tempfile.mkdtemp(prefix="bench-empty-")
    commands = {
        "deploybook": ([PYTEST, "runbook", "--env", "local", "--collect-only", "-q"], str(REPO)),
        "bare pytest": ([PYTEST, "--collect-only", "-q", "-p", "no:cacheprovider"], empty),
    }
    seconds = {name: Series() for name in commands}
    memory = {name: Series() for name in commands}
    for cmd, cwd in commands.values():  # a first run caches the bytecode, as any second run finds it
        _measure(cmd, cwd, env)
    for round_no in range(1, runs + 1):
        for name, (cmd, cwd) in commands.items():
            wall, rss, code = _measure(cmd, cwd, env)
            # A bare collection of an empty directory exits 5 (no tests collected).
            if code in (0, 5):
                seconds[name].values.append(round(wall, 3))
                memory[name].values.append(round(rss, 1))
            else:
                seconds[name].failures.append(f"{' '.join(cmd)} exited {code}")
        say(
            f"startup: round {round_no}: deploybook {seconds['deploybook'].values[-1:]}s, "
            f"bare {seconds['bare pytest'].values[-1:]}s"
        )
    os.rmdir(empty)
    db_s, base_s = seconds["deploybook"].median, seconds["bare pytest"].median
    db_mb, base_mb = memory["deploybook"].median, memory["bare pytest"].median
    return {
        "deploybook_runs_s": seconds["deploybook"].values,
        "deploybook_median_s": db_s,
        "deploybook_peak_rss_mb": memory["deploybook"].values,
        "deploybook_median_peak_rss_mb": db_mb,
        "baseline_runs_s": seconds["bare pytest"].values,
        "baseline_median_s": base_s,
        "baseline_median_peak_rss_mb": base_mb,
        "failures": seconds["deploybook"].failures + seconds["bare pytest"].failures,
        "ratio_s": ratio(db_s, base_s),
        "ratio_rss": ratio(db_mb, base_mb),
        "met_s": db_s is not None and db_s <= TARGET_S,
        "met_rss": db_mb is not None and db_mb <= TARGET_MB,
    }
