"""Production promotes only what test's own record proves passed, and applies nothing otherwise.

Against the real clusters and registries: test's passed release is in its namespace (one is
made when it is not). Each case runs ``pytest runbook --env prod --confirm-prod`` from a clean
``main`` of the runbook and must end with one ``ERROR:`` line that says why, a non-zero
exit, and ``dx29-prod`` exactly as it was (every object's resourceVersion), prod's registry
without the refused image.

- a release.json edited to give the gateway a digest pushed to its repository but never run
  on test (still ``outcome: passed``);
- a release.json of a release test never ran (its digests are test's own);
- the record of a real test release that failed: its gateway crashed, deploybook rolled
  test back, and the rollback re-applied the manifests at the commit the restored release
  recorded, not the ref that had moved.

A wrong branch, a dirty tree, a missing ``--confirm-prod`` and a claim whose outcome is not
``passed`` are refused before any cluster is contacted: ``test_secrets.py::test_production_refuses``.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from bad_input.sandbox import Run
from git_server import GitServer
from pipeline_kit import ensure_passed_test_release, error_lines, runbook, stored, versions

from deploybook.images.build import build_image
from deploybook.images.credentials import resolve_credentials
from deploybook.images.push import push_image
from deploybook.images.registry import RegistryClient

CRASH = (
    "          image: dx29/gateway\n",
    '          image: dx29/gateway\n          command: ["/bin/sh", "-c", "echo crashing on purpose; exit 3"]\n',
)


@pytest.fixture(scope="module")
def passed_test(cluster_ready: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Test's passed release, as its ConfigMap holds it."""
    return ensure_passed_test_release(cluster_ready, tmp_path_factory.mktemp("passed-test"))


def promote(env: dict[str, str], tmp: Path, claim: dict[str, Any] | None) -> Run:
    box = runbook(tmp, env)
    args = ["runbook", "--env", "prod", "--confirm-prod"]
    if claim is not None:
        (tmp / "release.json").write_text(json.dumps(claim))
        args.append(f"--release={tmp / 'release.json'}")
    return box.run(*args, reports=tmp / "reports")


def refused(env: dict[str, str], tmp: Path, claim: dict[str, Any], expected: str) -> str:
    """Run the promotion of ``claim``; it must be refused with ``expected`` and change nothing."""
    before = versions(env, "prod")
    run = promote(env, tmp, claim)
    errors = error_lines(run)
    assert run.returncode != 0 and len(errors) == 1, f"exit {run.returncode}, errors {errors}\n{run.output[-3000:]}"
    assert re.search(expected, errors[0]), errors[0]
    assert versions(env, "prod") == before, "something was applied in dx29-prod"
    return errors[0]


def pushed_but_never_run(env: dict[str, str], tmp: Path) -> str:
    """A new image pushed to the gateway's repository in test's registry; its digest."""
    (tmp / "ctx").mkdir()
    (tmp / "ctx" / "note").write_text(f"pushed by the e2e test {uuid.uuid4()}\n")
    (tmp / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY note /note\n")
    client = docker.DockerClient(base_url=env["DOCKER_HOST"])
    repository = f"{env['DEPLOYBOOK_REGISTRY']}/dx29/gateway"
    tag = f"e2e-forged-{uuid.uuid4().hex[:8]}"
    built = build_image(client, context=tmp / "ctx", dockerfile="Dockerfile", tag=f"{repository}:{tag}", labels={})
    auth = resolve_credentials(
        env["DEPLOYBOOK_REGISTRY"],
        username=env["DEPLOYBOOK_REGISTRY_USER"],
        password_file=env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"],
    )
    registry = RegistryClient(env["DEPLOYBOOK_REGISTRY"], auth, ca_file=env["DEPLOYBOOK_REGISTRY_CA"])
    return push_image(
        client, repository=repository, tag=tag, auth=auth, source=built.image_id, registry=registry
    ).digest


def test_an_edited_digest_is_refused_and_nothing_applied(
    passed_test: dict[str, Any], cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    forged_digest = pushed_but_never_run(cluster_ready, tmp_path)
    forged = json.loads(json.dumps(passed_test))
    forged["services"]["gateway"]["digest"] = forged_digest  # outcome stays "passed"
    line = refused(
        cluster_ready, tmp_path, forged, rf"names digests that never passed on 'test': gateway: {forged_digest}"
    )
    assert passed_test["services"]["gateway"]["digest"] in line and "deploybook-test-view" in line
    prod = RegistryClient(
        cluster_ready["DEPLOYBOOK_PROD_REGISTRY"],
        resolve_credentials(
            cluster_ready["DEPLOYBOOK_PROD_REGISTRY"],
            username=cluster_ready["DEPLOYBOOK_PROD_REGISTRY_USER"],
            password_file=cluster_ready["DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE"],
        ),
        ca_file=cluster_ready["DEPLOYBOOK_PROD_REGISTRY_CA"],
    )
    assert prod.request("HEAD", f"/v2/dx29/gateway/manifests/{forged_digest}", scope=None).status_code == 404


def test_a_release_test_never_ran_is_refused(
    passed_test: dict[str, Any], cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    invented = {**passed_test, "run_id": "20990101T000000Z-e2e000"}
    refused(cluster_ready, tmp_path, invented, r"release 20990101T000000Z-e2e000 never passed on 'test'")


def test_a_failed_test_release_rolls_back_at_its_recorded_commit_and_is_never_promoted(
    passed_test: dict[str, Any], cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    git = GitServer(cluster_ready, tmp_path)
    restored_commit = passed_test["manifest_source"]["commit"]
    with git.throwaway_branch("dx29-env-test") as (branch, checkout):
        text = (checkout / "manifests" / "gateway.yaml").read_text()
        assert CRASH[0] in text, "the env-test gateway manifest changed shape"
        crashing = git.commit_and_push(checkout, branch, "manifests/gateway.yaml", text.replace(*CRASH))
        box = runbook(tmp_path / "failing", cluster_ready)
        box.edit("environments/test.yaml", ("    ref: main", f"    ref: {branch}"))
        box.commit("test from a branch whose gateway crashes")
        run = box.run("runbook", "--env", "test", "--rollback-on-failure", reports=tmp_path / "failing" / "reports")
    failed = json.loads(next((tmp_path / "failing" / "reports" / "test").glob("*/release.json")).read_text())
    assert run.returncode != 0 and failed["outcome"] == "rolled-back", run.output[-3000:]
    assert failed["manifest_source"]["commit"] == crashing != restored_commit
    assert failed["rollback"]["manifest_source"]["commit"] == restored_commit  # not the branch's head
    assert failed["rollback"]["ok"] and failed["rollback"]["services"]["gateway"]["method"] == "exact"
    assert stored(cluster_ready, "test")["run_id"] == passed_test["run_id"]  # what runs is the passed release again
    refused(cluster_ready, tmp_path / "promote", failed, r"did not pass on 'test' \(outcome 'rolled-back'")
