"""Release evidence from a pytest session: Allure results, JUnit XML, the report and the bundle.

:class:`EvidencePlugin` is registered in deploybook's ``pytest_configure``, before allure-pytest
and pytest's JUnit writer configure themselves, so it can point them into the run folder
(``RUN_DIR/allure-results``, ``RUN_DIR/junit.xml``). Allure's result files are kept during the
tests and written once the verdict is said (``deploybook.evidence.deferred_results``). At the
end of the session, after the release record is written, it builds the single-file report
(``deploybook.evidence.report``) and, for a release, packs the bundle
(``deploybook.evidence.bundle``), then prints both paths. A checks run writes no record of its
own and so has no bundle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from deploybook.config.model import Environment
from deploybook.errors import DeploybookError
from deploybook.evidence.bundle import create_bundle
from deploybook.evidence.deferred_results import DeferredResults
from deploybook.evidence.record import RECORD_FILE, ReleaseRecord
from deploybook.evidence.report import JUNIT_FILENAME, RESULTS_DIRNAME, ReportFacts, ReportGenerator, build_report
from deploybook.release.context import RunContext

__all__ = ["EvidencePlugin", "relaxed_policies", "report_facts"]


def report_facts(context: RunContext, record: ReleaseRecord | None) -> ReportFacts:
    """What the report's metadata block says: the run's own record, else the one it checked."""
    shown = record or context.source_record
    cluster = (record.cluster if record else {}) or {}
    git = context.git
    services = shown.services.items() if shown else ()
    return ReportFacts(
        environment=context.env.name,
        cluster=str(cluster.get("server") or context.env.cluster.context or "unknown"),
        namespace=context.env.cluster.namespace,
        branch=(git.branch or "(detached)") if git else "unknown",
        commit=git.commit if git else "unknown",
        release_id=context.run_id,
        images={name: s.ref for name, s in services if s.ref},
        sources={name: text for name, s in services if (text := where_from(s.source))},
        manifests=where_from(shown.manifest_source) if shown else "",
        extra={**_extra(shown), **_outside(record), **relaxed_policies(context.env)},
    )


def _outside(record: ReleaseRecord | None) -> dict[str, str]:
    """What the environment let this release write outside its namespace, listed by name."""
    if record is None or not record.outside_namespace:
        return {}
    return {"allowed.outside.namespace": ", ".join(record.outside_namespace)}


def relaxed_policies(env: Environment) -> dict[str, str]:
    """``policy.relaxed.SERVICE.POLICY`` -> the reason and where it is written, for the report."""
    return {f"policy.relaxed.{service}.{s.policy}": f"{s.reason} ({s.where})" for service, s in env.relaxed_policies()}


def where_from(source: Mapping[str, Any]) -> str:
    """A source as the report shows it: ``URL@REF commit`` or ``PATH commit``."""
    commit = str(source.get("commit") or "")
    if source.get("kind") == "git":
        return f"{source.get('url')}@{source.get('ref')} {commit} ({source.get('path', '.')})"
    if source.get("kind") == "service-source":
        commits = source.get("commits") or {}
        return f"each service's repository, {source.get('path')}/: " + ", ".join(
            f"{name} {str(c.get('commit', ''))[:12]}" for name, c in sorted(commits.items())
        )
    if source.get("kind") == "path":
        return f"{source.get('path')} {commit}{' (dirty)' if source.get('dirty') else ''}"
    return ""


def _extra(record: ReleaseRecord | None) -> dict[str, str]:
    """The promotion's proof, a rollback's manifests, and every image no service builds with
    where its digest came from, when the record has them."""
    if record is None:
        return {}
    extra = {
        f"third-party.{name}.{entry.get('container', '?')}": (
            f"{entry.get('written')} -> {entry.get('pinned')} "
            f"({entry.get('how', 'resolved')} at {entry.get('registry')})"
        )
        for name, service in sorted(record.services.items())
        for entry in service.third_party
    }
    if record.promoted_from:
        extra["promoted.from"] = f"{record.promoted_from}, proven by {record.promotion_proof or 'nothing'}"
    rolled = where_from(record.rollback.get("manifest_source") or {})
    if rolled:
        extra["rollback.manifests"] = rolled
    return extra


class EvidencePlugin:
    """Turns a finished run in ``run_dir`` into release evidence (see the module docstring).

    ``facts`` is asked at the end of the session, once the record is written.
    """

    def __init__(
        self,
        config: pytest.Config,
        run_dir: Path,
        facts: Callable[[], ReportFacts],
        *,
        project_root: Path | None = None,
        environ: Mapping[str, str] | None = None,
        bundle: bool = True,
        on_phase: Callable[[str], None] | None = None,
        secrets: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.facts = facts
        self.project_root = project_root or config.rootpath
        self.environ = os.environ if environ is None else environ
        self.bundle = bundle
        self.on_phase = on_phase or (lambda phase: None)
        self.secrets = secrets or (lambda: ())
        self.generator = ReportGenerator(self.project_root)
        self.html: Path | None = None
        self.archive: Path | None = None
        self.error: DeploybookError | None = None
        self.deferred: DeferredResults | None = None

    @property
    def results_dir(self) -> Path:
        """``RUN_DIR/allure-results``: where allure-pytest writes."""
        return self.run_dir / RESULTS_DIRNAME

    def pytest_configure(self, config: pytest.Config) -> None:
        """Point allure-pytest and the JUnit writer into the run folder unless the user did.

        This runs when the plugin is registered, inside deploybook's own ``pytest_configure``
        and so before allure-pytest's and junitxml's, which read these options;
        :meth:`pytest_sessionstart` checks that it took.
        """
        if not getattr(config.option, "allure_report_dir", None):
            config.option.allure_report_dir = str(self.results_dir)
        if not getattr(config.option, "xmlpath", None):
            config.option.xmlpath = str(self.run_dir / JUNIT_FILENAME)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Fail early when allure-pytest is not writing results: no evidence, no release."""
        if session.config.pluginmanager.get_plugin("allure_listener") is None:
            raise pytest.UsageError(
                "allure-pytest is not recording results: deploybook's EvidencePlugin was registered after "
                "allure-pytest configured itself; register it in pytest_configure (tryfirst) or pass "
                "--alluredir RUN_DIR/allure-results"
            )
        self.deferred = DeferredResults.install()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Load Allure's engine while the tests run: the report is then ready sooner after the verdict."""
        if not session.config.option.collectonly:
            self.generator.start()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write Allure's results, then build the report (and bundle): after everything else,
        the verdict and the release record included."""
        self._flush_results()
        if session.config.option.collectonly:
            return
        try:
            known = set(self.secrets())
            self.html = build_report(
                self.run_dir,
                self.facts(),
                self.environ,
                project_root=self.project_root,
                also=known,
                generator=self.generator,
            )
            self.on_phase("report")
            if self.bundle and (self.run_dir / RECORD_FILE).is_file():
                self.archive = create_bundle(self.run_dir, environ=self.environ, also=known)
                self.on_phase("bundle")
        except DeploybookError as e:
            self.error = e
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """End Allure's engine if no report was asked of it (a session stopped early); write
        the results kept for a session that never reached its end."""
        self._flush_results()
        self.generator.close()

    def _flush_results(self) -> None:
        if self.deferred is not None:
            self.deferred.flush()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print where the evidence is, or why there is none."""
        if self.error is not None:
            terminalreporter.write_line(f"release evidence FAILED: {self.error.one_line()}", red=True)
            return
        if self.html is not None:
            terminalreporter.write_line(f"report: {_display(self.html)}", bold=True)
        if self.archive is not None:
            terminalreporter.write_line(f"bundle: {_display(self.archive)}", bold=True)


def _display(path: Path) -> str:
    """``path`` relative to the working directory when below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
