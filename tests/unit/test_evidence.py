"""Release evidence: Allure metadata, categories, secrets, history and the HTML report.

The pure parts are tested directly; the plugin runs a small suite through ``pytester`` in a
subprocess (allure-pytest keeps global state) with the real pinned Allure 3 generating HTML.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from deploybook.errors import EvidenceError
from deploybook.evidence import report as evidence
from deploybook.evidence import secrets
from deploybook.evidence.bundle import report_payloads

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32
FACTS = evidence.ReportFacts(
    environment="local",
    cluster="https://127.0.0.1:6443",
    namespace="app-ingress",
    branch="main",
    commit="0123456789abcdef",
    release_id="20260101T000000Z-abc123",
    images={"web": f"localhost:5000/dx29/web@{DIGEST}", "api": f"localhost:5000/dx29/api@{DIGEST}"},
)
needs_allure = pytest.mark.skipif(
    not (REPO / "node_modules/.bin/allure").exists(), reason="Allure 3 not installed: run `npm ci`"
)


def read_properties(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_environment_properties_escape_separators_and_list_images_sorted(tmp_path: Path) -> None:
    path = evidence.write_environment_properties(tmp_path, FACTS)
    lines = read_properties(path)
    assert lines[:3] == ["environment=local", r"cluster=https\://127.0.0.1\:6443", "namespace=app-ingress"]
    assert "release.id=20260101T000000Z-abc123" in lines
    assert lines[-2:] == [
        rf"image.api=localhost\:5000/dx29/api@sha256\:{'ab' * 32}",
        rf"image.web=localhost\:5000/dx29/web@sha256\:{'ab' * 32}",
    ]


@pytest.mark.parametrize(
    ("environ", "name", "url"),
    [
        (
            {
                "GITHUB_RUN_ID": "77",
                "GITHUB_RUN_NUMBER": "5",
                "GITHUB_SERVER_URL": "https://github.example",
                "GITHUB_REPOSITORY": "org/app",
                "GITHUB_WORKFLOW": "release",
            },
            "GitHub Actions",
            "https://github.example/org/app/actions/runs/77",
        ),
        (
            {
                "BUILD_BUILDID": "901",
                "SYSTEM_COLLECTIONURI": "https://dev.example/org/",
                "SYSTEM_TEAMPROJECT": "dx29",
                "BUILD_DEFINITIONNAME": "deploy",
                "BUILD_BUILDNUMBER": "20260101.1",
            },
            "Azure Pipelines",
            "https://dev.example/org/dx29/_build/results?buildId=901",
        ),
        (
            {
                "GITLAB_CI": "true",
                "CI_PIPELINE_ID": "31",
                "CI_PROJECT_NAME": "app",
                "CI_JOB_URL": "https://gitlab.example/app/-/jobs/8",
            },
            "GitLab CI",
            "https://gitlab.example/app/-/jobs/8",
        ),
    ],
)
def test_executor_comes_from_the_ci_variables(environ: dict[str, str], name: str, url: str) -> None:
    info = evidence.executor_info(environ, release_id="r1")
    assert (info["name"], info["buildUrl"]) == (name, url)
    assert info["buildName"]


def test_executor_outside_ci_is_local_with_the_release_id() -> None:
    info = evidence.executor_info({"HOME": "/root"}, release_id="r1")
    assert info == {"name": "local", "type": "local", "url": "", "buildName": "release r1", "buildUrl": ""}


def first_category(message: str) -> str | None:
    """The category Allure would pick: the first rule whose regex matches the whole message."""
    for rule in evidence.categories():
        if re.fullmatch(rule["messageRegex"], message):
            return str(rule["name"])
    return None


@pytest.mark.parametrize(
    ("message", "category"),
    [
        ("AssertionError: image digest mismatch (recorded digest from this run):", "Digest mismatches"),
        ("deploybook.errors.RolloutFailed: [service api] CrashLoopBackOff\nlast log lines", "Rollout failures"),
        ("AssertionError: dx29-api has no ready endpoints\nassert 0 > 0", "Endpoint failures"),
        ("deploybook.errors.PolicyError: branch feature/x may not release to test", "Policy refusals"),
        ("deploybook.errors.LockHeld: held by run 42", "Policy refusals"),
        ("requests.exceptions.ConnectionError: localhost:5000 refused", "Infrastructure problems"),
        ("deploybook.errors.PushError: push of api failed", "Infrastructure problems"),
        ("AssertionError: 1 == 2", None),
    ],
)
def test_categories_sort_failures_by_kind(message: str, category: str | None) -> None:
    assert first_category(message) == category


def test_categories_apply_to_failed_and_broken_only() -> None:
    assert all(rule["matchedStatuses"] == ["failed", "broken"] for rule in evidence.categories())


def test_known_secret_values_from_variables_and_files(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("file-held-password\n")
    environ = {
        "REGISTRY_PASSWORD": "env-held-password",
        "API_TOKEN": "tok-123456",
        "DEPLOYBOOK_REGISTRY_PASSWORD_FILE": str(password_file),
        "SHORT_PASSWORD": "abc",
        "HOME": "/root-not-a-secret",
        "MISSING_TOKEN_FILE": str(tmp_path / "nope"),
    }
    assert secrets.known_secret_values(environ) == {"env-held-password", "tok-123456", "file-held-password"}


def test_known_secret_values_include_what_the_run_resolved() -> None:
    assert secrets.known_secret_values({}, ["git-password-from-helper", "abc"]) == {"git-password-from-helper"}


def test_environment_properties_name_the_sources_and_the_manifests_commit(tmp_path: Path) -> None:
    facts = dataclasses.replace(
        FACTS,
        sources={"api": "https://git.example/dx29-api.git@main " + "c" * 40 + " (.)"},
        manifests="https://git.example/dx29-env-test.git@main " + "d" * 40 + " (manifests)",
        extra={"promoted.from": "r1, proven by test's record"},
    )
    lines = read_properties(evidence.write_environment_properties(tmp_path, facts))
    assert rf"manifests=https\://git.example/dx29-env-test.git@main {'d' * 40} (manifests)" in lines
    assert lines[-1] == rf"source.api=https\://git.example/dx29-api.git@main {'c' * 40} (.)"
    assert "promoted.from=r1, proven by test's record" in lines


def test_scrub_secrets_blanks_plain_and_base64_forms(tmp_path: Path) -> None:
    secret = "s3cret-value-42"
    attachment = tmp_path / "a-attachment.txt"
    attachment.write_text(f"docker login -p {secret}\ndata: {base64.b64encode(secret.encode()).decode()}\n")
    untouched = tmp_path / "b-result.json"
    untouched.write_text('{"status": "passed"}')
    changed = secrets.scrub_secrets(tmp_path, {secret})
    assert changed == [attachment]
    text = attachment.read_text()
    assert secret not in text and base64.b64encode(secret.encode()).decode() not in text
    assert text.count(secrets.REDACTED) == 2


def test_history_is_carried_from_latest_and_latest_moves(tmp_path: Path) -> None:
    first, second = tmp_path / "r1", tmp_path / "r2"
    first.mkdir(), second.mkdir()
    (first / evidence.HISTORY_FILENAME).write_text('{"uuid": "r1"}\n')
    evidence.point_latest(first)
    carried = evidence.carry_history(tmp_path, second)
    assert carried.read_text() == '{"uuid": "r1"}\n'
    evidence.point_latest(second)
    link = tmp_path / evidence.LATEST_LINK
    assert link.is_symlink() and link.readlink() == Path("r2")


def test_no_history_on_the_first_run(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    run.mkdir()
    assert not evidence.carry_history(tmp_path, run).exists()


def test_missing_allure_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError) as caught:
        evidence.generate_html(tmp_path, tmp_path, report_name="x", history_file=None, project_root=tmp_path)
    assert "npm ci" in str(caught.value) and "package.json" in str(caught.value)


def _one_result(results: Path) -> None:
    results.mkdir(parents=True)
    result = {"uuid": "u1", "historyId": "h1", "name": "test_build[api]", "status": "passed", "start": 1, "stop": 2}
    (results / "u1-result.json").write_text(json.dumps(result))


@needs_allure
def test_a_generator_started_ahead_writes_one_self_contained_page(tmp_path: Path) -> None:
    generator = evidence.ReportGenerator(REPO)
    generator.start()
    _one_result(tmp_path / "results")

    html = evidence.generate_html(
        tmp_path / "results",
        tmp_path,
        report_name="deploybook t release r1",
        history_file=None,
        project_root=REPO,
        generator=generator,
    )

    page = html.read_text()
    assert "deploybook t release r1" in page and "googletagmanager" not in page
    assert not (tmp_path / ".allure-html").exists()


@needs_allure
def test_a_generator_never_asked_ends_with_the_session(tmp_path: Path) -> None:
    generator = evidence.ReportGenerator(REPO)
    generator.start()
    process = generator._process
    assert process is not None and process.poll() is None

    generator.close()

    assert process.returncode == 0


@needs_allure
def test_a_generator_that_died_before_it_was_asked_is_started_again(tmp_path: Path) -> None:
    generator = evidence.ReportGenerator(REPO)
    generator.start()
    assert generator._process is not None
    generator._process.kill()
    generator._process.wait()
    _one_result(tmp_path / "results")

    html = evidence.generate_html(
        tmp_path / "results", tmp_path, report_name="again", history_file=None, project_root=REPO, generator=generator
    )

    assert "again" in html.read_text()


@needs_allure
def test_the_generator_is_out_of_the_terminals_process_group() -> None:
    generator = evidence.ReportGenerator(REPO)
    generator.start()
    assert generator._process is not None
    try:
        assert os.getpgid(generator._process.pid) == generator._process.pid != os.getpgrp()
    finally:
        generator.close()


@needs_allure
def test_allure_failing_is_one_error_with_what_it_printed(tmp_path: Path) -> None:
    _one_result(tmp_path / "results")
    (tmp_path / "run").write_text("a file where the run folder should be")
    with pytest.raises(EvidenceError) as caught:
        evidence.generate_html(
            tmp_path / "results", tmp_path / "run", report_name="x", history_file=None, project_root=REPO
        )
    message = str(caught.value)
    assert "allure generate exited 1" in message and "ENOTDIR" in message and "by hand" in message


def test_no_node_on_path_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "node_modules/.bin").mkdir(parents=True)
    (tmp_path / "node_modules/.bin/allure").touch()
    monkeypatch.setattr(evidence.shutil, "which", lambda name: None)
    with pytest.raises(EvidenceError, match="node is not on PATH"):
        evidence.generate_html(tmp_path, tmp_path, report_name="x", history_file=None, project_root=tmp_path)


# --------------------------------------------------------------------------- plugin via pytester

CONFTEST = """
from pathlib import Path

from deploybook.evidence.report import ReportFacts
from deploybook.plugin.evidence import EvidencePlugin

REPORTS = Path({reports!r})
PROJECT = Path({project!r})  # where npm ci installed the pinned Allure


def pytest_configure(config):
    # What deploybook.plugin.run_hooks does: the evidence plugin, told where the run folder is.
    run_id = config.getoption("--run-id")
    images = {{name: f"localhost:5000/dx29/{{name}}@{digest}" for name in ("api", "web")}}
    facts = ReportFacts("local", "https://10.244.0.1:6443", "app-ingress", "main", "0" * 40, run_id, images)
    plugin = EvidencePlugin(config, REPORTS / "local" / run_id, lambda: facts, bundle=False, project_root=PROJECT)
    config.pluginmanager.register(plugin, "deploybook-evidence")


def pytest_addoption(parser):
    parser.addoption("--run-id")
"""

SUITE = '''
import allure
from deploybook.errors import CheckFailed, RolloutFailed


def test_build_api():
    """Build the api image from its context."""
    with allure.step("docker build"):
        allure.attach("Step 1/2 : FROM scratch", name="build log")


def test_rollout_web():
    raise RolloutFailed(kind="Deployment", namespace="app-ingress", name="dx29-web-deployment",
                        cause="CrashLoopBackOff", detail="exited with code 1", service="web")


def test_digest_api():
    raise CheckFailed("image digest mismatch: running sha256:1, recorded sha256:2", service="api")
'''


def run_suite(pytester: pytest.Pytester, reports: Path, run_id: str, suite: str = SUITE) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.format(reports=str(reports), digest=DIGEST, project=str(REPO)))
    pytester.makepyfile(test_release=suite)
    return pytester.runpytest_subprocess("--run-id", run_id, "-p", "no:cacheprovider", "-p", "no:deploybook")


@needs_allure
def test_plugin_writes_report_junit_metadata_and_history(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    reports = tmp_path / "reports"
    first = run_suite(pytester, reports, "r1")
    first.assert_outcomes(passed=1, failed=2)
    run_dir = reports / "local" / "r1"
    first.stdout.fnmatch_lines([f"report: {run_dir / 'index.html'}"])
    assert (run_dir / "junit.xml").read_text().count("<testcase") == 3
    results = run_dir / "allure-results"
    assert len(list(results.glob("*-result.json"))) == 3
    props = read_properties(results / "environment.properties")
    assert rf"image.api=localhost\:5000/dx29/api@sha256\:{'ab' * 32}" in props
    assert "release.id=r1" in props

    payloads = report_payloads((run_dir / "index.html").read_bytes())
    categories = payloads["widgets/categories.json"].decode()
    assert "Rollout failures" in categories and "Digest mismatches" in categories
    stats = json.loads(payloads["widgets/summary.json"])["statistic"]
    assert (stats["total"], stats["passed"], stats["broken"]) == (3, 1, 2)
    assert len(json.loads(payloads["widgets/history-trend.json"])) == 1

    second = run_suite(pytester, reports, "r2")
    second.assert_outcomes(passed=1, failed=2)
    assert (reports / "local" / "latest").readlink() == Path("r2")
    assert len((reports / "local" / "r2" / "history.jsonl").read_text().splitlines()) == 2
    # With the first run's history carried over, the trend shows both runs.
    trend = report_payloads((reports / "local" / "r2" / "index.html").read_bytes())["widgets/history-trend.json"]
    assert [point["data"]["total"] for point in json.loads(trend)] == [3, 3]


DEFERRED_SUITE = """
from pathlib import Path

import allure

RESULTS = Path({results!r})


def test_first():
    allure.attach("kept until the verdict", name="log")


def test_the_first_is_not_on_disk_yet():
    # allure-pytest alone would have written test_first's result and attachment by now.
    assert sorted(p.name for p in RESULTS.iterdir()) == []
"""


@needs_allure
def test_allure_results_are_written_after_the_tests_every_one(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    reports = tmp_path / "reports"
    results = reports / "local" / "r1" / "allure-results"
    run = run_suite(pytester, reports, "r1", DEFERRED_SUITE.format(results=str(results)))
    run.assert_outcomes(passed=2)
    written = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    assert sorted(r["name"] for r in written) == ["test_first", "test_the_first_is_not_on_disk_yet"]
    attached = [a["source"] for r in written for a in r.get("attachments", [])]
    assert [(results / name).read_text() for name in attached] == ["kept until the verdict"]
    assert (reports / "local" / "r1" / "index.html").is_file()


def test_the_report_names_each_image_no_service_builds_and_where_its_digest_came_from() -> None:
    from deploybook.evidence.record import ReleaseRecord, ServiceRecord
    from deploybook.plugin.evidence import _extra

    digest = "sha256:" + "e" * 64
    entry = {"container": "cache", "written": "localhost:5000/vendor/cache:7", "how": "tag resolved"}
    entry |= {"registry": "localhost:5000", "digest": digest, "pinned": f"localhost:5000/vendor/cache@{digest}"}
    record = ReleaseRecord(
        "r1", "t", "ns", "passed", "", "", services={"api": ServiceRecord("api", third_party=(entry,))}
    )
    assert _extra(record)["third-party.api.cache"] == (
        f"localhost:5000/vendor/cache:7 -> localhost:5000/vendor/cache@{digest} (tag resolved at localhost:5000)"
    )


def test_the_report_lists_every_relaxed_policy_with_its_reason_and_line(tmp_path: Path) -> None:
    from deploybook.config.environment import parse_environment
    from deploybook.plugin.evidence import relaxed_policies

    text = (
        "cluster: {context: c, namespace: ns}\nregistry: {address: r.example}\nbranch: {name: null}\n"
        "manifests: {path: m}\n"
        "services:\n  - name: api\n    context: a\n    image: app/api\n    manifest: api.yaml\n"
        "    policies: {non_root: {enforce: false, reason: vendor image runs as root}}\n"
    )
    env = parse_environment(text, file=tmp_path / "x.yaml", name="x", root=tmp_path)
    assert relaxed_policies(env) == {"policy.relaxed.api.non_root": f"vendor image runs as root ({tmp_path}/x.yaml:10)"}
