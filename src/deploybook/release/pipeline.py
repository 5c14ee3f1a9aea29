"""Each service's tasks in order, all services side by side, every result a future.

A release is a chain of tasks per service (``build``, ``push``, ``apply``, then the checks
``rollout``, ``endpoints``, ``digests``, ``containers``). :class:`Pipeline` runs every
service's chain in a thread of its own, so the Docker engine, the registry and the API
server work on all services at once, while within one service each task sees the outputs
of the ones before it. The pytest layer does not do the work; each test waits for its
task's future and shows what it produced, in the order a reader expects.

Tasks named ``side_by_side`` that follow each other in a chain run at the same time, each in
a thread of its own (the checks after a rollout read different things and wait on different
servers); the chain goes on once all of them have ended.

A task returns its outcome, or :class:`Skipped` with the reason it does not apply. A task
that raises, or whose outcome says it ``blocks`` (a rollout that failed), ends its
service's chain: every later task of that service is skipped naming the failure, while the
other services go on. Release-wide work (the preflight) runs as a
shared task that service tasks wait for. Progress lines go to one queue that the terminal
drains, so the operator sees every service move while a test waits.
"""

from __future__ import annotations

import functools
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from deploybook.errors import DeploybookError

__all__ = ["Pipeline", "Progress", "Skipped", "TaskTiming"]

# The pipeline's threads start processes side by side (a prepare command, git, kubectl exec for
# the container checks). CPython starts them with vfork() where it can; here, with several
# threads spawning at once, that failed with EFAULT ("[Errno 14] Bad address: '/bin/sh'").
# The subprocess documentation's own switch makes it fork instead.
subprocess._USE_VFORK = False  # type: ignore[misc]

TaskFn = Callable[[str, str], object]
Progress = tuple[str, str, str]  # (service, task, text)


@dataclass(frozen=True)
class Skipped:
    """A task that did not run, and why (a skip is not a failure)."""

    reason: str


@dataclass(frozen=True)
class TaskTiming:
    """When a task ran, for the record and the time budget (monotonic seconds)."""

    started: float
    finished: float

    @property
    def seconds(self) -> float:
        """How long the task took."""
        return self.finished - self.started


def _reason(error: BaseException) -> str:
    if isinstance(error, DeploybookError):
        return error.one_line()
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Pipeline:
    """Runs ``chains`` (service -> ordered task names) with ``run(service, task)``."""

    def __init__(self, chains: Mapping[str, Sequence[str]], run: TaskFn, *, side_by_side: Collection[str] = ()) -> None:
        self._chains = {service: tuple(tasks) for service, tasks in chains.items()}
        self._run = run
        self._side_by_side = frozenset(side_by_side)
        self._futures: dict[tuple[str, str], Future[object]] = {
            (service, task): Future() for service, tasks in self._chains.items() for task in tasks
        }
        self._shared: dict[str, Future[object]] = {}
        self._timings: dict[tuple[str, str], TaskTiming] = {}
        self._threads: list[threading.Thread] = []
        self._cancelled = threading.Event()
        self.events: queue.Queue[Progress] = queue.Queue()

    # ------------------------------------------------------------------ running

    def share(self, name: str, fn: Callable[[], object]) -> None:
        """Run release-wide work ``fn`` in its own thread; tasks wait for it with :meth:`shared`."""
        future: Future[object] = Future()
        self._shared[name] = future
        self._start(f"deploybook-{name}", lambda: self._settle(future, fn))

    def start(self) -> None:
        """Start every service's chain."""
        for service in self._chains:
            self._start(f"deploybook-{service}", functools.partial(self._run_chain, service))

    def _start(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _settle(self, future: Future[object], fn: Callable[[], object]) -> None:
        try:
            future.set_result(fn())
        except BaseException as e:  # the waiter re-raises it in its own thread
            future.set_exception(e)

    def steps(self, service: str) -> list[tuple[str, ...]]:
        """``service``'s chain in steps: side-by-side tasks that follow each other make one step."""
        steps: list[tuple[str, ...]] = []
        for task in self._chains[service]:
            if steps and task in self._side_by_side and steps[-1][-1] in self._side_by_side:
                steps[-1] = (*steps[-1], task)
            else:
                steps.append((task,))
        return steps

    def _run_chain(self, service: str) -> None:
        blocked: str | None = None
        for step in self.steps(service):
            if blocked is None and self._cancelled.is_set():
                blocked = "the release was interrupted"
            if blocked is not None:
                for task in step:
                    self._futures[(service, task)].set_result(Skipped(blocked))
                continue
            blocked = next((reason for reason in self._run_step(service, step) if reason), None)

    def _run_step(self, service: str, step: tuple[str, ...]) -> list[str | None]:
        """Run the tasks of one step (side by side when there are several); why each ends the chain."""
        if len(step) == 1:
            return [self._run_task(service, step[0])]
        found: dict[str, str | None] = {}

        def run(task: str) -> None:
            found[task] = self._run_task(service, task)

        threads = [threading.Thread(target=run, args=(t,), name=f"deploybook-{service}-{t}", daemon=True) for t in step]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [found.get(task) for task in step]

    def _run_task(self, service: str, task: str) -> str | None:
        """Run ``task`` and settle its future; why the chain ends after it, or None."""
        future = self._futures[(service, task)]
        started = time.monotonic()
        try:
            outcome = self._run(service, task)
        except BaseException as e:  # recorded on the future; the service's chain ends here
            self._timings[(service, task)] = TaskTiming(started, time.monotonic())
            future.set_exception(e)
            return f"{task} failed: {_reason(e)}"
        self._timings[(service, task)] = TaskTiming(started, time.monotonic())
        future.set_result(outcome)
        blocks = getattr(outcome, "blocks", None)  # e.g. a rollout report with a failure
        return f"{task} failed: {blocks}" if blocks else None

    def cancel(self) -> None:
        """Start no further task; a task already running finishes (nothing is left half-done)."""
        self._cancelled.set()

    def join(self, timeout_s: float) -> bool:
        """Wait until every thread has ended (or ``timeout_s`` passed); True when all did."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ reading

    def has(self, service: str, task: str) -> bool:
        """True when ``task`` is part of ``service``'s chain in this run."""
        return (service, task) in self._futures

    def wait(self, service: str, task: str, *, idle: Callable[[], None] | None = None) -> object:
        """The outcome of ``task`` (or :class:`Skipped`); raises what the task raised.

        ``idle`` is called while waiting (the terminal drains progress lines there).
        """
        return self._wait(self._futures[(service, task)], idle)

    def shared(self, name: str, *, idle: Callable[[], None] | None = None) -> object:
        """The result of the shared work ``name``; raises what it raised."""
        return self._wait(self._shared[name], idle)

    def _wait(self, future: Future[object], idle: Callable[[], None] | None) -> object:
        while not future.done():
            if idle is not None:
                idle()
            try:
                future.exception(timeout=0.1)
            except TimeoutError:
                continue
        if idle is not None:
            idle()
        return future.result()

    def done(self, service: str, task: str) -> bool:
        """True once ``task`` of ``service`` has an outcome."""
        return self._futures[(service, task)].done()

    def timing(self, service: str, task: str) -> TaskTiming | None:
        """When ``task`` ran (None if it did not run)."""
        return self._timings.get((service, task))

    def timings(self) -> dict[tuple[str, str], TaskTiming]:
        """When every task that ran so far ran, by (service, task)."""
        return dict(self._timings)

    def say(self, service: str, task: str) -> Callable[[object], None]:
        """A callback that queues progress lines of ``service``'s ``task`` for the terminal."""

        def emit(text: object) -> None:
            line = str(text).rstrip()
            if line:
                self.events.put((service, task, line))

        return emit
