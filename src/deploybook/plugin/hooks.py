"""The deploybook pytest plugin: options, run state, stage ordering and dependency skips.

Registered for this repository by the top-level ``conftest.py``. A run collecting
``runbook/`` or ``checks/`` needs ``--env``; everything that can be checked without a
cluster (environment file, options, branch rule, clean tree, promotion record) is checked
in ``pytest_configure`` so bad input stops with one ``ERROR:`` line before any cluster
contact. The lock is taken in ``pytest_sessionstart`` and released at the end of the
session whatever happened; the release record is merged and written at session finish.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from deploybook.config.environment import Environment, known_environments, load_environment
from deploybook.errors import DeploybookError, RecordError
from deploybook.evidence.record import ReleaseRecord, load_file
from deploybook.plugin.fixtures import (  # noqa: F401  fixtures are part of the plugin
    docker_client,
    environment,
    kube,
    progress,
    registry,
    registry_auth,
    release,
    resolve_registry_auth,
    service,
)
from deploybook.release import policy
from deploybook.release.session import (
    SOURCE_RECORD_FILE,
    finish_release,
    print_release_summary,
    release_held_lock,
    start_release,
)
from deploybook.release.state import RUN_STATE, STAGES, RunState, new_run_id
from deploybook.sources.git import repo_state

RUNBOOK_DIR = "runbook"
CHECKS_DIR = "checks"
_WORKER_RUN_ID = "deploybook_run_id"
_WORKER_STARTED = "deploybook_started"
_WORKER_SOURCE = "deploybook_source_record"
_WORKER_LOADGROUP = "deploybook_loadgroup"


def pytest_addoption(parser: pytest.Parser) -> None:
    """All deploybook options, in one group."""
    group = parser.getgroup("deploybook", "deploybook release runbook")
    group.addoption(
        "--env",
        dest="deploybook_env",
        metavar="NAME",
        default=None,
        help="environment to release to or check: environments/NAME.yaml (required for runbook/ and checks/)",
    )
    group.addoption(
        "--dry-run",
        dest="deploybook_dry_run",
        action="store_true",
        default=False,
        help="change nothing: build and render, then server-side dry-run and diff",
    )
    group.addoption(
        "--from-stage",
        dest="deploybook_from_stage",
        metavar="STAGE",
        choices=STAGES,
        default=None,
        help=f"resume a release at STAGE ({', '.join(STAGES)}); earlier stages take their outputs from --release",
    )
    group.addoption(
        "--release",
        dest="deploybook_release",
        metavar="FILE",
        default=None,
        help="a release.json: the release to resume (--from-stage), the test release "
        "to promote (prod), or what checks expect to be running",
    )
    group.addoption(
        "--kube-context",
        dest="deploybook_kube_context",
        metavar="NAME",
        default=None,
        help="kubeconfig context to use instead of the environment's (e.g. a read-only context for checks)",
    )
    group.addoption(
        "--confirm-prod",
        dest="deploybook_confirm_prod",
        action="store_true",
        default=False,
        help="confirm a release to a deploy-only (production) environment",
    )
    group.addoption(
        "--take-over-lock",
        dest="deploybook_take_over_lock",
        action="store_true",
        default=False,
        help="take over the environment lock of a release that stopped renewing it (expired), "
        "or of a dead process on this host; a live holder is never displaced",
    )
    group.addoption(
        "--rollback-on-failure",
        dest="deploybook_rollback",
        action="store_true",
        default=False,
        help="when the release fails, restore the last passed release of the environment "
        "and prove its digests run again (outcome rolled-back)",
    )
    group.addoption(
        "--reports-dir",
        dest="deploybook_reports_dir",
        metavar="DIR",
        default="reports",
        help="where run folders go: DIR/ENV/RUN_ID (default: reports)",
    )


def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n``, distribute by ``xdist_group`` so each service's stages stay on one worker."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("no", "load"):
        config.option.dist = "loadgroup"


def release_mode(config: pytest.Config) -> str | None:
    """``"runbook"`` when the run collects ``runbook/``, ``"checks"`` for ``checks/``, else None."""
    root = config.rootpath
    runbook, checks = root / RUNBOOK_DIR, root / CHECKS_DIR
    mode = None
    for arg in _arg_paths(config):
        if runbook.is_dir() and _overlaps(arg, runbook):
            return "runbook"
        if checks.is_dir() and _overlaps(arg, checks):
            mode = "checks"
    return mode


def _arg_paths(config: pytest.Config) -> list[Path]:
    base = config.invocation_params.dir
    return [(base / str(arg).split("::")[0]).resolve() for arg in config.args]


def _overlaps(arg: Path, directory: Path) -> bool:
    return arg == directory or directory in arg.parents or arg in directory.parents


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Declare markers; for a release run load the environment, check policy, set run state."""
    config.addinivalue_line("markers", "stage(name): the release stage of a runbook test: " + ", ".join(STAGES))
    if getattr(config, "workerinput", {}).get(_WORKER_LOADGROUP):
        config.option.loadgroup = True
    mode = release_mode(config)
    if mode is None:
        return
    try:
        state = _new_state(config, mode)
    except DeploybookError as e:
        raise pytest.UsageError(e.one_line()) from e
    config.stash[RUN_STATE] = state
    if mode == "runbook":
        _collect_checks_too(config)
    _register_evidence(config)
    _register_status_table(config)


def _new_state(config: pytest.Config, mode: str) -> RunState:
    opt = config.option
    env = _load_env(config)
    run_id = getattr(config, "workerinput", {}).get(_WORKER_RUN_ID) or new_run_id()
    reports = Path(opt.deploybook_reports_dir)
    reports = reports if reports.is_absolute() else config.rootpath / reports
    state = RunState(
        env=env,
        run_id=run_id,
        run_dir=reports / env.name / run_id,
        mode=mode,
        dry_run=opt.deploybook_dry_run,
        from_stage=opt.deploybook_from_stage,
        confirm_prod=opt.deploybook_confirm_prod,
        take_over_lock=opt.deploybook_take_over_lock,
        rollback_on_failure=opt.deploybook_rollback,
    )
    started = getattr(config, "workerinput", {}).get(_WORKER_STARTED)
    if started:
        state.started = started
    if mode == "checks":
        state.source_record = _load_release_option(config, required=False)
        return state
    state.git = repo_state(config.rootpath)
    state.source_record = _source_record(config, env)
    policy.check_branch(env, state.git)
    policy.check_clean_tree(env, state.git)
    # Without --release, a confirmed promotion reads the test record from the cluster in
    # pytest_sessionstart (the first cluster contact) and is checked there.
    if env.promote_from and (state.source_record is not None or not state.confirm_prod):
        policy.check_promotion(env, state.source_record, confirmed=state.confirm_prod)
    # Resolved after the rules (a refusal by them says more), before any cluster contact, and
    # again by the registry_auth fixture: the secret is never kept in the run state. A
    # deferred promotion check resolves them in pytest_sessionstart, before the lock.
    if not (env.promote_from and state.source_record is None):
        resolve_registry_auth(env)
    state.prefill_from_record()
    return state


def _load_env(config: pytest.Config) -> Environment:
    name = config.option.deploybook_env
    directory = config.rootpath / "environments"
    if not name:
        known = ", ".join(known_environments(directory)) or "none found"
        raise pytest.UsageError(
            f"--env NAME is required to run {RUNBOOK_DIR}/ or {CHECKS_DIR}/ (known environments: {known})"
        )
    return load_environment(name, directory)


def _load_release_option(config: pytest.Config, *, required: bool) -> ReleaseRecord | None:
    path = config.option.deploybook_release
    if not path:
        if required:
            raise pytest.UsageError("--from-stage needs --release FILE: the release.json to resume from")
        return None
    return load_file(Path(config.invocation_params.dir, path))


def _source_record(config: pytest.Config, env: Environment) -> ReleaseRecord | None:
    opt = config.option
    handed_over = getattr(config, "workerinput", {}).get(_WORKER_SOURCE)
    if handed_over:
        return load_file(handed_over)
    record = _load_release_option(config, required=bool(opt.deploybook_from_stage))
    if record is None or env.promote_from is not None:
        return record
    if not opt.deploybook_from_stage:
        raise pytest.UsageError("--release on a non-promoting environment is only used with --from-stage")
    if record.environment != env.name:
        raise RecordError(
            f"release {record.run_id} was made on {record.environment!r}, not {env.name!r}",
            source=opt.deploybook_release,
            hint="resume with a release.json of this environment",
        )
    return record


def _collect_checks_too(config: pytest.Config) -> None:
    """``pytest runbook`` also runs the post-deploy checks, ordered after every stage."""
    root = config.rootpath
    paths = _arg_paths(config)
    checks = root / CHECKS_DIR
    if checks.is_dir() and root / RUNBOOK_DIR in paths and not any(_overlaps(p, checks) for p in paths):
        config.args.append(str(checks))


def _register_status_table(config: pytest.Config) -> None:
    """The end-of-run status table; registered here because an xdist controller never loads
    ``checks/conftest.py`` (it collects nothing), which registers it otherwise."""
    from deploybook.plugin.status_table import StatusTable

    if not config.pluginmanager.has_plugin("deploybook-status"):
        config.pluginmanager.register(StatusTable(), "deploybook-status")


def _register_evidence(config: pytest.Config) -> None:
    try:
        from deploybook.evidence.report import EvidencePlugin
    except ImportError:  # the evidence module is optional for the engine itself
        return
    if not config.pluginmanager.has_plugin("deploybook-evidence"):
        config.pluginmanager.register(EvidencePlugin(config), "deploybook-evidence")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand the controller's run id to every xdist worker, so all write into one run folder."""
    # A worker parses only the command line: "-n N" alone would leave it without loadgroup.
    node.workerinput[_WORKER_LOADGROUP] = getattr(node.config.option, "dist", "no") == "loadgroup"
    state = node.config.stash.get(RUN_STATE, None)
    if state is not None:
        node.workerinput[_WORKER_RUN_ID] = state.run_id
        node.workerinput[_WORKER_STARTED] = state.started
        source = state.run_dir / SOURCE_RECORD_FILE
        if state.source_record is not None and source.is_file():
            node.workerinput[_WORKER_SOURCE] = str(source)


def pytest_sessionstart(session: pytest.Session) -> None:
    """On the controller of a real release: contact the cluster, check promotion, take the lock."""
    config = session.config
    state = config.stash.get(RUN_STATE, None)
    if state is None or hasattr(config, "workerinput") or config.option.collectonly:
        return
    state.run_dir.mkdir(parents=True, exist_ok=True)
    if state.mode != "runbook":
        return
    try:
        start_release(config, state)
    except DeploybookError as e:
        raise pytest.UsageError(e.one_line()) from e


def _stage_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("stage")
    return str(marker.args[0]) if marker and marker.args else None


def service_of(item: pytest.Item) -> str | None:
    """Name of the service a test is parametrized with, if any."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    svc = params.get("service")
    return getattr(svc, "name", svc) if svc is not None else None


def _is_check(item: pytest.Item) -> bool:
    return item.config.rootpath / CHECKS_DIR in Path(str(item.path)).parents


def _rank(item: pytest.Item) -> int:
    stage = _stage_of(item)
    if stage is not None:
        if stage not in STAGES:
            raise pytest.UsageError(f"{item.nodeid}: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        return STAGES.index(stage)
    return len(STAGES) if _is_check(item) else -1


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order by stage marker, then the checks; a stable sort keeps services in file order."""
    if any(_rank(i) >= 0 for i in items):
        items.sort(key=_rank)


def _distributing_by_group(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") == "loadgroup" or bool(getattr(config.option, "loadgroup", False))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n``, one work unit per service: its stages and checks run in order on one worker.

    xdist 3.8 renames grouped items through an attribute pytest 9 no longer reads, so the
    ``xdist_group`` marks alone would not keep a service together; the scheduler therefore
    derives the group from the test id, which is the service name.
    """
    state = config.stash.get(RUN_STATE, None)
    if state is None or not _distributing_by_group(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    services = set(state.env.service_names)

    class ServiceScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):
                return nodeid.rsplit("@", 1)[-1]
            param = nodeid[nodeid.rfind("[") + 1 : -1] if nodeid.endswith("]") else ""
            return f"service-{param}" if param in services else nodeid

    return ServiceScheduling(config, log)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``service`` run once per service of the environment.

    Under ``-n`` each service's tests form one ``xdist_group``, so its stages run in order
    on one worker while services run side by side. The mark is set here, when the items
    are made, because xdist reads it in its own collection hook.
    """
    state = metafunc.config.stash.get(RUN_STATE, None)
    if "service" not in metafunc.fixturenames or state is None:
        return
    grouped = _distributing_by_group(metafunc.config)
    params = [
        pytest.param(s, id=s.name, marks=[pytest.mark.xdist_group(name=f"service-{s.name}")] if grouped else [])
        for s in state.env.services
    ]
    metafunc.parametrize("service", params, indirect=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a service's later stages once one failed; skip stages a resumed release already did."""
    state = item.config.stash.get(RUN_STATE, None)
    name = service_of(item)
    if state is None or name is None:
        if state is not None and _is_check(item) and hasattr(item.config, "workerinput"):
            _wait_for_apply(item, state)
        return
    stage = _stage_of(item)
    if stage and state.from_stage and STAGES.index(stage) < STAGES.index(state.from_stage):
        source = state.source_record.run_id if state.source_record else "?"
        pytest.skip(f"{name}: resumed at {state.from_stage}; {stage} output taken from release {source}")
    blocked = state.failure(name)
    if blocked is not None:
        pytest.skip(f"{name}: {blocked[0]} failed, so this is skipped ({blocked[1]})")


def _wait_for_apply(item: pytest.Item, state: RunState) -> None:
    """On an xdist worker, a release-wide check waits until every service's apply has ended."""
    services = {service_of(i) for i in item.session.items if _stage_of(i) == "apply"} - {None}
    deadline = time.monotonic() + state.env.timeouts.rollout + state.env.timeouts.build
    while time.monotonic() < deadline:
        from deploybook.evidence.record import read_fragments

        done, _ = read_fragments(state.run_dir)
        if all(s in done and "apply" in done[s].stages for s in services):
            return
        time.sleep(1.0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Remember the running test, so a release interrupted by Ctrl-C says where it stopped."""
    state = item.config.stash.get(RUN_STATE, None)
    if state is not None:
        state.running_test = item.nodeid
    result = yield
    if state is not None:
        state.running_test = None
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """One clean line for deploybook errors; remember stage outcomes and failures per service."""
    report: pytest.TestReport = yield
    error = call.excinfo.value if call.excinfo else None
    if isinstance(error, DeploybookError) and report.failed:
        report.longrepr = error.one_line()
    state = item.config.stash.get(RUN_STATE, None)
    name, stage = service_of(item), _stage_of(item)
    if state is None or name is None:
        return report
    if report.failed and stage:
        # Only a failed stage blocks what depends on it; a failed check blocks nothing.
        reason = error.one_line() if isinstance(error, DeploybookError) else _short(report)
        state.mark_failed(name, stage, reason)
    if stage and (report.when == "call" or not report.passed):
        outcome = report.outcome
        state.record_stage(name, stage, outcome, report.duration, "" if report.passed else _short(report))
    return report


def _short(report: pytest.TestReport) -> str:
    text = str(getattr(report, "longreprtext", "") or report.longrepr or "")
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E ")]
    return (errors[0][2:].strip() if errors else (lines[-1] if lines else report.outcome))[:300]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Controller: merge fragments into release.json, store it in the cluster, free the lock."""
    config = session.config
    state = config.stash.get(RUN_STATE, None)
    if state is None or hasattr(config, "workerinput") or config.option.collectonly:
        return
    if state.mode != "runbook":
        return
    try:
        finish_release(config, state, exitstatus)
    except DeploybookError as e:
        session.config.stash[_FINISH_ERROR] = e.one_line()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_FINISH_ERROR = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The per-service outcome table and where the record is."""
    state = config.stash.get(RUN_STATE, None)
    if state is None or hasattr(config, "workerinput") or state.mode != "runbook":
        return
    print_release_summary(terminalreporter, state)
    error = config.stash.get(_FINISH_ERROR, None)
    if error:
        terminalreporter.write_line(f"release record FAILED: {error}", red=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Release the lock even when the session never reached its end (e.g. Ctrl-C in setup)."""
    release_held_lock(config)
