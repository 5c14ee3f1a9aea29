"""Figure 2: seconds from applying a crashing image to a verdict, deploybook vs kubectl.

Each trial first rolls out a healthy tiny image, then applies a new image that exits 1 at
start. deploybook's verdict is ``deploybook.verify.rollout.wait_for_rollout`` raising
``RolloutFailed`` (run in-process, several trials); kubectl's is ``kubectl rollout status``
with the default ``progressDeadlineSeconds`` (600 s), which does not stop on a crash loop.
kubectl is measured once per invocation, started first and left waiting in the background
while the other figures run (it only watches), so the 600 s are not spent idle.

"First crash" is the earliest ``finishedAt`` of a terminated container of the new image,
read from the pod status by a poller (the kubelet's timestamps have one-second resolution).

Helm 3 is the second baseline: ``helm upgrade --install --wait --atomic --timeout 180s`` of a
tiny chart, first a healthy revision, then the crashing image (crash-loop verdict) or a
readiness probe on a path that answers 404 (never-ready verdict); deploybook's never-ready
verdict is ``wait_for_rollout`` with the bench environment's 180 s rollout timeout and the
default probe failure budget (2 per replica), as a release judges it. These are
deadlines, not detections, so each is one trial, started with kubectl's and left running in a
thread of its own; each cleans up its objects when done (the node's pod budget is shared).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench import helm_baseline
from bench.runner import LOGS, Series, ratio, say
from bench.tiny import build_and_push, tiny_manifest
from bench.tools import apply_yaml, docker_env, ensure_namespace, ensure_pull_secret, kubectl
from bench.workspace import REPO
from deploybook.config.model import Timeouts

NAMESPACE = "dx29-bench-fail"
KUBECTL_CAP_S = 660
ROLLOUT_TIMEOUT_S = 660.0
NEVER_READY_PATH = "/never-ready"  # busybox httpd answers 404 there: the readiness probe never passes
NEVER_READY_TIMEOUT_S = 180.0  # deploybook's: timeouts.rollout of bench/environments/bench.yaml
PROBE_FAILURES_ALLOWED = Timeouts().probe_failures_allowed  # the default: bench.yaml leaves it
BACKGROUND_CAP_S = 2 * helm_baseline.TIMEOUT_S + 240  # healthy install, --wait, the atomic rollback's wait


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


@dataclass
class BackgroundTrial:
    """One deadline-bound trial (Helm's, or deploybook's never-ready) in a thread of its own."""

    tool: str  # "helm" or "deploybook"
    case: str  # "crash" or "never-ready"
    started: float = field(default_factory=time.time)
    applied: float | None = None
    ended: float | None = None
    first_crash: float | None = None
    gave_up: float | None = None  # helm: when --wait gave up, before the atomic rollback
    verdict: str = ""
    valid: bool = False
    error: str = ""
    log: str = ""
    proc: subprocess.Popen[str] | None = None
    thread: threading.Thread | None = None
    waiting: threading.Event = field(default_factory=threading.Event)  # set up, now only waiting

    def summary(self) -> dict[str, Any]:
        """The trial's JSON: seconds from apply (and from the first crash) to the verdict."""

        def between(start: float | None, end: float | None) -> float | None:
            return round(end - start, 2) if start is not None and end is not None else None

        out: dict[str, Any] = {"apply_to_verdict_s": between(self.applied, self.ended)}
        if self.case == "crash":
            out["first_crash_to_verdict_s"] = between(self.first_crash, self.ended)
            out["first_crash_after_apply_s"] = between(self.applied, self.first_crash)
        if self.tool == "helm":
            out["wait_gave_up_after_apply_s"] = between(self.applied, self.gave_up)
        return out | {"verdict": self.verdict, "valid": self.valid, "error": self.error, "log": self.log}


def _helm_trial(kube: Any, images: Images, trial: BackgroundTrial) -> None:
    """Helm installs a healthy revision, then upgrades to the bad one; times helm until it exits."""
    name = f"{trial.case}-helm-{uuid.uuid4().hex[:6]}"
    chart = helm_baseline.tiny_chart(name, pull_secret=images.pull_secret)
    log = LOGS / f"failure-helm-{trial.case}.log"
    trial.log = str(log.relative_to(REPO))
    LOGS.mkdir(parents=True, exist_ok=True)
    crash = trial.case == "crash"
    try:
        with log.open("w") as out:
            healthy = helm_baseline.upgrade_command(name, chart, NAMESPACE, image=images.ok, atomic=False)
            out.write("$ " + " ".join(healthy) + "\n")
            out.flush()
            done = subprocess.run(healthy, env=helm_baseline.env(), stdout=out, stderr=subprocess.STDOUT, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"the healthy revision of {name} did not install; see {log}")
            bad = helm_baseline.upgrade_command(
                name,
                chart,
                NAMESPACE,
                image=images.crash if crash else images.ok,
                ready_path="/health" if crash else NEVER_READY_PATH,
            )
            out.write("$ " + " ".join(bad) + "\n(seconds since the upgrade started, then helm's output)\n")
            clock = CrashClock(kube, name, images.crash) if crash else None
            trial.applied = time.time()
            trial.proc = subprocess.Popen(
                bad, env=helm_baseline.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            if clock is not None:
                clock.start()
            trial.waiting.set()
            errors = []
            for line in trial.proc.stdout or ():
                now = time.time()
                out.write(f"{now - trial.applied:8.2f} {line}")
                if trial.gave_up is None and "wait for resources failed" in line:
                    trial.gave_up = now
                if line.startswith("Error:"):
                    errors.append(line.strip())
            code = trial.proc.wait()
            trial.ended = time.time()
            if clock is not None:
                clock.stop.set()
                trial.first_crash = clock.first_crash
        trial.verdict = errors[-1] if errors else f"helm exited {code}"
        # A watch broken by a stack restart fails helm too: only its deadline is a verdict here.
        trial.valid = code != 0 and "context deadline exceeded" in trial.verdict
    finally:
        helm_baseline.uninstall(name, NAMESPACE)


def _deploybook_never_ready(kube: Any, images: Images, trial: BackgroundTrial) -> None:
    """A healthy rollout, then a readiness probe that answers 404; deploybook's wait until its verdict."""
    from deploybook.errors import RolloutFailed
    from deploybook.verify.rollout import wait_for_rollout

    name = f"never-ready-deploybook-{uuid.uuid4().hex[:6]}"
    try:
        apply_yaml(tiny_manifest(name, images.ok, pull_secret=images.pull_secret), NAMESPACE)
        kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{name}", "--timeout=180s", timeout=200)
        never = tiny_manifest(name, images.ok, pull_secret=images.pull_secret, ready_path=NEVER_READY_PATH)
        apply_yaml(never, NAMESPACE)
        trial.applied = time.time()
        trial.waiting.set()
        try:
            wait_for_rollout(
                kube,
                "Deployment",
                NAMESPACE,
                name,
                timeout_s=NEVER_READY_TIMEOUT_S,
                probe_failures_allowed=PROBE_FAILURES_ALLOWED,
            )
            trial.verdict = "rolled out although the readiness probe answers 404"
        except RolloutFailed as failed:
            trial.ended = time.time()
            trial.verdict = f"{failed.cause}: {failed.detail}"
            # A stack outage (watch broken, node lost) is no verdict on readiness.
            trial.valid = failed.cause not in ("WatchFailed", "NodeNotReady", "NotFound")
    finally:
        kubectl("-n", NAMESPACE, "delete", "deployment", name, "--ignore-not-found", "--wait=false", check=False)


def _run_trial(target: Any, kube: Any, images: Images, trial: BackgroundTrial) -> None:
    try:
        target(kube, images, trial)
    except Exception as e:  # recorded in the figure, the other trials go on
        trial.error = f"{type(e).__name__}: {e}"
    trial.waiting.set()
    say(f"failure: {trial.tool} {trial.case} trial ended: {trial.verdict or trial.error}")


def start_background_trials(kube: Any, images: Images, *, helm: bool) -> list[BackgroundTrial]:
    """deploybook's never-ready trial and, with helm built, Helm's crash and never-ready trials.

    Returns once every trial is set up (healthy revision rolled out, bad one applied), so only
    their waiting overlaps the figures measured next.
    """
    trials = [BackgroundTrial("deploybook", "never-ready")]
    if helm:
        trials += [BackgroundTrial("helm", "crash"), BackgroundTrial("helm", "never-ready")]
    for trial in trials:
        target = _helm_trial if trial.tool == "helm" else _deploybook_never_ready
        trial.thread = threading.Thread(
            target=_run_trial, args=(target, kube, images, trial), daemon=True, name=f"{trial.tool}-{trial.case}"
        )
        trial.thread.start()
    for trial in trials:
        trial.waiting.wait(timeout=300)
    return trials


def finish_background_trials(trials: list[BackgroundTrial]) -> None:
    """Wait for every background trial (at most the cap from its start)."""
    for trial in trials:
        if trial.thread is None:
            continue
        remaining = max(1.0, trial.started + BACKGROUND_CAP_S - time.time())
        if trial.thread.is_alive():
            say(f"failure: waiting up to {remaining:.0f}s more for the {trial.tool} {trial.case} trial")
        trial.thread.join(timeout=remaining)
        if trial.thread.is_alive():
            if trial.proc is not None:
                trial.proc.kill()
            trial.error = trial.error or f"no verdict within the {BACKGROUND_CAP_S}s cap"


def background_summary(trials: list[BackgroundTrial], deploybook_from_crash: float | None) -> dict[str, Any]:
    """The Helm and never-ready parts of the figure's JSON, with deploybook's ratios to Helm."""
    by = {(t.tool, t.case): t for t in trials}
    out: dict[str, Any] = {}
    nr = by.get(("deploybook", "never-ready"))
    helm_crash, helm_nr = by.get(("helm", "crash")), by.get(("helm", "never-ready"))
    if helm_crash is not None and helm_nr is not None:
        crash, never = helm_crash.summary(), helm_nr.summary()
        out["helm"] = {
            "version": helm_baseline.version(),
            "timeout_s": helm_baseline.TIMEOUT_S,
            "runs": 1,
            "crash": crash,
            "never_ready": never,
            "crash_ratio": ratio(deploybook_from_crash, crash["first_crash_to_verdict_s"]) if crash["valid"] else None,
        }
    if nr is not None:
        mine = nr.summary()
        helm_valid = helm_nr is not None and helm_nr.valid
        out["never_ready"] = {
            "readiness_path": NEVER_READY_PATH,
            "deploybook_timeout_s": NEVER_READY_TIMEOUT_S,
            "deploybook": mine,
            "ratio_to_helm": ratio(mine["apply_to_verdict_s"], helm_nr.summary()["apply_to_verdict_s"])
            if helm_valid and nr.valid and helm_nr is not None
            else None,
        }
    return out


def summary(
    result: FailureResult,
    kubectl_first_crash: float | None,
    kubectl_applied: float,
    background: list[BackgroundTrial] | None = None,
) -> dict[str, Any]:
    """The figure's JSON: medians, the single kubectl run, ratio and target; Helm and never-ready."""
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
    } | background_summary(background or [], from_crash)
