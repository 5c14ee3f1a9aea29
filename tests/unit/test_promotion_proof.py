"""A promotion is a claim until the source environment's own history proves every digest.

The history lives in the source environment's ConfigMap; here a fake ``core`` API (the
transport seam) holds it. The real cluster, with test's read-only context, is
tests/e2e/test_promotion.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from deploybook.config.environment import parse_environment
from deploybook.config.model import Environment
from deploybook.errors import PolicyError
from deploybook.evidence.record import PassedRelease, ReleaseRecord, ServiceRecord
from deploybook.evidence.record_store import HISTORY_LENGTH, load_passed_history, save_to_cluster
from deploybook.release.policy import check_proven, check_source_refs
from deploybook.release.promotion import PromotedPins, _with_sources

GOOD = {"api": "sha256:" + "1" * 64, "web": "sha256:" + "2" * 64}
PUSHED_NEVER_RAN = "sha256:" + "9" * 64
PROD = """\
cluster: {context: c, namespace: ns}
registry: {address: reg.example}
branch: {name: main, clean_tree: true}
manifests: {path: m}
promote_from: test
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml}
  - {name: web, context: w, image: app/web, manifest: web.yaml}
"""


def prod() -> Environment:
    return parse_environment(PROD, file=Path("environments/prod.yaml"), name="prod", root=Path("/r"))


def record(run_id: str, digests: dict[str, str] = GOOD, outcome: str = "passed") -> ReleaseRecord:
    return ReleaseRecord(
        run_id=run_id,
        environment="test",
        namespace="dx29-test",
        outcome=outcome,
        started="",
        finished=f"{run_id}-finished",
        services={
            n: ServiceRecord(n, image=f"reg/{n}", digest=d, source={"kind": "git", "commit": n * 8})
            for n, d in digests.items()
        },
    )


class FakeCore:
    """The ConfigMap calls of the core API, in memory."""

    def __init__(self) -> None:
        self.data: dict[str, str] | None = None

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        if self.data is None:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=dict(self.data))

    def replace_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        if self.data is None:
            raise ApiException(status=404, reason="Not Found")
        self.data = dict(body["data"])

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        self.data = dict(body["data"])


@pytest.fixture
def kube() -> Any:
    return SimpleNamespace(core=FakeCore(), server="https://test:6443", where="server https://test:6443")


def test_the_history_keeps_every_passed_release_newest_first(kube: Any) -> None:
    save_to_cluster(kube, "dx29-test", record("r1"))
    save_to_cluster(kube, "dx29-test", record("r2", outcome="failed"))
    save_to_cluster(kube, "dx29-test", record("r3", {**GOOD, "api": "sha256:" + "3" * 64}))
    history = load_passed_history(kube, "dx29-test")
    assert [h.run_id for h in history] == ["r3", "r1"]  # r2 failed: it proves nothing
    assert history[1].digests == GOOD and history[1].sources["api"]["commit"] == "api" * 8


def test_the_history_is_bounded(kube: Any) -> None:
    for n in range(HISTORY_LENGTH + 3):
        save_to_cluster(kube, "dx29-test", record(f"r{n:02d}"))
    history = load_passed_history(kube, "dx29-test")
    assert len(history) == HISTORY_LENGTH and history[0].run_id == f"r{HISTORY_LENGTH + 2:02d}"


def test_a_record_stored_before_the_history_still_proves_its_last_passed_release(kube: Any) -> None:
    kube.core.data = {"release.json": record("old").to_json()}
    assert [h.run_id for h in load_passed_history(kube, "dx29-test")] == ["old"]
    assert load_passed_history(SimpleNamespace(core=FakeCore(), server="s", where="w"), "ns") == []


def test_a_passed_release_with_the_digests_it_ran_is_proven() -> None:
    proof = check_proven(prod(), record("r1"), [PassedRelease.of(record("r1"))], where="test's record")
    assert proof.run_id == "r1"


def test_an_edited_digest_is_refused_naming_the_service_and_what_really_ran() -> None:
    forged = record("r1", {**GOOD, "api": PUSHED_NEVER_RAN})  # still outcome passed
    with pytest.raises(PolicyError) as info:
        check_proven(prod(), forged, [PassedRelease.of(record("r1"))], where="configmap dx29-test/deploybook-release")
    text = str(info.value)
    assert f"api: {PUSHED_NEVER_RAN} (that release ran {GOOD['api']})" in text
    assert "web:" not in text and "nothing was applied" in text and "configmap dx29-test" in text


def test_a_release_the_source_never_passed_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"release invented never passed on 'test'.*has r2, r1"):
        check_proven(prod(), record("invented"), [PassedRelease.of(record(r)) for r in ("r2", "r1")], where="w")


def test_a_source_pinned_to_another_branch_breaks_the_rule(tmp_path: Path) -> None:
    text = PROD.replace("context: a,", "context: a, source: {git: 'https://g/api.git', ref: feature},")
    env = parse_environment(text, file=Path("environments/prod.yaml"), name="prod", root=Path("/r"))
    with pytest.raises(PolicyError, match=r"pinned to ref 'feature'.*from branch 'main'"):
        check_source_refs(env)
    check_source_refs(
        parse_environment(text.replace("ref: feature", "ref: main"), file=env.file, name="p", root=Path("/r"))
    )


def test_history_json_is_what_the_configmap_holds(kube: Any) -> None:
    save_to_cluster(kube, "dx29-test", record("r1"))
    entries = json.loads(kube.core.data["passed-history.json"])
    assert entries == [PassedRelease.of(record("r1")).to_dict()]


VENDOR = {
    "manifest": "api.yaml",
    "container": "proxy",
    "written": "vendor/proxy:1.4",
    "reference": "reg.example/vendor/proxy:1.4",
    "registry": "reg.example",
    "digest": "sha256:" + "7" * 64,
    "pinned": "reg.example/vendor/proxy@sha256:" + "7" * 64,
    "how": "tag resolved",
}


def test_a_promotion_runs_vendor_images_as_the_proven_release_pinned_them(kube: Any) -> None:
    passed = record("test-1")
    passed.services["api"] = dataclasses.replace(passed.services["api"], third_party=(VENDOR,))
    save_to_cluster(kube, "dx29-test", passed)
    (proof,) = load_passed_history(kube, "dx29-test")
    assert proof.third_party == {"api": (VENDOR,)}
    # A claim that names another vendor digest is not trusted: the proof's pins replace it.
    forged = {**VENDOR, "digest": "sha256:" + "6" * 64}
    claim = record("test-1")
    claim.services["api"] = dataclasses.replace(claim.services["api"], third_party=(forged,))
    proven = _with_sources(claim, proof)
    pins = PromotedPins(proven)
    resolved = pins.resolve("vendor/proxy:1.4")
    assert (resolved.digest, resolved.pinned) == (VENDOR["digest"], VENDOR["pinned"])
    assert resolved.how == "promoted from release test-1"
    with pytest.raises(PolicyError, match=r"release test-1 being promoted ran no 'vendor/cache:2'"):
        pins.resolve("vendor/cache:2")
