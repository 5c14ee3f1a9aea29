"""The release bundle: what goes in, SHA256SUMS, verification naming the bad file, secrets."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from deploybook import cli
from deploybook.errors import EvidenceError
from deploybook.evidence import bundle

DIGEST = "sha256:" + "cd" * 32
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dx29-api-deployment\n"


def fake_report(payloads: dict[str, bytes]) -> bytes:
    """A stand-in for the single-file report with data embedded the way Allure 3 does."""
    calls = ",".join(f'd("{name}","{base64.b64encode(data).decode()}")' for name, data in payloads.items())
    return f"<html><script>{calls}</script></html>".encode()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished run folder: report, summary, release record with rendered manifests, JUnit."""
    run = tmp_path / "reports" / "local" / "20260101T000000Z-abc123"
    run.mkdir(parents=True)
    (run / "index.html").write_bytes(fake_report({"widgets/statistic.json": b'{"total": 1}'}))
    (run / "summary.json").write_text('{"stats": {"total": 1}}')
    (run / "junit.xml").write_text('<testsuites><testsuite tests="1"/></testsuites>')
    (run / "allure-results").mkdir()
    record = {
        "run_id": run.name,
        "environment": "local",
        "services": {"api": {"digest": DIGEST, "manifests": {"Deployment/dx29-api-deployment": DEPLOYMENT}}},
    }
    (run / "release.json").write_text(json.dumps(record))
    return run


def members(archive: Path) -> dict[str, bytes]:
    return bundle.read_bundle(archive)


def rewrite(archive: Path, change: dict[str, bytes | None]) -> None:
    """Rewrite ``archive`` with some files changed (bytes), removed (None) or added."""
    files = members(archive)
    for path, data in change.items():
        if data is None:
            files.pop(path)
        else:
            files[path] = data
    with tarfile.open(archive, "w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"top/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bundle_holds_the_evidence_and_its_sums(run_dir: Path) -> None:
    archive = bundle.create_bundle(run_dir, environ={})
    assert archive == run_dir / "deploybook-local-20260101T000000Z-abc123.tar.gz"
    files = members(archive)
    assert sorted(files) == [
        "SHA256SUMS",
        "index.html",
        "junit.xml",
        "manifests/api/Deployment_dx29-api-deployment.yaml",
        "release.json",
        "summary.json",
    ]
    assert files["manifests/api/Deployment_dx29-api-deployment.yaml"] == DEPLOYMENT.encode()
    sums = files["SHA256SUMS"].decode().splitlines()
    assert f"{hashlib.sha256(files['release.json']).hexdigest()}  release.json" in sums
    assert len(sums) == 5
    with tarfile.open(archive) as tar:
        assert all(name.startswith("deploybook-local-20260101T000000Z-abc123/") for name in tar.getnames())


def test_manifest_files_written_by_the_apply_stage_take_precedence(run_dir: Path) -> None:
    (run_dir / "manifests" / "api").mkdir(parents=True)
    (run_dir / "manifests" / "api" / "deployment.yaml").write_text(DEPLOYMENT)
    files = members(bundle.create_bundle(run_dir, environ={}))
    assert [p for p in files if p.startswith("manifests/")] == ["manifests/api/deployment.yaml"]


def test_fresh_bundle_verifies(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = bundle.create_bundle(run_dir, environ={})
    assert cli.main(["bundle", "verify", str(archive)]) == 0
    assert capsys.readouterr().out.startswith("OK: 5 files match SHA256SUMS")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"release.json": b'{"run_id": "forged"}'}, "release.json: modified"),
        ({"junit.xml": None}, "junit.xml: missing"),
        ({"manifests/api/extra.yaml": b"kind: Secret\n"}, "manifests/api/extra.yaml: not listed in SHA256SUMS"),
    ],
)
def test_tampered_bundle_fails_naming_the_file(
    run_dir: Path, capsys: pytest.CaptureFixture[str], change: dict[str, bytes | None], named: str
) -> None:
    archive = bundle.create_bundle(run_dir, environ={})
    rewrite(archive, change)
    assert cli.main(["bundle", "verify", str(archive)]) == 1
    err = capsys.readouterr().err
    assert named in err and str(archive) in err


def test_unreadable_bundle_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bundle.tar.gz"
    bogus.write_text("not an archive")
    assert cli.main(["bundle", "verify", str(bogus)]) == 1
    assert "cannot read the bundle" in capsys.readouterr().err


def test_create_names_the_missing_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "release.json").write_text("{}")
    assert cli.main(["bundle", "create", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no index.html, junit.xml in the run folder" in err and str(tmp_path) in err


def test_create_refuses_a_known_secret_even_inside_the_report(run_dir: Path, tmp_path: Path) -> None:
    password = "planted-registry-password"
    password_file = tmp_path / "password"
    password_file.write_text(password)
    # Embedded and base64-encoded twice over: invisible to a plain search of the HTML.
    (run_dir / "index.html").write_bytes(fake_report({"data/attachments/1.attach": f"-p {password}".encode()}))
    with pytest.raises(EvidenceError) as caught:
        bundle.create_bundle(run_dir, environ={"DEPLOYBOOK_REGISTRY_PASSWORD_FILE": str(password_file)})
    assert "index.html#data/attachments/1.attach" in str(caught.value)
    assert password not in str(caught.value)
    assert not list(run_dir.glob("*.tar.gz"))


def test_report_payloads_decodes_embedded_files() -> None:
    html = fake_report({"widgets/a.json": b"[1]", "data/b.attach": b"log"})
    assert bundle.report_payloads(html) == {"widgets/a.json": b"[1]", "data/b.attach": b"log"}


def test_manifest_recorded_by_sha256_comes_from_the_matching_attachment(run_dir: Path) -> None:
    record = json.loads((run_dir / "release.json").read_text())
    record["services"]["api"]["manifests"] = {"api.yaml": hashlib.sha256(DEPLOYMENT.encode()).hexdigest()}
    (run_dir / "release.json").write_text(json.dumps(record))
    (run_dir / "allure-results" / "1-attachment.yaml").write_text(DEPLOYMENT)
    (run_dir / "allure-results" / "2-attachment.txt").write_text("diff: nothing")
    files = members(bundle.create_bundle(run_dir, environ={}))
    assert files["manifests/api/api.yaml"] == DEPLOYMENT.encode()


def test_manifest_recorded_by_sha256_but_absent_is_named(run_dir: Path) -> None:
    record = json.loads((run_dir / "release.json").read_text())
    record["services"]["api"]["manifests"] = {"api.yaml": "0" * 64}
    (run_dir / "release.json").write_text(json.dumps(record))
    with pytest.raises(EvidenceError, match=r"rendered manifest api\.yaml of api"):
        bundle.create_bundle(run_dir, environ={})
