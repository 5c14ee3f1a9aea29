"""Release evidence: Allure metadata, history, the single-file HTML report and the bundle.

:class:`EvidencePlugin` is registered by :mod:`deploybook.plugin.hooks` once the run state exists.
It points allure-pytest at ``RUN_DIR/allure-results`` and pytest's JUnit writer at
``RUN_DIR/junit.xml``; at the end of the session (controller only, never on xdist workers) it

1. writes ``environment.properties`` (environment, cluster, namespace, branch, commit,
   release id and one ``image.SERVICE`` line per pushed image), ``executor.json`` (the CI
   run, from the CI's own variables) and ``categories.json`` into the results folder;
2. blanks out known secret values in the results, a last line of defence behind the stages;
3. carries ``history.jsonl`` over from ``reports/ENV/latest`` so trends show;
4. runs Allure 3 (``node_modules/.bin/allure``, installed by ``npm ci``) with the allure2
   plugin's ``singleFile`` option and ``ALLURE_NO_ANALYTICS=true``: one self-contained
   ``RUN_DIR/index.html`` that loads nothing from anywhere else;
5. points ``reports/ENV/latest`` at this run, packs the release bundle and prints both paths.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploybook.errors import DeploybookError
from deploybook.evidence.record import RECORD_FILE, read_fragments
from deploybook.release.state import FRAGMENTS, RUN_STATE, RunState

RESULTS_DIRNAME = "allure-results"
JUNIT_FILENAME = "junit.xml"
HTML_FILENAME = "index.html"
HISTORY_FILENAME = "history.jsonl"
LATEST_LINK = "latest"
ALLURE_CONFIG = Path(__file__).with_name("allurerc.mjs")  # package data
MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"

_FAILING = ["failed", "broken"]
# One rule per category, matched on the exception text allure-pytest records
# ("module.ClassName: message"). Order matters: the first match wins. `[\s\S]*` instead of
# an inline (?s) flag because the same pattern must work in Java (Allure 2) and JavaScript.
_CATEGORY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("Policy refusals", r"PolicyError|LockHeld"),
    ("Digest mismatches", r"ImageDigestMismatch|[Dd]igest mismatch|imageID"),
    ("Rollout failures", r"RolloutFailed|CrashLoopBackOff|ImagePullBackOff|ErrImagePull|ProgressDeadlineExceeded"),
    ("Endpoint failures", r"EndpointNotReady|[Ee]ndpoint"),
    (
        "Infrastructure problems",
        r"ClusterError|ApplyError|RenderError|RegistryError|PushError|BuildError|GitError"
        r"|ConfigError|RecordError|ConnectionError|ConnectionRefused|TimeoutError|MaxRetryError"
        r"|ApiException|DockerException|APIError|SSLError",
    ),
)


class EvidenceError(DeploybookError):
    """The release evidence could not be produced (Allure missing or failing, bad folder)."""


@dataclass(frozen=True)
class ReportFacts:
    """What the report's metadata block says about the release."""

    environment: str
    cluster: str
    namespace: str
    branch: str
    commit: str
    release_id: str
    images: Mapping[str, str] = field(default_factory=dict)

    def properties(self) -> dict[str, str]:
        """Key/value pairs for ``environment.properties``, images last and sorted."""
        pairs = {
            "environment": self.environment,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "branch": self.branch,
            "commit": self.commit,
            "release.id": self.release_id,
        }
        pairs.update({f"image.{name}": ref for name, ref in sorted(self.images.items())})
        return pairs


# --------------------------------------------------------------------------- metadata files


def _escape_property(text: str) -> str:
    """Java properties escaping: backslash, separators and line breaks."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return re.sub(r"([:=#!])", r"\\\1", out)


def write_environment_properties(results_dir: Path, facts: ReportFacts) -> Path:
    """Write ``environment.properties`` shown as the report's metadata block."""
    lines = [f"{_escape_property(k)}={_escape_property(v)}" for k, v in facts.properties().items()]
    path = results_dir / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def executor_info(environ: Mapping[str, str], *, release_id: str) -> dict[str, Any]:
    """The CI run that produced the report, from GitHub, Azure Pipelines or GitLab variables.

    Outside CI the executor is ``local`` with the release id as build name, so the report
    still says where it came from.
    """
    env = environ
    if env.get("GITHUB_RUN_ID"):
        repo_url = f"{env.get('GITHUB_SERVER_URL', '')}/{env.get('GITHUB_REPOSITORY', '')}"
        run_url = f"{repo_url}/actions/runs/{env['GITHUB_RUN_ID']}"
        return _executor(
            "GitHub Actions",
            "github",
            repo_url,
            env.get("GITHUB_RUN_NUMBER"),
            f"{env.get('GITHUB_WORKFLOW', 'workflow')} #{env.get('GITHUB_RUN_NUMBER', '')}",
            run_url,
        )
    if env.get("BUILD_BUILDID"):
        project = f"{env.get('SYSTEM_COLLECTIONURI', '')}{env.get('SYSTEM_TEAMPROJECT', '')}"
        run_url = f"{project}/_build/results?buildId={env['BUILD_BUILDID']}"
        return _executor(
            "Azure Pipelines",
            "azure",
            project,
            env["BUILD_BUILDID"],
            f"{env.get('BUILD_DEFINITIONNAME', 'pipeline')} {env.get('BUILD_BUILDNUMBER', '')}",
            run_url,
        )
    if env.get("GITLAB_CI") or env.get("CI_PIPELINE_ID"):
        return _executor(
            "GitLab CI",
            "gitlab",
            env.get("CI_PROJECT_URL", ""),
            env.get("CI_PIPELINE_IID") or env.get("CI_PIPELINE_ID"),
            f"{env.get('CI_PROJECT_NAME', 'pipeline')} #{env.get('CI_PIPELINE_ID', '')}",
            env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL", ""),
        )
    return _executor("local", "local", "", None, f"release {release_id}", "")


def _executor(name: str, kind: str, url: str, order: str | None, build_name: str, build_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": name,
        "type": kind,
        "url": url,
        "buildName": build_name.strip(),
        "buildUrl": build_url,
    }
    if order and order.isdigit():
        info["buildOrder"] = int(order)
    return info


def categories() -> list[dict[str, Any]]:
    """Allure categories for deploybook's failure kinds, in Allure 2 ``categories.json`` form."""
    return [
        {"name": name, "matchedStatuses": _FAILING, "messageRegex": rf"[\s\S]*({pattern})[\s\S]*"}
        for name, pattern in _CATEGORY_PATTERNS
    ]


def write_metadata(results_dir: Path, facts: ReportFacts, environ: Mapping[str, str]) -> None:
    """Write environment.properties, executor.json and categories.json into the results."""
    results_dir.mkdir(parents=True, exist_ok=True)
    write_environment_properties(results_dir, facts)
    executor = executor_info(environ, release_id=facts.release_id)
    (results_dir / "executor.json").write_text(json.dumps(executor, indent=2), encoding="utf-8")
    (results_dir / "categories.json").write_text(json.dumps(categories(), indent=2), encoding="utf-8")


# --------------------------------------------------------------------------- secrets

_SECRET_VALUE_SUFFIXES = ("_PASSWORD", "_TOKEN", "_SECRET", "_API_KEY")
_SECRET_FILE_SUFFIXES = ("_PASSWORD_FILE", "_TOKEN_FILE", "_SECRET_FILE")


def known_secret_values(environ: Mapping[str, str]) -> set[str]:
    """Secret values this process can know: ``*_PASSWORD``/``*_TOKEN``/``*_SECRET`` variables
    and the contents of files named by ``*_PASSWORD_FILE``-style variables.

    Short values are left out: blanking a three-letter word everywhere would ruin the report
    and protect nothing.
    """
    values: set[str] = set()
    for name, value in environ.items():
        upper = name.upper()
        if upper.endswith(_SECRET_FILE_SUFFIXES):
            value = _read_secret_file(value)
        elif not upper.endswith(_SECRET_VALUE_SUFFIXES):
            continue
        if len(value.strip()) >= MIN_SECRET_LENGTH:
            values.add(value.strip())
    return values


def _read_secret_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def secret_forms(values: Iterable[str]) -> list[bytes]:
    """Each secret as it may appear on disk: plain and base64 (Kubernetes Secret data)."""
    forms: set[bytes] = set()
    for value in values:
        raw = value.encode("utf-8")
        forms.update({raw, base64.b64encode(raw)})
    # Longest first so a value never leaves a tail of a longer one behind.
    return sorted(forms, key=len, reverse=True)


def scrub_secrets(folder: Path, values: Iterable[str]) -> list[Path]:
    """Replace known secret values in every file under ``folder``; return the files changed."""
    forms = secret_forms(values)
    changed: list[Path] = []
    if not forms:
        return changed
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if _replace_forms(path, forms):
            changed.append(path)
    return changed


def _replace_forms(path: Path, forms: list[bytes]) -> bool:
    data = path.read_bytes()
    cleaned = data
    for form in forms:
        cleaned = cleaned.replace(form, REDACTED.encode())
    if cleaned != data:
        path.write_bytes(cleaned)
    return cleaned != data


# --------------------------------------------------------------------------- history and HTML


def carry_history(env_reports_dir: Path, run_dir: Path) -> Path:
    """Copy ``latest/history.jsonl`` into this run's folder; Allure appends this run to it."""
    target = run_dir / HISTORY_FILENAME
    previous = env_reports_dir / LATEST_LINK / HISTORY_FILENAME
    if previous.is_file() and previous.resolve() != target.resolve():
        shutil.copyfile(previous, target)
    return target


def allure_command(project_root: Path) -> Path:
    """The project's pinned Allure 3 (``npm ci`` of its package.json); a clear error without it."""
    binary = project_root / "node_modules" / ".bin" / "allure"
    if not binary.exists():
        raise EvidenceError(
            f"Allure 3 is not installed ({binary} is missing)",
            source=str(project_root / "package.json"),
            hint=f"run `npm ci` in {project_root} (`deploybook init` writes the package.json that pins it)",
        )
    return binary


def generate_html(
    results_dir: Path,
    run_dir: Path,
    *,
    report_name: str,
    history_file: Path | None,
    project_root: Path,
    timeout_s: float = 300.0,
) -> Path:
    """Run Allure 3 on ``results_dir`` and leave one self-contained ``run_dir/index.html``.

    Allure writes into a staging folder first: it owns its output folder, and the run folder
    holds other evidence (release.json, manifests) that must not be touched.
    """
    staging = run_dir / ".allure-html"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        str(allure_command(project_root)),
        "generate",
        str(results_dir),
        "-o",
        str(staging),
        "--config",
        str(ALLURE_CONFIG),
    ]
    env = dict(
        os.environ,
        DEPLOYBOOK_REPORT_NAME=report_name,
        DEPLOYBOOK_ALLURE_RESULTS=str(results_dir),
        DEPLOYBOOK_ALLURE_HISTORY=str(history_file) if history_file else "",
        ALLURE_NO_ANALYTICS="true",  # evidence calls no one: no analytics script in the page
    )
    try:
        done = subprocess.run(
            command, cwd=project_root, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise EvidenceError(f"allure generate took longer than {timeout_s:.0f}s", source=str(results_dir)) from e
    html = staging / HTML_FILENAME
    if done.returncode != 0 or not html.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise EvidenceError(
            f"allure generate exited {done.returncode} without {HTML_FILENAME}: " + " | ".join(tail),
            source=str(results_dir),
            hint="run the command by hand: " + " ".join(command),
        )
    for produced in staging.iterdir():
        if produced.is_file():
            os.replace(produced, run_dir / produced.name)
    shutil.rmtree(staging, ignore_errors=True)
    return run_dir / HTML_FILENAME


def point_latest(run_dir: Path) -> Path:
    """Make ``reports/ENV/latest`` a relative symlink to ``run_dir``, replaced atomically."""
    link = run_dir.parent / LATEST_LINK
    temporary = run_dir.parent / f".{LATEST_LINK}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(temporary, link)
    return link


def build_report(run_dir: Path, facts: ReportFacts, environ: Mapping[str, str], *, project_root: Path) -> Path:
    """Metadata, secret scrub, history, HTML and the ``latest`` link for one finished run."""
    results_dir = run_dir / RESULTS_DIRNAME
    write_metadata(results_dir, facts, environ)
    secrets = known_secret_values(environ)
    scrub_secrets(results_dir, secrets)
    junit = run_dir / JUNIT_FILENAME
    if junit.is_file():
        _replace_forms(junit, secret_forms(secrets))
    history = carry_history(run_dir.parent, run_dir)
    html = generate_html(
        results_dir,
        run_dir,
        report_name=f"deploybook {facts.environment} release {facts.release_id}",
        history_file=history,
        project_root=project_root,
    )
    point_latest(run_dir)
    return html


# --------------------------------------------------------------------------- run state


def facts_from_state(state: RunState) -> ReportFacts:
    """Report facts of a run: ``release.json`` when the record is written, else the state."""
    record = _read_json(state.run_dir / RECORD_FILE)
    services, extras = read_fragments(state.run_dir) if (state.run_dir / FRAGMENTS).is_dir() else ({}, {})
    merged = {
        **{name: r.to_dict() for name, r in services.items()},
        **{name: r.to_dict() for name, r in state.results.items() if r.ref},
    }
    merged.update(record.get("services", {}) if isinstance(record.get("services"), dict) else {})
    cluster = record.get("cluster") or extras.get("cluster") or {}
    git = state.git
    return ReportFacts(
        environment=state.env.name,
        cluster=str(cluster.get("server") or state.env.cluster.context or "unknown"),
        namespace=state.env.cluster.namespace,
        branch=(git.branch or "(detached)") if git else "unknown",
        commit=git.commit if git else "unknown",
        release_id=state.run_id,
        images={name: str(data["ref"]) for name, data in merged.items() if isinstance(data, dict) and data.get("ref")},
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- pytest plugin


class EvidencePlugin:
    """Turns a finished run into release evidence (see the module docstring).

    Registered by :mod:`deploybook.plugin.hooks` after ``config.stash[RUN_STATE]`` is set, on the
    controller and on xdist workers alike; only the controller builds the report.
    """

    def __init__(
        self,
        config: pytest.Config,
        *,
        project_root: Path | None = None,
        environ: Mapping[str, str] | None = None,
        bundle: bool = True,
    ) -> None:
        self.config = config
        self.project_root = project_root or config.rootpath
        self.environ = os.environ if environ is None else environ
        self.bundle = bundle
        self.html: Path | None = None
        self.archive: Path | None = None
        self.error: DeploybookError | None = None

    @property
    def state(self) -> RunState:
        """The run state the plugin reports on."""
        return self.config.stash[RUN_STATE]

    @property
    def results_dir(self) -> Path:
        """``RUN_DIR/allure-results``: where allure-pytest writes."""
        return self.state.run_dir / RESULTS_DIRNAME

    def pytest_configure(self, config: pytest.Config) -> None:
        """Point allure-pytest and the JUnit writer into the run folder unless the user did.

        This runs when the plugin is registered, which is inside deploybook's own
        ``pytest_configure`` and so before allure-pytest's and junitxml's, which read these
        options; :meth:`pytest_sessionstart` checks that it took.
        """
        if not getattr(config.option, "allure_report_dir", None):
            config.option.allure_report_dir = str(self.results_dir)
        if not getattr(config.option, "xmlpath", None):
            config.option.xmlpath = str(self.state.run_dir / JUNIT_FILENAME)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Fail early when allure-pytest is not writing results: no evidence, no release."""
        if session.config.pluginmanager.get_plugin("allure_listener") is None:
            raise pytest.UsageError(
                "allure-pytest is not recording results: deploybook.evidence.report.EvidencePlugin was "
                "registered after allure-pytest configured itself; register it from "
                "deploybook.plugin.hooks's pytest_configure or pass --alluredir RUN_DIR/allure-results"
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Build the report (and bundle) after everything else, the release record included."""
        if hasattr(session.config, "workerinput") or session.config.option.collectonly:
            return
        try:
            facts = facts_from_state(self.state)
            self.html = build_report(self.state.run_dir, facts, self.environ, project_root=self.project_root)
            # A checks-only run writes no release record of its own, so it has no bundle.
            if self.bundle and (self.state.run_dir / RECORD_FILE).is_file():
                from deploybook.evidence.bundle import create_bundle  # late: bundle imports this module

                self.archive = create_bundle(self.state.run_dir, environ=self.environ)
        except DeploybookError as e:
            self.error = e
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

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
