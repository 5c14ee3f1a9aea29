"""The pipeline's side-by-side steps: a service's checks after its rollout run at the same time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from deploybook.release.checking import AFTER_ROLLOUT
from deploybook.release.pipeline import Pipeline, Skipped

CHAIN = ("apply", "rollout", *AFTER_ROLLOUT)


@dataclass(frozen=True)
class Judged:
    blocks: str | None = None


def run(chains: dict[str, tuple[str, ...]], task: Callable[[str, str], object]) -> Pipeline:
    pipeline = Pipeline(chains, task, side_by_side=AFTER_ROLLOUT)
    pipeline.start()
    assert pipeline.join(10), "every chain ended"
    return pipeline


def test_consecutive_side_by_side_tasks_form_one_step() -> None:
    pipeline = Pipeline({"api": CHAIN, "web": ("rollout", "digests")}, lambda s, t: None, side_by_side=AFTER_ROLLOUT)
    assert pipeline.steps("api") == [("apply",), ("rollout",), AFTER_ROLLOUT]
    assert pipeline.steps("web") == [("rollout",), ("digests",)]


def test_the_checks_after_the_rollout_run_at_the_same_time() -> None:
    # Each check waits until all of them have started: run one after the other, the first
    # would wait alone until the barrier's timeout broke it.
    barrier = threading.Barrier(len(AFTER_ROLLOUT), timeout=5)

    def task(service: str, name: str) -> object:
        if name in AFTER_ROLLOUT:
            barrier.wait()
        return Judged()

    pipeline = run({"api": CHAIN}, task)
    for name in CHAIN:
        assert isinstance(pipeline.wait("api", name), Judged), name
    spans = [pipeline.timing("api", name) for name in AFTER_ROLLOUT]
    assert all(span is not None for span in spans)
    rollout = pipeline.timing("api", "rollout")
    assert rollout is not None and all(span.started >= rollout.finished for span in spans if span)


def test_a_check_that_raises_leaves_its_siblings_running_and_ends_the_chain_after_them() -> None:
    def task(service: str, name: str) -> object:
        if name == "endpoints":
            raise RuntimeError("no route to the service")
        return Judged()

    pipeline = run({"api": (*CHAIN, "later")}, task)
    with pytest.raises(RuntimeError, match="no route"):
        pipeline.wait("api", "endpoints")
    for name in ("digests", "containers", "rules"):
        assert isinstance(pipeline.wait("api", name), Judged), name
    later = pipeline.wait("api", "later")
    assert isinstance(later, Skipped) and later.reason == "endpoints failed: RuntimeError: no route to the service"


def test_a_failed_rollout_skips_every_check_after_it() -> None:
    ran: list[str] = []

    def task(service: str, name: str) -> object:
        ran.append(name)
        return Judged("0 of 2 pods ready") if name == "rollout" else Judged()

    pipeline = run({"api": CHAIN}, task)
    assert ran == ["apply", "rollout"]
    for name in AFTER_ROLLOUT:
        skipped = pipeline.wait("api", name)
        assert isinstance(skipped, Skipped) and skipped.reason == "rollout failed: 0 of 2 pods ready"


def test_http_checks_wait_for_the_rollouts_of_the_other_services() -> None:
    # The gateway's HTTP check goes through to the annotation backend: it may only ask once the
    # backend has rolled out (or failed to), however early the gateway's own rollout ended.
    from types import SimpleNamespace

    from deploybook.release.checking import _wait_for_other_rollouts

    backend_may_finish = threading.Event()
    events: list[str] = []
    said: list[object] = []
    release = SimpleNamespace(
        env=SimpleNamespace(services=[SimpleNamespace(name=n) for n in ("gateway", "annotation", "terms")])
    )

    def task(service: str, name: str) -> object:
        if (service, name) == ("annotation", "rollout"):
            assert backend_may_finish.wait(5)
            events.append("annotation rolled out")
            raise RuntimeError("annotation: ImagePullBackOff")
        if (service, name) == ("gateway", "endpoints"):
            _wait_for_other_rollouts(release, SimpleNamespace(name="gateway"), say)  # type: ignore[arg-type]
            events.append("gateway asked")
        return Judged()

    def say(text: object) -> None:  # the backend finishes only once the gateway said it waits
        said.append(text)
        backend_may_finish.set()

    release.pipeline = pipeline = Pipeline(
        {"gateway": ("rollout", "endpoints"), "annotation": ("rollout",), "terms": ("apply",)}, task
    )
    pipeline.start()
    assert pipeline.join(10), "every chain ended"
    assert events == ["annotation rolled out", "gateway asked"]
    assert isinstance(pipeline.wait("gateway", "endpoints"), Judged)  # the backend's failure is its own test's
    assert said == ["HTTP checks wait for the rollout of annotation"]  # terms has no rollout in this run


def test_the_wait_line_names_a_few_services_then_how_many_more() -> None:
    # At 100 services each HTTP check said it waited for up to 99 others, a line of 1 000 characters.
    from deploybook.release.checking import _some

    assert _some(["a", "b", "c", "d"]) == "a, b, c, d"
    assert _some([f"s{i}" for i in range(99)]) == "s0, s1, s2 and 96 more"
