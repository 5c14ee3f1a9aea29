"""Release rules: branch, clean tree, production promotion of passed test digests."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybook.config.environment import parse_environment
from deploybook.config.model import Environment
from deploybook.errors import PolicyError
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.release.policy import check_branch, check_clean_tree, check_promotion
from deploybook.sources.git import GitState

BASE = """\
cluster: {context: c, namespace: ns}
registry: {address: reg.example}
branch: {name: BRANCH, clean_tree: CLEAN}
manifests: {path: m}
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml}
  - {name: web, context: w, image: app/web, manifest: web.yaml}
"""
CLEAN_MAIN = GitState(branch="main", commit="a" * 40, dirty=False, commit_time="2026-01-01T00:00:00Z")
DIRTY_MAIN = GitState(
    branch="main", commit="a" * 40, dirty=True, commit_time="2026-01-01T00:00:00Z", dirty_files=("app.py",)
)


def env(name: str = "x", branch: str = "main", clean: bool = False, extra: str = "") -> Environment:
    text = BASE.replace("BRANCH", branch).replace("CLEAN", str(clean).lower()) + extra
    return parse_environment(text, file=Path(f"environments/{name}.yaml"), name=name, root=Path("/r"))


def record(
    environment: str = "test", outcome: str = "passed", digests: dict[str, str] | None = None, dry_run: bool = False
) -> ReleaseRecord:
    digests = {"api": "sha256:" + "1" * 64, "web": "sha256:" + "2" * 64} if digests is None else digests
    return ReleaseRecord(
        run_id="r1",
        environment=environment,
        namespace="ns",
        outcome=outcome,
        started="",
        finished="",
        dry_run=dry_run,
        services={n: ServiceRecord(n, image=f"reg/{n}", digest=d) for n, d in digests.items()},
    )


def test_branch_rule() -> None:
    check_branch(env(branch="main"), CLEAN_MAIN)
    with pytest.raises(PolicyError, match=r"releases from branch 'develop'.*on 'main'"):
        check_branch(env(branch="develop"), CLEAN_MAIN)


def test_any_branch_when_rule_is_null() -> None:
    detached = GitState(branch=None, commit="b" * 40, dirty=True, commit_time="")
    check_branch(env(branch="null"), detached)


def test_detached_head_named() -> None:
    detached = GitState(branch=None, commit="b" * 40, dirty=False, commit_time="")
    with pytest.raises(PolicyError, match="detached HEAD"):
        check_branch(env(), detached)


def test_clean_tree_only_when_asked() -> None:
    check_clean_tree(env(clean=False), DIRTY_MAIN)
    with pytest.raises(PolicyError, match=r"app\.py"):
        check_clean_tree(env(clean=True), DIRTY_MAIN)


def test_promotion_needs_confirmation() -> None:
    prod = env("prod", extra="promote_from: test\n")
    with pytest.raises(PolicyError, match="confirm") as info:
        check_promotion(prod, record(), confirmed=False)
    assert info.value.source == "--confirm-prod"


def test_promotion_needs_a_record() -> None:
    with pytest.raises(PolicyError, match="--release"):
        check_promotion(env("prod", extra="promote_from: test\n"), None, confirmed=True)


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        (record(environment="dev"), "only promotes 'test'"),
        (record(outcome="failed"), "never passed test"),
        (record(dry_run=True), "never passed test"),
        (record(digests={"api": "sha256:" + "1" * 64}), "no tested digest for: web"),
    ],
)
def test_promotion_refuses_untested_digests(rec: ReleaseRecord, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        check_promotion(env("prod", extra="promote_from: test\n"), rec, confirmed=True)


def test_promotion_of_a_passed_test_release_from_a_clean_main() -> None:
    prod = env("prod", clean=True, extra="promote_from: test\n")
    check_branch(prod, CLEAN_MAIN)
    check_clean_tree(prod, CLEAN_MAIN)
    check_promotion(prod, record(), confirmed=True)


def test_non_promoting_environment_ignores_promotion() -> None:
    check_promotion(env(), None, confirmed=False)
