"""Allure's result files written after the verdict instead of one by one during the tests.

allure-pytest writes a test's files (its result, its fixtures' containers, what it attached)
the moment the test ends, on the thread that runs the tests: at 100 services, 1,800 files,
each made of a fresh uuid, a dict of the result and a JSON dump, before the next test starts.
:class:`DeferredResults` stands in for allure-pytest's file logger during the session and
keeps what it is given; :meth:`DeferredResults.flush` hands it all to that logger, unchanged
and in order, once the verdict is said and before the report is made from the files. The
command still ends only after every file is written; what moves is the verdict.

Attached text (a rollout's timeline, a check's details) is kept the same way; an attached file
is copied at once, as before, since its source may be gone by the end of the session. After
``flush`` the logger is itself again and writes as it always does.
"""

from __future__ import annotations

import threading
from typing import Any

import allure_commons
from allure_commons.logger import AllureFileLogger

__all__ = ["DeferredResults"]


class DeferredResults:
    """Keeps allure's reports until :meth:`flush`, then gives them to the file logger it replaced."""

    def __init__(self, logger: AllureFileLogger, name: str | None = None) -> None:
        self.logger = logger
        self._name = name  # the logger's name in allure's plugin manager, given back on flush
        self._kept: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._flushed = False

    @classmethod
    def install(cls) -> DeferredResults | None:
        """Stand in for allure-pytest's file logger; None when it has none (no results asked)."""
        loggers = [p for p in allure_commons.plugin_manager.get_plugins() if isinstance(p, AllureFileLogger)]
        if len(loggers) != 1:
            return None
        logger = loggers[0]
        deferred = cls(logger, allure_commons.plugin_manager.get_name(logger))
        allure_commons.plugin_manager.unregister(logger)
        allure_commons.plugin_manager.register(deferred)
        return deferred

    def flush(self) -> None:
        """Write everything kept, in the order it came, and put the file logger back."""
        with self._lock:
            if self._flushed:
                return
            self._flushed = True
            kept, self._kept = self._kept, []
        # Back under its own name, so allure-pytest's clean-up finds it as it registered it.
        allure_commons.plugin_manager.unregister(self)
        allure_commons.plugin_manager.register(self.logger, name=self._name)
        for hook, kwargs in kept:
            self._write(hook, **kwargs)

    def _keep(self, hook: str, **kwargs: Any) -> None:
        with self._lock:
            if not self._flushed:
                self._kept.append((hook, kwargs))
                return
        self._write(hook, **kwargs)  # reported from another thread during the flush

    def _write(self, hook: str, **kwargs: Any) -> None:
        getattr(self.logger, hook)(**kwargs)

    @allure_commons.hookimpl
    def report_result(self, result: Any) -> None:
        self._keep("report_result", result=result)

    @allure_commons.hookimpl
    def report_container(self, container: Any) -> None:
        self._keep("report_container", container=container)

    @allure_commons.hookimpl
    def report_globals(self, globals_item: Any) -> None:
        self._keep("report_globals", globals_item=globals_item)

    @allure_commons.hookimpl
    def report_attached_data(self, body: Any, file_name: str) -> None:
        self._keep("report_attached_data", body=body, file_name=file_name)

    @allure_commons.hookimpl
    def report_attached_file(self, source: Any, file_name: str) -> None:
        self._write("report_attached_file", source=source, file_name=file_name)
