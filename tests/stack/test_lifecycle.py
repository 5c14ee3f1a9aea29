"""stack/down stops everything stack/up started and leaves nothing behind; a
warm stack/up comes back within two minutes with the git repositories as they were;
a second up is a no-op.

These tests stop the stack, so they are marked `lifecycle` and `make test`
runs them after everything else."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
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


def pod_addresses() -> list[str]:
    """The IPv4 addresses held by the pods' network namespaces (the CNI plugin's cni-*)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    held = []
    for name in (n for n in names if n.startswith("cni-")):
        out = subprocess.run(["ip", "-n", name, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
        held += [line.split()[3].split("/")[0] for line in out.stdout.splitlines()]
    return held


def kill_stack(state: Path) -> None:
    """What a machine's end does to a stack: every component and every pod's shim, with its
    container processes, killed at once; nothing of down's cleaning runs."""
    for pid in recorded_pids(state).values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, NotADirectoryError, PermissionError, ProcessLookupError):
            continue
        if args[0].endswith(b"containerd-shim-runc-v2") and f"{state}/containerd/".encode() in b" ".join(args):
            subprocess.run(["pkill", "-KILL", "-P", entry.name], check=False)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_groups(set(recorded_pids(state).values())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process_groups(set(recorded_pids(state).values())) == [], "the killed stack is gone"


def test_up_clears_what_a_killed_stack_left_on_the_bridge(env, stack_command, sh, namespace) -> None:
    """A killed stack's pods keep their addresses on the bridge in network namespaces nobody
    serves. A stack started with another state directory hands out the same addresses from a
    new pool, and a dead namesake answers the new pod's probes with a refusal; up clears the
    leftovers first. While the other stack still runs, up refuses to start beside it."""
    state = Path(env["DEPLOYBOOK_STACK_STATE"])
    # A short path: the sockets under a state directory must fit a unix socket's 108 bytes.
    parent = Path(tempfile.mkdtemp(prefix="dbk-", dir="/var/tmp"))
    parent.chmod(0o755)  # the git server's account enters the state directory
    other = dict(os.environ, DEPLOYBOOK_STACK_STATE=str(parent / "state"))
    up_other = [str(STACK_DIR / "up")]

    beside = subprocess.run(up_other, capture_output=True, text=True, env=other, timeout=60)
    assert beside.returncode != 0
    assert "another stack runs on this machine" in beside.stderr, beside.stderr
    assert not (parent / "state").exists(), "nothing was started or written for the refused stack"

    pod = f"""
apiVersion: v1
kind: Pod
metadata: {{name: idle, namespace: {namespace}}}
spec:
  containers: [{{name: idle, image: deploybook.local/pause:1, imagePullPolicy: Never}}]
"""
    sh("kubectl", "apply", "-f", "-", input=pod)
    sh("kubectl", "-n", namespace, "wait", "pod/idle", "--for=condition=Ready", "--timeout=120s")
    address = sh("kubectl", "-n", namespace, "get", "pod/idle", "-o", "jsonpath={.status.podIP}")
    assert address in pod_addresses()

    kill_stack(state)
    try:
        assert address in pod_addresses(), "the killed pod's namespace still holds its address"
        up = subprocess.run(up_other, capture_output=True, text=True, env=other, timeout=900)
        assert up.returncode == 0, up.stderr[-2000:]
        assert "clearing what a stack that was not stopped left behind" in up.stderr, up.stderr[-2000:]
        assert address not in pod_addresses()
    finally:
        subprocess.run([str(STACK_DIR / "down"), "--purge"], capture_output=True, env=other, timeout=300)
        shutil.rmtree(parent, ignore_errors=True)
        restored = stack_command("up")
    assert restored.returncode == 0, restored.stderr[-2000:]
    assert stack_command("status").returncode == 0


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
