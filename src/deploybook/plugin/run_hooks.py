"""The hooks of a runbook or checks run: what happens when, once ``--env`` is given.

Registered by ``deploybook.plugin.hooks.pytest_configure`` for a run that collects
``runbook/`` (a release: the stages, then the checks) or ``checks/`` (the checks alone,
read-only), together with the fixtures (deploybook.plugin.fixtures); a project's own tests
never load it.

    configure                the run context (every local check: environment file, options,
                             branch rule, clean tree, --release); evidence, terminal
    pytest_sessionstart      the engine opens: first cluster contact, lock, manifests, preflight
    pytest_generate_tests    a test taking ``service`` runs once per service
    pytest_collection_modifyitems   stages in order, then the built-in checks, then the rest
    pytest_runtestloop       the pipeline starts with the tasks of the selected tests
    pytest_runtest_makereport   one line for deploybook errors; stage outcomes into the record
    pytest_sessionfinish     the engine closes: record, rollback, lock; the verdict line
    pytest_terminal_summary  the per-service summary
    pytest_unconfigure       the lock is given back even if the session never reached its end
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest

from deploybook.errors import DeploybookError
from deploybook.evidence.record import ReleaseRecord
from deploybook.plugin.evidence import EvidencePlugin, report_facts
from deploybook.plugin.fixtures import (  # noqa: F401  the fixtures are part of the plugin
    ENGINE,
    TERMINAL,
    docker_client,
    environment,
    kube,
    registry,
    registry_auth,
    release,
    service,
    status,
)
from deploybook.plugin.options import CHECKS_DIR, collect_checks_too
from deploybook.plugin.run_context import run_context
from deploybook.plugin.scheduling import chains_of, order, service_of, task_of
from deploybook.plugin.status_table import StatusTable
from deploybook.plugin.terminal import Terminal, release_summary
from deploybook.plugin.timings import Timings
from deploybook.release.context import RunContext
from deploybook.release.credentials import run_secrets
from deploybook.release.names import STAGES

CONTEXT = pytest.StashKey[RunContext]()
TIMINGS = pytest.StashKey[Timings]()
_FINISH_ERROR = pytest.StashKey[str]()


def configure(config: pytest.Config, mode: str) -> None:
    """Make the run's context; register the status table and the evidence."""
    timings = config.stash[TIMINGS] = Timings()
    timings.mark("configure")
    try:
        context = run_context(config, mode)
    except DeploybookError as e:
        raise pytest.UsageError(e.one_line()) from e
    config.stash[CONTEXT] = context
    terminal = config.stash[TERMINAL] = Terminal(config)
    _one_process(config, terminal)
    if mode == "runbook":
        collect_checks_too(config)
    config.pluginmanager.register(StatusTable(), "deploybook-status")
    evidence = EvidencePlugin(
        config,
        context.run_dir,
        lambda: report_facts(_context(config), _record(config)),
        on_phase=timings.mark,
        secrets=lambda: run_secrets(context.env),
    )
    config.pluginmanager.register(evidence, "deploybook-evidence")


def _one_process(config: pytest.Config, terminal: Terminal) -> None:
    """A run works on its services side by side in one process: pytest-xdist's workers are not used.

    Measured on 2 cores, worker start-up cost more than the parallel builds won (see the
    README's performance section), and one process keeps one lock, one watch and one record.
    """
    if getattr(config.option, "numprocesses", None):
        terminal.say(f"-n {config.option.numprocesses} ignored: the services of a run are worked on concurrently")
        config.option.numprocesses = 0
        config.option.dist = "no"
        config.option.tx = []


def _context(config: pytest.Config) -> RunContext:
    engine = config.stash.get(ENGINE, None)
    return engine.context if engine is not None else config.stash[CONTEXT]


def _record(config: pytest.Config) -> ReleaseRecord | None:
    engine = config.stash.get(ENGINE, None)
    return engine.record if engine is not None else None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Open the engine: the first cluster contact, after every local check passed."""
    config = session.config
    context = config.stash.get(CONTEXT, None)
    if context is None or config.option.collectonly:
        return
    # Imported here, not at the top: the Kubernetes and Docker clients take about half a
    # second to import, which --help, --collect-only and a project's own tests need not pay.
    from deploybook.release.release import Release

    terminal = config.stash[TERMINAL]
    engine = config.stash[ENGINE] = Release(context, say=terminal.say)
    context.run_dir.mkdir(parents=True, exist_ok=True)
    timings = config.stash[TIMINGS]
    timings.mark("session_start")
    if config.hook.pytest_deploybook_check_manifests.get_hookimpls():
        engine.manifest_rules = _manifest_rules(config, engine)
    try:
        engine.open()
    except DeploybookError as e:
        raise pytest.UsageError(e.one_line()) from e
    timings.mark("session_opened")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``service`` run once per service of the environment."""
    context = metafunc.config.stash.get(CONTEXT, None)
    if "service" not in metafunc.fixturenames or context is None:
        return
    params = [pytest.param(s, id=s.name) for s in context.env.services]
    metafunc.parametrize("service", params, indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stages by marker, then the built-in checks, then the other checks."""
    order(items, config.rootpath / CHECKS_DIR)
    if TIMINGS in config.stash:
        config.stash[TIMINGS].mark("collected")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Start the pipeline with the tasks of the tests that were selected, then run the tests."""
    config = session.config
    engine = config.stash.get(ENGINE, None)
    if engine is not None and not config.option.collectonly:
        if config.hook.pytest_deploybook_check_workload.get_hookimpls():
            engine.workload_rules = _workload_rules(config, engine)
        engine.start(chains_of(session.items))
    result = yield
    if TIMINGS in config.stash:
        config.stash[TIMINGS].mark("tests_done")
    return result


def _manifest_rules(config: pytest.Config, engine: Any) -> Any:
    """The team's pytest_deploybook_check_manifests implementations, as the preflight calls them."""

    def check(of: Any, objects: list[Any]) -> list[str]:
        answers = config.hook.pytest_deploybook_check_manifests(service=of, environment=engine.env, objects=objects)
        return [str(problem) for answer in answers for problem in answer or ()]

    return check


def _workload_rules(config: pytest.Config, engine: Any) -> Any:
    """The team's pytest_deploybook_check_workload implementations, as the engine calls them."""

    def check(workload: Any, of: Any) -> list[str]:
        answers = config.hook.pytest_deploybook_check_workload(
            workload=workload, service=of, environment=engine.env, kube=engine.clients.kube
        )
        return [str(problem) for answer in answers for problem in answer or ()]

    return check


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A check of a service whose stage failed is skipped with the failure (built-in or a team's)."""
    engine = item.config.stash.get(ENGINE, None)
    name = service_of(item)
    if engine is None or name is None or task_of(item) in STAGES:
        return
    blocked = engine.blocker(name)
    if blocked is not None:
        pytest.skip(f"{name}'s checks are skipped: {blocked}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Remember the running test, so a release interrupted by Ctrl-C says where it stopped."""
    engine = item.config.stash.get(ENGINE, None)
    if engine is not None:
        engine.running_test = item.nodeid
    result = yield
    if engine is not None:
        engine.running_test = None
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """One clean line for deploybook errors; each stage's outcome goes into the record."""
    report: pytest.TestReport = yield
    error = call.excinfo.value if call.excinfo else None
    if isinstance(error, DeploybookError) and report.failed:
        report.longrepr = error.one_line()
    engine = item.config.stash.get(ENGINE, None)
    name, task = service_of(item), task_of(item)
    if engine is not None and name is not None and task in STAGES and (report.when == "call" or not report.passed):
        engine.note_stage(name, task, report.outcome, report.duration, "" if report.passed else _short(report))
    return report


def _short(report: pytest.TestReport) -> str:
    text = str(getattr(report, "longreprtext", "") or report.longrepr or "")
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E ")]
    return (errors[0][2:].strip() if errors else (lines[-1] if lines else report.outcome))[:300]


def _outcome(exitstatus: int) -> str:
    if exitstatus == pytest.ExitCode.OK:
        return "passed"
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return "interrupted"
    return "failed"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the engine (record, rollback, lock) and say the verdict before the report is made."""
    config = session.config
    engine = config.stash.get(ENGINE, None)
    if engine is None or config.option.collectonly:
        return
    started = time.monotonic()
    try:
        record = engine.close(_outcome(int(exitstatus)))
        if record is not None:
            config.hook.pytest_deploybook_release_finished(record=record, run_dir=engine.context.run_dir)
    except DeploybookError as e:
        config.stash[_FINISH_ERROR] = e.one_line()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[TIMINGS].mark("closed")
    verdict = engine.record.outcome if engine.record is not None else _outcome(int(session.exitstatus))
    closed = time.monotonic() - started
    config.stash[TERMINAL].say(
        f"verdict: {verdict} ({engine.context.mode} {engine.context.run_id}; closed in {closed:.1f}s)"
    )
    config.stash[TIMINGS].mark("verdict")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The per-service outcome table and where the record is."""
    engine = config.stash.get(ENGINE, None)
    if engine is not None and engine.record is not None:
        release_summary(terminalreporter, engine.record, engine.env.service_names)
        terminalreporter.write_line(f"release record: {engine.context.run_dir / 'release.json'}", bold=True)
    error = config.stash.get(_FINISH_ERROR, None)
    if error:
        terminalreporter.write_line(f"release record FAILED: {error}", red=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the lock back even when the session never reached its end (e.g. Ctrl-C in setup)."""
    engine = config.stash.get(ENGINE, None)
    if engine is not None:
        engine.abandon()
        if engine.context.run_dir.is_dir():
            config.stash[TIMINGS].write(engine.context.run_dir, engine.pipeline)
