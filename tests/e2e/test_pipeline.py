"""The Dx29 pipeline end to end on the real stack: ``scripts/pipeline``, what ``make pipeline`` runs.

From a runbook checkout on a clean ``main`` (a sandbox of this repository), the script commits
to ``develop`` of the gateway's repository on the git server, releases dev, merges to ``main``,
releases test from the test environment's repository, promotes to prod, runs the checks alone
with each read-only context and prints the status. Then, against the git server, the clusters
and both registries:

- every record names the commit of its manifests and of each service's source, and they are
  the heads the git server has (develop for dev, main for test, the environment repositories'
  main for the manifests); prod's sources are test's;
- prod runs test's digests, copied into prod's own registry, where each digest and tag answer;
  each image's OCI labels name its source commit and repository;
- the report says the same; ``deploybook status --json`` finds all twelve rows ok;
- checks alone with a read-only context change nothing in the namespace;
- no git or registry password shows in any output, report file or bundle member.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bad_input.sandbox import Sandbox
from git_server import GitServer
from pipeline_kit import ENVIRONMENTS, SERVICES, runbook, versions
from secret_scan import leaks, report_outputs

from deploybook.images.credentials import resolve_credentials
from deploybook.images.registry import RegistryClient


@dataclass(frozen=True)
class Pipeline:
    """One run of scripts/pipeline and what the git server said right after it."""

    box: Sandbox
    proc: subprocess.CompletedProcess[str]
    records: dict[str, dict[str, Any]]
    heads: dict[tuple[str, str], str]

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


@pytest.fixture(scope="module")
def pipeline(cluster_ready: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """scripts/pipeline run once in a sandbox on main; its records and the git server's heads."""
    tmp = tmp_path_factory.mktemp("pipeline")
    box = runbook(tmp, cluster_ready, pipeline=True)
    proc = subprocess.run(
        [str(box.root / "scripts" / "pipeline")],
        cwd=box.root,
        env={**cluster_ready, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/pipeline failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    git = GitServer(cluster_ready, tmp)
    heads = {(f"dx29-{s}", b): git.head(f"dx29-{s}", b) for s in SERVICES for b in ("develop", "main")}
    heads.update({(f"dx29-env-{e}", "main"): git.head(f"dx29-env-{e}", "main") for e in ("test", "prod")})
    records = {e: json.loads((box.root / "reports" / e / "latest" / "release.json").read_text()) for e in ENVIRONMENTS}
    return Pipeline(box, proc, records, heads)


def test_the_pipeline_passes_and_prod_runs_tests_digests(pipeline: Pipeline) -> None:
    assert all(r["outcome"] == "passed" for r in pipeline.records.values()), {
        e: r["outcome"] for e, r in pipeline.records.items()
    }
    test, prod = (pipeline.records[e]["services"] for e in ("test", "prod"))
    assert {n: s["digest"] for n, s in prod.items()} == {n: s["digest"] for n, s in test.items()}
    assert set(prod) == set(SERVICES) and "prod runs test's digests: yes" in pipeline.output
    assert pipeline.records["prod"]["promoted_from"] == pipeline.records["test"]["run_id"]
    assert "deploybook-test-view" in pipeline.records["prod"]["promotion_proof"]


def test_every_record_names_the_commits_the_git_server_has(pipeline: Pipeline) -> None:
    dev, test, prod = (pipeline.records[e] for e in ENVIRONMENTS)
    for service in SERVICES:
        repo = f"dx29-{service}"
        assert dev["services"][service]["source"]["commit"] == pipeline.heads[(repo, "develop")]
        assert dev["manifest_source"]["commits"][service]["commit"] == pipeline.heads[(repo, "develop")]
        assert test["services"][service]["source"]["commit"] == pipeline.heads[(repo, "main")]
        assert prod["services"][service]["source"] == test["services"][service]["source"]
    assert dev["manifest_source"]["kind"] == "service-source"
    assert test["manifest_source"]["commit"] == pipeline.heads[("dx29-env-test", "main")]
    assert prod["manifest_source"]["commit"] == pipeline.heads[("dx29-env-prod", "main")]
    assert test["manifest_source"]["url"].endswith("/dx29-env-test.git")
    assert prod["manifest_source"]["url"].endswith("/dx29-env-prod.git")


def _registry(env: dict[str, str], prefix: str) -> RegistryClient:
    auth = resolve_credentials(
        env[f"{prefix}"], username=env[f"{prefix}_USER"], password_file=env[f"{prefix}_PASSWORD_FILE"]
    )
    return RegistryClient(env[prefix], auth, ca_file=env[f"{prefix}_CA"])


def _labels(registry: RegistryClient, path: str, digest: str) -> dict[str, str]:
    """The OCI labels in an image's config, read from the registry."""
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    manifest = registry.request("GET", f"/v2/{path}/manifests/{digest}", scope=None, headers=accept).json()
    config = registry.request("GET", f"/v2/{path}/blobs/{manifest['config']['digest']}", scope=None).json()
    return dict(config["config"]["Labels"] or {})


def test_prods_own_registry_serves_the_promoted_digests_and_tags(
    pipeline: Pipeline, cluster_ready: dict[str, str]
) -> None:
    prod_registry = _registry(cluster_ready, "DEPLOYBOOK_PROD_REGISTRY")
    for name, svc in pipeline.records["prod"]["services"].items():
        assert svc["image"] == f"{cluster_ready['DEPLOYBOOK_PROD_REGISTRY']}/dx29/{name}"
        assert svc["digest_source"].startswith("copied by digest from localhost:5000/dx29/")
        assert prod_registry.manifest_digest(f"dx29/{name}", svc["digest"]) == svc["digest"]
        assert prod_registry.manifest_digest(f"dx29/{name}", svc["tag"]) == svc["digest"]


def test_each_images_labels_name_its_source_commit_and_repository(
    pipeline: Pipeline, cluster_ready: dict[str, str]
) -> None:
    registries = {
        "test": _registry(cluster_ready, "DEPLOYBOOK_REGISTRY"),
        "prod": _registry(cluster_ready, "DEPLOYBOOK_PROD_REGISTRY"),
    }
    for environment, registry in registries.items():
        for name, svc in pipeline.records[environment]["services"].items():
            labels = _labels(registry, f"dx29/{name}", svc["digest"])
            assert labels["org.opencontainers.image.revision"] == svc["source"]["commit"], (environment, name)
            assert labels["org.opencontainers.image.source"] == svc["source"]["url"]


def test_the_report_names_the_sources_and_the_manifests_commit(pipeline: Pipeline) -> None:
    for environment in ("test", "prod"):
        record = pipeline.records[environment]
        properties = (
            pipeline.box.root / "reports" / environment / "latest" / "allure-results" / "environment.properties"
        ).read_text()
        assert f"{record['manifest_source']['commit']}" in properties
        for name, svc in record["services"].items():
            line = next(ln for ln in properties.splitlines() if ln.startswith(f"source.{name}="))
            assert svc["source"]["commit"] in line and "dx29-" in line
    assert "promoted.from=" in properties and "deploybook-test-view" in properties


def test_status_finds_every_environment_as_recorded(pipeline: Pipeline, cluster_ready: dict[str, str]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploybook",
            "status",
            "--json",
            *(f"--env={e}" for e in ENVIRONMENTS),
            "--project",
            str(pipeline.box.root),
        ],
        env=cluster_ready,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r["environment"], r["service"]): r for r in json.loads(proc.stdout)}
    assert len(rows) == 12 and {r["verdict"] for r in rows.values()} == {"ok"}
    for name in SERVICES:
        assert rows[("prod", name)]["running"] == [pipeline.records["test"]["services"][name]["digest"]]
        assert rows[("prod", name)]["source_commit"] == pipeline.records["test"]["services"][name]["source"]["commit"]
    assert rows[("prod", "gateway")]["desired"] == 2 == rows[("prod", "gateway")]["ready"]  # dx29-env-prod's replicas


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_checks_alone_with_the_read_only_context_change_nothing(
    pipeline: Pipeline, cluster_ready: dict[str, str], environment: str, tmp_path: Path
) -> None:
    before = versions(cluster_ready, environment)
    run = pipeline.box.run("checks", "--env", environment, reports=tmp_path / "reports")  # the file's read_only_context
    assert run.returncode == 0, run.output[-3000:]
    assert f"context deploybook-{environment}-view may not exec into pods" in run.output
    assert versions(cluster_ready, environment) == before


def test_no_git_or_registry_password_in_any_output(pipeline: Pipeline, cluster_ready: dict[str, str]) -> None:
    values = {
        name: Path(cluster_ready[var]).read_text().strip()
        for name, var in (
            ("git password", "DEPLOYBOOK_GIT_PASSWORD_FILE"),
            ("registry password", "DEPLOYBOOK_REGISTRY_PASSWORD_FILE"),
            ("prod registry password", "DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE"),
        )
    }
    outputs = [("output of scripts/pipeline", pipeline.output.encode()), *report_outputs(pipeline.box.root / "reports")]
    found, searched = leaks(outputs, values)
    assert searched > 100, f"only {searched} outputs searched: the reports are not where they were expected"
    assert not found, "credentials leaked:\n" + "\n".join(found)
