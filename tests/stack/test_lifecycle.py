"""stack/down stops everything stack/up started and leaves nothing behind; a
warm stack/up comes back within two minutes with the git repositories as they were;
a second up is a no-op.

These tests stop the stack, so they are marked `lifecycle` and `make test`
runs them after everything else."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

STACK_DIR = Path(__file__).resolve().parents[2] / "stack"


pytestmark = pytest.mark.lifecycle


COMPONENTS = 13


def recorded_pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state / "run").glob("*.pid")}


def process_groups(groups: set[int]) -> list[str]:
    """Processes still in one of these process groups (each component leads its own:
    nginx's workers and fcgiwrap's children belong to theirs)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if int(line.split()[1]) in groups]


def test_down_leaves_nothing_and_warm_up_is_quick(env, stack_command, git) -> None:
    stack = stack_command
    state = Path(env["DEPLOYBOOK_STACK_STATE"])
    repositories = [f"dx29-{s}" for s in ("gateway", "annotation", "terms", "worker")]
    repositories += ["dx29-env-test", "dx29-env-prod"]
    refs = {repo: git.heads(repo) for repo in repositories}
    pids = recorded_pids(state)
    assert len(pids) == COMPONENTS, pids

    down = stack("down")
    assert down.returncode == 0, down.stderr
    alive = {name: pid for name, pid in pids.items() if os.path.exists(f"/proc/{pid}")}
    assert alive == {}, f"still running after down: {alive}"
    assert process_groups(set(pids.values())) == []
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert [m for m in mounts if m.startswith(f"{state}/")] == []
    assert subprocess.run(["ip", "link", "show", "dbk0"], capture_output=True).returncode != 0
    status = stack("status")
    assert status.returncode == 1 and status.stdout.count(" down ") == COMPONENTS, status.stdout

    started = time.monotonic()
    up = stack("up")
    warm_seconds = time.monotonic() - started
    assert up.returncode == 0, up.stderr[-2000:]
    assert warm_seconds <= 120, f"warm up took {warm_seconds:.0f}s"
    # The repositories exist, so up left them exactly as they were.
    assert "seeding" not in up.stderr, up.stderr
    assert {repo: git.heads(repo) for repo in repositories} == refs

    running = recorded_pids(state)
    started = time.monotonic()
    again = stack("up")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert time.monotonic() - started < 10
    assert recorded_pids(state) == running


def test_a_component_that_dies_is_named_with_its_log(tmp_path: Path) -> None:
    """The start-up helper stack/up uses for every component: a process that
    exits while being waited for fails the start, naming it and its log."""
    script = f"""
        source {STACK_DIR}/lib/common.sh
        start_component broken /bin/sh -c 'echo cannot bind 127.0.0.1:1; exit 3'
        wait_until broken 10 false
    """
    env = dict(os.environ, DEPLOYBOOK_STACK_STATE=str(tmp_path))
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode != 0
    assert f"broken exited during start-up; see {tmp_path}/logs/broken.log" in proc.stderr
    assert "cannot bind" in proc.stderr


def test_a_component_inherits_no_descriptor_of_its_caller(tmp_path: Path) -> None:
    """A lock held around stack/up (flock without -o) or a runner's pipe must not stay open in
    the daemons it starts: the component gets stdin, stdout and stderr, nothing else."""
    lock = tmp_path / "lock"
    script = f"""
        source {STACK_DIR}/lib/common.sh
        exec 17>{tmp_path}/held
        start_component probe sleep 30
    """
    env = dict(os.environ, DEPLOYBOOK_STACK_STATE=str(tmp_path))
    proc = subprocess.run(
        ["flock", str(lock), "bash", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    pid = int((tmp_path / "run" / "probe.pid").read_text())
    try:
        # The background subshell closes, then becomes the component; sleep's own start-up opens
        # and closes locale files, so the descriptors are read once it is in its nanosleep.
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}/wchan").read_text() != "hrtimer_nanosleep" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "sleep", "the recorded pid is the component"
        assert Path(f"/proc/{pid}/wchan").read_text() == "hrtimer_nanosleep", "the component is sleeping"
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert sorted(fds) == [0, 1, 2], fds
        free = subprocess.run(["flock", "-n", str(lock), "true"], timeout=10)
        assert free.returncode == 0, "the caller's lock is free once the caller is gone"
    finally:
        os.kill(pid, 15)


def test_up_installs_a_package_that_was_removed(env, stack_command) -> None:
    """The package step is walked whenever a package is missing, not only on a new machine."""
    state = Path(env["DEPLOYBOOK_STACK_STATE"])
    assert stack_command("down").returncode == 0
    removed = subprocess.run(["apt-get", "remove", "-y", "socat"], capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert not package_installed("socat")

    up = stack_command("up")
    assert up.returncode == 0, up.stderr[-2000:]
    assert "installing from Debian's packages" in up.stderr
    assert package_installed("socat")
    assert "socat" in (state / "logs" / "apt.log").read_text()
    assert stack_command("status").returncode == 0


def package_installed(name: str) -> bool:
    query = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return "ok installed" in query.stdout
