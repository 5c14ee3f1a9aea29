"""Figure 2: seconds from applying a crashing image to a verdict, deploybook vs kubectl.

Each trial first rolls out a healthy tiny image, then applies a new image that exits 1 at
start. deploybook's verdict is ``deploybook.verify.rollout.wait_for_rollout`` raising
``RolloutFailed`` (run in-process, several trials); kubectl's is ``kubectl rollout status``
with the default ``progressDeadlineSeconds`` (600 s), which does not stop on a crash loop.
kubectl is measured once per invocation, started first and left waiting in the background
while the other figures run (it only watches), so the 600 s are not spent idle.

"First crash" is the earliest ``finishedAt`` of a terminated container of the new image,
read from the pod status by a poller (the kubelet's timestamps have one-second resolution).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.runner import Series, ratio, say
from bench.tiny import build_and_push, tiny_manifest
from bench.tools import apply_yaml, docker_env, ensure_namespace, ensure_pull_secret, kubectl

NAMESPACE = "dx29-bench-fail"
KUBECTL_CAP_S = 660
ROLLOUT_TIMEOUT_S = 660.0


@dataclass(frozen=True)
class Images:
    """The healthy and the crashing image, pinned by digest."""

    ok: str
    crash: str
    pull_secret: str


class CrashClock(threading.Thread):
    """Polls a Deployment's pods until a container of ``image`` has terminated; keeps when."""

    def __init__(self, kube: Any, name: str, image: str) -> None:
        super().__init__(daemon=True, name=f"crash-clock-{name}")
        self.kube, self.name, self.image = kube, name, image
        self.first_crash: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.first_crash is None:
            self.first_crash = self._earliest_termination()
            self.stop.wait(0.5)

    def _earliest_termination(self) -> float | None:
        pods = self.kube.core.list_namespaced_pod(NAMESPACE, label_selector=f"app={self.name}").items
        times = []
        for pod in pods:
            for cs in pod.status.container_statuses or ():
                if cs.image != self.image and self.image not in (cs.image_id or ""):
                    continue
                for state in (cs.state, cs.last_state):
                    if state is not None and state.terminated is not None and state.terminated.finished_at:
                        times.append(state.terminated.finished_at.timestamp())
        return min(times) if times else None


@dataclass
class KubectlTrial:
    """The one kubectl rollout status left running in the background."""

    proc: subprocess.Popen[str]
    applied: float
    clock: CrashClock
    ended: list[float] = field(default_factory=list)
    output: list[str] = field(default_factory=list)

    def follow(self) -> None:
        """Note the moment kubectl exits (it may be long before anyone asks)."""
        out, _ = self.proc.communicate()
        self.ended.append(time.time())
        self.output.append(out or "")


@dataclass
class FailureResult:
    """What figure 2 measured."""

    deploybook_from_apply: Series = field(default_factory=Series)
    deploybook_from_crash: Series = field(default_factory=Series)
    causes: list[str] = field(default_factory=list)
    first_crash_after_apply: list[float] = field(default_factory=list)
    kubectl_from_apply: float | None = None
    kubectl_verdict: str = ""
    kubectl_valid: bool = False


def prepare() -> Images:
    """Namespace, pull secret and the two images."""
    ensure_namespace(NAMESPACE)
    secret = ensure_pull_secret(NAMESPACE)
    env = docker_env()
    return Images(
        build_and_push("ok", "bench-tiny/ok", env=env), build_and_push("crash", "bench-tiny/crash", env=env), secret
    )


def _roll_out_healthy_then_crash(name: str, images: Images) -> float:
    apply_yaml(tiny_manifest(name, images.ok, pull_secret=images.pull_secret), NAMESPACE)
    kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{name}", "--timeout=180s", timeout=200)
    apply_yaml(tiny_manifest(name, images.crash, pull_secret=images.pull_secret), NAMESPACE)
    return time.time()


def start_kubectl_trial(kube: Any, images: Images) -> KubectlTrial:
    """Apply the crashing image and leave ``kubectl rollout status`` waiting on it."""
    name = f"crash-kubectl-{uuid.uuid4().hex[:6]}"
    applied = _roll_out_healthy_then_crash(name, images)
    proc = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "rollout", "status", f"deployment/{name}", f"--timeout={KUBECTL_CAP_S}s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    clock = CrashClock(kube, name, images.crash)
    clock.start()
    trial = KubectlTrial(proc, applied, clock)
    threading.Thread(target=trial.follow, daemon=True, name="kubectl-rollout-status").start()
    return trial


def finish_kubectl_trial(trial: KubectlTrial, result: FailureResult) -> None:
    """Wait for kubectl's verdict (at most the cap) and record it."""
    remaining = max(1.0, trial.applied + KUBECTL_CAP_S + 30 - time.time())
    say(f"failure: waiting up to {remaining:.0f}s more for kubectl rollout status")
    deadline = time.time() + remaining
    while not trial.ended and time.time() < deadline:
        time.sleep(1.0)
    if not trial.ended:
        trial.proc.kill()
        result.kubectl_verdict = f"no verdict within the {KUBECTL_CAP_S}s cap"
        trial.clock.stop.set()
        return
    result.kubectl_from_apply = round(trial.ended[0] - trial.applied, 2)
    out = trial.output[0].strip()
    result.kubectl_verdict = out.splitlines()[-1] if out else ""
    # A watch broken by a stack restart ends kubectl early: that is no verdict on the rollout.
    result.kubectl_valid = "progress deadline" in result.kubectl_verdict
    trial.clock.stop.set()


def deploybook_trials(kube: Any, images: Images, runs: int, result: FailureResult) -> None:
    """``runs`` trials of deploybook's rollout check on a fresh crashing Deployment each."""
    from deploybook.errors import RolloutFailed
    from deploybook.verify.rollout import wait_for_rollout

    suffix = uuid.uuid4().hex[:6]
    for i in range(1, runs + 1):
        name = f"crash-deploybook-{i}-{suffix}"
        applied = _roll_out_healthy_then_crash(name, images)
        clock = CrashClock(kube, name, images.crash)
        clock.start()
        try:
            wait_for_rollout(kube, "Deployment", NAMESPACE, name, timeout_s=ROLLOUT_TIMEOUT_S)
            result.deploybook_from_apply.failures.append(f"{name}: rolled out although the image crashes")
            continue
        except RolloutFailed as failed:
            verdict, cause = time.time(), failed.cause
            result.causes.append(cause)
        clock.join(timeout=5)
        clock.stop.set()
        result.deploybook_from_apply.values.append(round(verdict - applied, 2))
        if clock.first_crash is not None:
            result.deploybook_from_crash.values.append(round(verdict - clock.first_crash, 2))
            result.first_crash_after_apply.append(round(clock.first_crash - applied, 2))
        say(f"failure: deploybook trial {i}: verdict {verdict - applied:.1f}s after apply ({cause})")


def summary(result: FailureResult, kubectl_first_crash: float | None, kubectl_applied: float) -> dict[str, Any]:
    """The figure's JSON: medians, the single kubectl run, ratio and target."""
    from_crash = result.deploybook_from_crash.median
    kubectl_from_crash = (
        round(kubectl_applied + (result.kubectl_from_apply or 0) - kubectl_first_crash, 2)
        if kubectl_first_crash and result.kubectl_from_apply
        else None
    )
    return {
        "deploybook_apply_to_verdict_s": result.deploybook_from_apply.values,
        "deploybook_apply_to_verdict_median_s": result.deploybook_from_apply.median,
        "deploybook_first_crash_to_verdict_s": result.deploybook_from_crash.values,
        "deploybook_first_crash_to_verdict_median_s": from_crash,
        "deploybook_causes": result.causes,
        "first_crash_after_apply_s": result.first_crash_after_apply,
        "deploybook_failures": result.deploybook_from_apply.failures,
        "kubectl_apply_to_verdict_s": result.kubectl_from_apply,
        "kubectl_first_crash_to_verdict_s": kubectl_from_crash,
        "kubectl_verdict": result.kubectl_verdict,
        "kubectl_valid": result.kubectl_valid,
        "kubectl_runs": 1,
        "ratio": ratio(result.deploybook_from_apply.median, result.kubectl_from_apply)
        if result.kubectl_valid
        else None,
        "target": "deploybook verdict within 20 s of the first crash",
        "met": from_crash is not None and from_crash <= 20.0,
    }
