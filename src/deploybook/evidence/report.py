"""The release report: Allure metadata, history and the single-file HTML.

``build_report`` turns a finished run's results (``RUN_DIR/allure-results``, written by
allure-pytest, and ``RUN_DIR/junit.xml``) into the report. It

1. writes ``environment.properties`` (environment, cluster, namespace, branch, commit,
   release id, the manifests' source and commit, one ``image.SERVICE`` line per pushed image
   and one ``source.SERVICE`` line naming its code and commit), ``executor.json`` (the CI
   run, from the CI's own variables) and ``categories.json`` into the results folder;
2. blanks out known secret values in the results, a last line of defence behind the stages;
3. carries ``history.jsonl`` over from ``reports/ENV/latest`` so trends show;
4. runs Allure 3 (the project's ``node_modules/allure``, installed by ``npm ci``; its engine
   loaded ahead by `ReportGenerator`) with the allure2 plugin's ``singleFile`` option and
   ``ALLURE_NO_ANALYTICS=true``: one self-contained ``RUN_DIR/index.html`` that loads nothing
   from anywhere else;
5. points ``reports/ENV/latest`` at this run.

The pytest side (pointing allure-pytest into the run folder, calling this at the end of the
session, the bundle) is ``deploybook.plugin.evidence``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deploybook.errors import EvidenceError
from deploybook.evidence.secrets import known_secret_values, replace_forms, scrub_secrets, secret_forms

RESULTS_DIRNAME = "allure-results"
JUNIT_FILENAME = "junit.xml"
HTML_FILENAME = "index.html"
HISTORY_FILENAME = "history.jsonl"
LATEST_LINK = "latest"
ALLURE_CONFIG = Path(__file__).with_name("allurerc.mjs")  # package data
GENERATOR = Path(__file__).with_name("generate.mjs")  # package data
_FAILED = "allure generate failed: "  # how generate.mjs begins its line when Allure throws

_FAILING = ["failed", "broken"]
# One rule per category, matched on the exception text allure-pytest records
# ("module.ClassName: message"). Order matters: the first match wins. `[\s\S]*` instead of
# an inline (?s) flag because the same pattern must work in Java (Allure 2) and JavaScript.
_CATEGORY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("Policy refusals", r"PolicyError|LockHeld"),
    ("Digest mismatches", r"[Dd]igest mismatch|imageID"),
    ("Rollout failures", r"RolloutFailed|CrashLoopBackOff|ImagePullBackOff|ErrImagePull|ProgressDeadlineExceeded"),
    ("Endpoint failures", r"EndpointNotReady|[Ee]ndpoint"),
    (
        "Infrastructure problems",
        r"ClusterError|ApplyError|RenderError|RegistryError|PushError|BuildError|GitError"
        r"|ConfigError|RecordError|ConnectionError|ConnectionRefused|TimeoutError|MaxRetryError"
        r"|ApiException|DockerException|APIError|SSLError",
    ),
)


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
    sources: Mapping[str, str] = field(default_factory=dict)  # service -> where its code is, at which commit
    manifests: str = ""  # where the manifests were read, at which commit
    extra: Mapping[str, str] = field(default_factory=dict)  # promotion proof, rollback source

    def properties(self) -> dict[str, str]:
        """Key/value pairs for ``environment.properties``; images and sources last, sorted."""
        pairs = {
            "environment": self.environment,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "branch": self.branch,
            "commit": self.commit,
            "release.id": self.release_id,
        }
        if self.manifests:
            pairs["manifests"] = self.manifests
        pairs.update(self.extra)
        pairs.update({f"image.{name}": ref for name, ref in sorted(self.images.items())})
        pairs.update({f"source.{name}": text for name, text in sorted(self.sources.items())})
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


class ReportGenerator:
    """Allure 3's report engine, loaded before the report is due.

    Importing the engine is most of what ``allure generate`` spends (about 0.8 s of 1 s on 2
    cores). `start` runs ``node evidence/generate.mjs`` while the release is still running; it
    imports the project's pinned engine and waits, and `generate` then hands it the results,
    which it reads and writes as ``allure generate RESULTS -o OUT --config allurerc.mjs`` does.
    A generator never started is started by `generate`; one never used is ended by `close`.
    """

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def start(self) -> None:
        """Start loading the engine; a problem here is left for `generate` to report."""
        try:
            self._spawn()
        except (EvidenceError, OSError):
            self.close()

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self._process is not None:
            return self._process
        allure_command(self.project_root)  # the pinned Allure is installed, or a clear error
        node = shutil.which("node")
        if node is None:
            raise EvidenceError(
                "node is not on PATH; Allure 3 runs on it",
                source=str(self.project_root / "package.json"),
                hint="install Node.js 20 or later (Debian: apt-get install nodejs)",
            )
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (read and closed by generate and close)
        self._process = subprocess.Popen(
            [node, str(GENERATOR), str(self.project_root / "node_modules" / "allure")],
            cwd=self.project_root,
            env=dict(os.environ, ALLURE_NO_ANALYTICS="true"),  # evidence calls no one: no analytics script
            stdin=subprocess.PIPE,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            process_group=0,  # Ctrl-C at the terminal interrupts the release, not its report
        )
        return self._process

    def generate(
        self, results_dir: Path, output: Path, *, report_name: str, history_file: Path | None, timeout_s: float
    ) -> None:
        """Generate the report of ``results_dir`` into ``output``; EvidenceError if Allure fails."""
        if self._process is not None and self._process.poll() is not None:
            self.close()  # it ended before it was asked (killed, or its import failed): start anew
        process = self._spawn()
        job = {
            "cwd": str(self.project_root),
            "config": str(ALLURE_CONFIG),
            "results": str(results_dir),
            "output": str(output),
            "env": {
                "DEPLOYBOOK_REPORT_NAME": report_name,
                "DEPLOYBOOK_ALLURE_RESULTS": str(results_dir),
                "DEPLOYBOOK_ALLURE_HISTORY": str(history_file) if history_file else "",
            },
        }
        try:
            process.communicate((json.dumps(job) + "\n").encode(), timeout=timeout_s)
            if process.returncode != 0:
                printed = self._printed().splitlines()
                said = [line.removeprefix(_FAILED) for line in printed if line.startswith(_FAILED)]  # generate.mjs's
                raise EvidenceError(
                    f"allure generate exited {process.returncode}: " + " | ".join(said[-1:] or printed[-5:]),
                    source=str(results_dir),
                    hint=f"run it by hand in {self.project_root}: DEPLOYBOOK_ALLURE_RESULTS={results_dir} "
                    f"node_modules/.bin/allure generate {results_dir} -o {output} --config {ALLURE_CONFIG}",
                )
        except subprocess.TimeoutExpired as e:
            raise EvidenceError(f"allure generate took longer than {timeout_s:.0f}s", source=str(results_dir)) from e
        finally:
            self.close()

    def _printed(self) -> str:
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode("utf-8", errors="replace").strip()

    def close(self) -> None:
        """End the engine if it still waits (stdin closed: it exits with nothing to do)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._output is not None:
            self._output.close()
            self._output = None


def generate_html(
    results_dir: Path,
    run_dir: Path,
    *,
    report_name: str,
    history_file: Path | None,
    project_root: Path,
    generator: ReportGenerator | None = None,
    timeout_s: float = 300.0,
) -> Path:
    """Run Allure 3 on ``results_dir`` and leave one self-contained ``run_dir/index.html``.

    ``generator`` is one started ahead (`ReportGenerator.start`); without it one starts now.
    Allure writes into a staging folder first: it owns its output folder, and the run folder
    holds other evidence (release.json, manifests) that must not be touched.
    """
    staging = run_dir / ".allure-html"
    shutil.rmtree(staging, ignore_errors=True)
    generator = generator or ReportGenerator(project_root)
    generator.generate(results_dir, staging, report_name=report_name, history_file=history_file, timeout_s=timeout_s)
    html = staging / HTML_FILENAME
    if not html.is_file():
        raise EvidenceError(f"allure generate wrote no {HTML_FILENAME}", source=str(results_dir))
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


def build_report(
    run_dir: Path,
    facts: ReportFacts,
    environ: Mapping[str, str],
    *,
    project_root: Path,
    also: Iterable[str] = (),
    generator: ReportGenerator | None = None,
) -> Path:
    """Metadata, secret scrub, history, HTML and the ``latest`` link for one finished run.

    ``also`` are secret values the run knows besides those of ``environ``; ``generator`` is
    Allure's engine started ahead (see `ReportGenerator`)."""
    results_dir = run_dir / RESULTS_DIRNAME
    write_metadata(results_dir, facts, environ)
    secrets = known_secret_values(environ, also)
    scrub_secrets(results_dir, secrets)
    junit = run_dir / JUNIT_FILENAME
    if junit.is_file():
        replace_forms(junit, secret_forms(secrets))
    history = carry_history(run_dir.parent, run_dir)
    html = generate_html(
        results_dir,
        run_dir,
        report_name=f"deploybook {facts.environment} release {facts.release_id}",
        history_file=history,
        project_root=project_root,
        generator=generator,
    )
    point_latest(run_dir)
    return html
