"""The release report as a person sees it, and nothing secret anywhere in the evidence.

Each test runs against two runs:

- ``release``: the real runbook (``pytest runbook --env local``) against the local stack,
  with a Secret planted in the namespace first; skipped with the reason while the stack's
  cluster is not Ready or the runbook does not exist yet.
- ``sample``: a small suite run through :class:`deploybook.plugin.evidence.EvidencePlugin` whose
  "stage" logs the registry password on purpose, as a careless build step would.

The single-file HTML is opened from ``file://`` in Debian's headless Chromium, in a network
namespace of its own (no server, no network: see ``tests/e2e/browser.py``); every request the page
makes is recorded and must be ``file:`` or ``data:``. A screenshot is kept next to the report and
attached when Allure is recording.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import Browser

from deploybook.evidence.bundle import searchable_contents

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Run:
    """A finished run folder, its bundle and the secret values planted before it ran."""

    run_dir: Path
    bundle: Path
    planted: dict[str, str]


# --------------------------------------------------------------------------- the sample run

SAMPLE_CONFTEST = """
import json
from pathlib import Path

import pytest

from deploybook.evidence.report import ReportFacts
from deploybook.plugin.evidence import EvidencePlugin

DIGESTS = {digests!r}
RUN_DIR = Path("{reports}") / "sample" / "{run_id}"
IMAGES = {{name: f"localhost:5000/dx29/{{name}}@{{digest}}" for name, digest in DIGESTS.items()}}


def pytest_configure(config):
    facts = ReportFacts("sample", "none", "dx29-sample", "unknown", "unknown", "{run_id}", IMAGES)
    plugin = EvidencePlugin(config, RUN_DIR, lambda: facts, project_root=Path("{repo}"))
    config.pluginmanager.register(plugin, "deploybook-evidence")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # What deploybook's release record is for a real release.
    services = {{n: {{"name": n, "ref": IMAGES[n], "digest": d}} for n, d in DIGESTS.items()}}
    for name in DIGESTS:
        services[name]["manifests"] = {{f"Deployment/dx29-{{name}}-deployment":
            f"kind: Deployment\\nimage: {{IMAGES[name]}}\\n"}}
    record = {{"run_id": "{run_id}", "environment": "sample", "services": services}}
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / "release.json").write_text(json.dumps(record))
"""

SAMPLE_SUITE = '''
import os
from pathlib import Path

import allure
import pytest

from deploybook.errors import CheckFailed


@pytest.mark.parametrize("service", ["gateway", "terms"])
def test_push(service):
    """Push the image; this careless step logs the login command with the password."""
    password = Path(os.environ["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text()
    with allure.step(f"docker login -u deploybook -p {{password}}"):
        allure.attach(f"docker login -u deploybook -p {{password}}\\nLogin Succeeded", name="push log")


def test_digest_terms():
    raise CheckFailed("image digest mismatch: running sha256:0, not the recorded digest", service="terms")


def test_endpoint_worker():
    pytest.skip("worker has no Service")
'''


def run_sample(base: Path) -> Run:
    """Run the sample suite in a subprocess (allure-pytest keeps global state)."""
    planted = {"registry password": f"planted-{secrets.token_hex(12)}"}
    password_file = base / "registry-password"
    password_file.write_text(planted["registry password"])
    digests = {name: "sha256:" + secrets.token_hex(32) for name in ("gateway", "terms")}
    suite = base / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(
        SAMPLE_CONFTEST.format(digests=digests, run_id="r1", reports=base / "reports", repo=REPO)
    )
    (suite / "test_sample.py").write_text(SAMPLE_SUITE.format())
    env = dict(os.environ, PYTHONPATH=str(REPO), DEPLOYBOOK_REGISTRY_PASSWORD_FILE=str(password_file))
    done = subprocess.run(
        [str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:deploybook", str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    run_dir = base / "reports" / "sample" / "r1"
    bundles = list(run_dir.glob("*.tar.gz"))
    assert done.returncode == 1 and len(bundles) == 1, done.stdout[-3000:] + done.stderr[-2000:]
    return Run(run_dir, bundles[0], planted)


# --------------------------------------------------------------------------- the real release


def stack_environment() -> dict[str, str]:
    """The variables ``stack/env`` exports (``export NAME='value'`` lines)."""
    out = subprocess.run([str(REPO / "stack" / "env")], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^export (\w+)='([^']*)'$", out, flags=re.MULTILINE))


def stack_not_ready() -> str | None:
    """Why a real release cannot run here, or None when it can."""
    if not (REPO / "runbook").is_dir():
        return "runbook/ does not exist yet"
    status = subprocess.run([str(REPO / "stack" / "status")], capture_output=True, text=True, check=False)
    if status.returncode != 0:
        down = [line.split()[0] for line in status.stdout.splitlines() if " down " in line]
        return f"local stack not Ready (down: {', '.join(down)}); run stack/up"
    return None


def plant_secret(env: dict[str, str], namespace: str, value: str) -> None:
    """Create Secret ``secret-appsettings`` holding ``value`` in the release namespace."""
    from kubernetes import client

    from deploybook.cluster.connect import connect

    kube = connect(context="deploybook-admin", kubeconfig=env["KUBECONFIG"])
    try:
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except client.ApiException as e:
        if e.status != 409:
            raise
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="secret-appsettings"),
        string_data={"appsettings.secret.json": json.dumps({"ApiKey": value})},
    )
    try:
        kube.core.create_namespaced_secret(namespace, body)
    except client.ApiException as e:
        if e.status != 409:
            raise
        kube.core.replace_namespaced_secret("secret-appsettings", namespace, body)


def run_release() -> Run:
    """``pytest runbook --env local`` for real, after planting a Secret value."""
    env = dict(os.environ, **stack_environment())
    planted = {
        "registry password": Path(env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip(),
        "Secret value": f"planted-secret-{secrets.token_hex(12)}",
    }
    plant_secret(env, "dx29-local", planted["Secret value"])
    latest = REPO / "reports" / "local" / "latest"
    before = latest.resolve() if latest.exists() else None
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "pytest"), "runbook", "--env", "local", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    tail = done.stdout[-4000:] + done.stderr[-2000:]
    assert latest.exists() and latest.resolve() != before, f"no new run in reports/local:\n{tail}"
    run_dir = latest.resolve()
    bundles = list(run_dir.glob("*.tar.gz"))
    assert len(bundles) == 1, f"no bundle in {run_dir}:\n{tail}"
    return Run(run_dir, bundles[0], planted)


@pytest.fixture(scope="module", params=["sample", "release"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A finished run with its report and bundle (see the module docstring)."""
    if request.param == "sample":
        yield run_sample(tmp_path_factory.mktemp("sample"))
        return
    reason = stack_not_ready()
    if reason:
        pytest.skip(reason)
    yield run_release()


# --------------------------------------------------------------------------- the browser


def junit_counts(path: Path) -> dict[str, int]:
    """Total, passed, not passed (failures and errors) and skipped from the JUnit XML."""
    cases = ET.parse(path).getroot().iter("testcase")
    counts = {"total": 0, "passed": 0, "not passed": 0, "skipped": 0}
    for case in cases:
        counts["total"] += 1
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            counts["not passed"] += 1
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


# The report's overview page, read as a person reads it: the widgets' text (the Environment
# widget after its "Show all" is clicked) and the status bars of the Suites widget.
WIDGETS = """Array.from(document.querySelectorAll('.widget')).map(function (w) {
  return [w.getAttribute('data-id'), w.innerText.replace(/\\s+/g, ' ')]; })"""
SHOW_ALL_ENVIRONMENT = """(function () {
  var w = document.querySelector('.widget[data-id=environment]');
  var more = w && Array.from(w.querySelectorAll('*')).find(function (e) {
    return e.childElementCount === 0 && e.textContent.trim() === 'Show all'; });
  if (more) { more.click(); }
  return Boolean(more); })()"""
SUITE_BARS = """Array.from(document.querySelectorAll('.widget[data-id=suites] [class*=bar__fill_status_]'))
  .map(function (e) { return [e.className.match(/bar__fill_status_(\\w+)/)[1], Number(e.textContent)]; })"""


def page_counts(widgets: dict[str, str], bars: list[list[object]]) -> dict[str, int]:
    """Total from the summary widget ("12 test cases"), statuses summed over the suite bars."""
    match = re.search(r"(\d+) test cases", widgets.get("summary", ""))
    assert match, f"no test case count on the page: {widgets}"
    found: dict[str, int] = {}
    for status, count in bars:
        found[str(status)] = found.get(str(status), 0) + int(str(count))
    return {
        "total": int(match.group(1)),
        "passed": found.get("passed", 0),
        "not passed": found.get("failed", 0) + found.get("broken", 0),
        "skipped": found.get("skipped", 0),
    }


def attach_screenshot(path: Path) -> None:
    """Attach to the Allure report of this test session when one is being recorded."""
    try:
        import allure

        allure.attach.file(str(path), name="report screenshot", attachment_type=allure.attachment_type.PNG)
    except Exception:  # no Allure listener in this session: the file on disk is the artifact
        pass


OUTSIDE_URL = re.compile(rb"""<[^>]+\s(?:src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def test_report_names_nothing_outside_itself(run: Run) -> None:
    """No tag of the HTML loads a script, style, font or image over http(s)."""
    html = (run.run_dir / "index.html").read_bytes()
    found = [m.group(0)[:120] for m in OUTSIDE_URL.finditer(html)]
    assert found == []


def test_report_opens_offline_and_shows_services_digests_and_counts(run: Run, tmp_path: Path) -> None:
    html = run.run_dir / "index.html"
    with Browser(tmp_path / "profile") as browser:
        visit = browser.visit(html.as_uri())
        browser.evaluate(SHOW_ALL_ENVIRONMENT)
        time.sleep(1.0)
        widgets = dict(browser.evaluate(WIDGETS))
        bars = browser.evaluate(SUITE_BARS)
        screenshot = browser.screenshot(run.run_dir / "report-screenshot.png")
    assert screenshot.stat().st_size > 20_000
    attach_screenshot(screenshot)
    elsewhere = [url[:120] for url in visit.requests if not url.startswith(("file:", "data:"))]
    assert elsewhere == [], "the report reached out of its own file"
    assert visit.failed == []

    record = json.loads((run.run_dir / "release.json").read_text())
    refs = {name: data["ref"] for name, data in record["services"].items() if data.get("ref")}
    assert refs, f"release.json of {run.run_dir} has no pushed image"
    environment = widgets.get("environment", "")
    for name, ref in refs.items():
        assert f"image.{name} {ref}" in environment, f"{name} {ref} not on the page: {environment[:1500]}"
    assert page_counts(widgets, bars) == junit_counts(run.run_dir / "junit.xml")


def secret_forms(planted: dict[str, str]) -> dict[bytes, str]:
    """Each planted value as it could be written: plain, base64, and in a registry auth."""
    forms: dict[bytes, str] = {}
    for label, value in planted.items():
        for form in (value, f"deploybook:{value}"):
            forms[form.encode()] = label
            forms[base64.b64encode(form.encode())] = f"{label} (base64)"
    return forms


def test_no_planted_secret_in_the_bundle_or_the_run_folder(run: Run, tmp_path: Path) -> None:
    unpacked = tmp_path / "bundle"
    with tarfile.open(run.bundle) as tar:
        tar.extractall(unpacked, filter="data")
    files = {f"bundle:{p.relative_to(unpacked)}": p.read_bytes() for p in unpacked.rglob("*") if p.is_file()}
    files |= {
        f"run:{p.relative_to(run.run_dir)}": p.read_bytes()
        for p in run.run_dir.rglob("*")
        if p.is_file() and p != run.bundle
    }
    assert any(name.endswith("index.html") for name in files) and len(files) > 10
    leaks = [
        f"{label} in {name}"
        for name, data in searchable_contents(files).items()
        for form, label in secret_forms(run.planted).items()
        if form in data
    ]
    assert leaks == []


def test_bundle_verifies(run: Run) -> None:
    done = subprocess.run(
        [str(PYTHON), "-m", "deploybook", "bundle", "verify", str(run.bundle)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")
