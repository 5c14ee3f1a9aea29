"""List and watch one Kubernetes list endpoint as raw JSON, resuming across drops.

`EventStream` is a thread that lists once, then watches from the list's resourceVersion. A
dropped connection or an expired watch window resumes from the last resourceVersion seen; 410
Gone (history compacted) lists again; an unreachable API server is retried with back-off until
the consumer stops the stream (a RETRYING event tells it so). Only list and watch calls are made.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

__all__ = ["EventStream", "NamespaceSnapshot", "list_raw"]

WATCH_WINDOW_S = 60  # server-side timeout of one watch request; the stream then resumes


def list_raw(list_fn: Callable[..., Any], namespace: str, **kw: Any) -> tuple[list[Any], str]:
    """List as raw JSON (the shape watch events carry) and return items and resourceVersion."""
    body = json.loads(list_fn(namespace, _preload_content=False, **kw).data)
    return body.get("items") or [], body.get("metadata", {}).get("resourceVersion", "")


class NamespaceSnapshot:
    """Each kind of one namespace listed once and shared by every check that reads it.

    `items(kind)` lists the kind on first use and keeps the answer, so a checks run costs
    one list per kind whatever the number of objects. `invalidate(*kinds)` marks kinds stale
    (e.g. pods after a rollout was waited for); the next `items` lists them again. Safe to
    share between threads. Only list calls are made.
    """

    def __init__(self, namespace: str, listers: Mapping[str, Callable[..., Any]]) -> None:
        self.namespace = namespace
        self._listers = dict(listers)
        self._items: dict[str, list[Any]] = {}
        # One lock per kind: the threads reading Pods wait for the one listing them, while
        # the Deployments are read at the same time.
        self._locks = {kind: threading.Lock() for kind in self._listers}

    def items(self, kind: str) -> list[Any]:
        """Every object of `kind` in the namespace, as raw JSON (listed once until invalidated)."""
        with self._locks[kind]:
            if kind not in self._items:
                self._items[kind], _ = list_raw(self._listers[kind], self.namespace)
            return self._items[kind]

    def invalidate(self, *kinds: str) -> None:
        """Forget `kinds` (all kinds when none given) so they are listed again when next read."""
        for kind in kinds or tuple(self._listers):
            with self._locks[kind]:
                self._items.pop(kind, None)


class EventStream(threading.Thread):
    """Follow one list endpoint: list, then watch from its resourceVersion, forever.

    A dropped connection or an expired watch window resumes from the last resourceVersion seen;
    410 Gone (history compacted) lists again. Events go to `sink` as (tag, type, payload), where
    type "LIST" carries the full item list so the consumer can forget deleted objects.
    """

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        tag: str,
        sink: queue.Queue[tuple[str, str, Any]],
        stop: threading.Event,
        resource_version: str | None = None,
        **selectors: str,
    ) -> None:
        super().__init__(name=f"rollout-{tag}", daemon=True)
        self.list_fn, self.namespace, self.tag = list_fn, namespace, tag
        self.sink, self.stop, self.rv, self.selectors = (
            sink,
            stop,
            resource_version,
            selectors,
        )

    def run(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # a silent thread death would hang the waiter
            self.sink.put((self.tag, "BROKEN", exc))

    def _follow(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                if self.rv is None:
                    items, self.rv = list_raw(self.list_fn, self.namespace, **self.selectors)
                    self.sink.put((self.tag, "LIST", items))
                for event in self._watch():
                    failures = 0
                    self._forward(event)
                    if self.stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:
                    self.rv = None  # history is gone: list again
                    continue
                failures = self._retry_or_raise(exc, failures)
            except (OSError, HTTPError) as exc:  # dropped sockets, read timeouts
                failures = self._retry_or_raise(exc, failures)

    def _watch(self) -> Iterator[dict[str, Any]]:
        """One watch request, read line by line; an ERROR event becomes an ApiException.

        The client's own Watch cannot be used with raw JSON: with deserialize=False it breaks
        on ERROR events (it looks for a key only deserialized events have).
        """
        resp = self.list_fn(
            self.namespace,
            watch=True,
            _preload_content=False,
            resource_version=self.rv,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_WINDOW_S,
            _request_timeout=WATCH_WINDOW_S + 15,
            **self.selectors,
        )
        try:
            for line in iter_resp_lines(resp):
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiException(
                        status=status.get("code", 500),
                        reason=f"{status.get('reason')}: {status.get('message')}",
                    )
                yield event
        finally:
            resp.close()
            resp.release_conn()

    def _forward(self, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        self.rv = obj.get("metadata", {}).get("resourceVersion", self.rv)
        if event.get("type") != "BOOKMARK":
            self.sink.put((self.tag, event["type"], obj))

    def _retry_or_raise(self, exc: Exception, failures: int) -> int:
        """Back off and retry; only an answer that will not change by waiting is raised.

        An API server that restarts refuses connections and then answers 5xx for a while;
        the stream keeps trying (backing off up to 5 s) until the waiter stops it at its
        deadline, so a restart shorter than the deadline costs nothing but time.
        """
        if isinstance(exc, ApiException) and exc.status in (401, 403, 404):
            raise exc
        if failures == 0:
            self.sink.put((self.tag, "RETRYING", f"{type(exc).__name__}: {str(exc)[:200]}"))
        self.stop.wait(min(0.2 * 2**failures, 5.0))
        return failures + 1
