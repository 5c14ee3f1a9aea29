"""Each service's code fetched from its own repository at the environment's branch, and dev's
manifests gathered from beside the code; what the record and the report say of them.

Local repositories stand in for the git server (the real git command line runs); the
server with TLS and credentials is tests/e2e/test_git_sources.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploybook.config.environment import parse_environment
from deploybook.config.model import Environment
from deploybook.errors import GitError, RenderError
from deploybook.manifests.source import checkout_manifests
from deploybook.plugin.evidence import where_from
from deploybook.release.credentials import run_secrets
from deploybook.release.sources import fetch_sources, source_info

IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def service_repo(base: Path, name: str, branches: tuple[str, ...] = ("develop", "main")) -> Path:
    repo = base / f"dx29-{name}"
    (repo / "manifests").mkdir(parents=True)
    (repo / "Dockerfile").write_text("FROM scratch\n")
    (repo / "manifests" / f"{name}.yaml").write_text(f"# {name} at develop\n")
    git(repo, "init", "-q", "-b", branches[0])
    git(repo, "add", "-A")
    git(repo, *IDENTITY, "commit", "-qm", f"{name}")
    for branch in branches[1:]:
        git(repo, "branch", branch)
    return repo


def environment(base: Path, branch: str = "develop", services: tuple[str, ...] = ("api", "web")) -> Environment:
    entries = "".join(
        f"  - {{name: {n}, image: app/{n}, manifest: {n}.yaml, source: {{git: '{(base / f'dx29-{n}').as_uri()}'}}}}\n"
        for n in services
    )
    text = (
        "cluster: {context: c, namespace: ns}\nregistry: {address: reg.example}\n"
        f"branch: {{name: {branch}}}\nmanifests: {{service_source: manifests}}\nservices:\n{entries}"
    )
    return parse_environment(text, file=base / "environments" / "dev.yaml", name="dev", root=base)


def test_every_source_is_fetched_at_the_branch_and_its_manifests_gathered(tmp_path: Path) -> None:
    for name in ("api", "web"):
        service_repo(tmp_path, name)
    env = environment(tmp_path)
    fetched = fetch_sources(env, tmp_path / "run" / "sources")
    assert set(fetched) == {"api", "web"} and fetched["api"].ref == "develop"
    assert fetched["api"].commit == git(tmp_path / "dx29-api", "rev-parse", "develop")
    checkout = checkout_manifests(
        env.manifests,
        root=tmp_path,
        work_dir=tmp_path / "run" / "m",
        project=None,
        services=env.services,
        sources=fetched,
    )
    assert (checkout.directory / "web.yaml").read_text() == "# web at develop\n"
    assert (
        checkout.info["kind"] == "service-source" and checkout.info["commits"]["api"]["commit"] == fetched["api"].commit
    )
    info = source_info(env, env.service("api"), fetched["api"], None)
    assert info == {
        "kind": "git",
        "url": (tmp_path / "dx29-api").as_uri(),
        "ref": "develop",
        "commit": fetched["api"].commit,
        "path": ".",
    }
    assert where_from(info).startswith((tmp_path / "dx29-api").as_uri() + "@develop " + fetched["api"].commit)


def test_a_missing_branch_is_one_error_naming_every_service_it_stops(tmp_path: Path) -> None:
    service_repo(tmp_path, "api", ("develop",))
    service_repo(tmp_path, "web", ("develop",))
    with pytest.raises(GitError) as info:
        fetch_sources(environment(tmp_path, branch="main"), tmp_path / "run" / "sources")
    text = str(info.value)
    assert "2 of 2 services" in text and "api, web:" in text and "ref 'main' does not exist" in text
    assert "nothing was built or applied" in text and info.value.source == str(tmp_path / "environments" / "dev.yaml")


def test_a_rollback_fetches_the_recorded_commits(tmp_path: Path) -> None:
    repo = service_repo(tmp_path, "api")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "manifests" / "api.yaml").write_text("# moved on\n")
    git(repo, *IDENTITY, "commit", "-qam", "later")
    env = environment(tmp_path, services=("api",))
    fetched = fetch_sources(env, tmp_path / "rollback", commits={"api": first})
    assert fetched["api"].commit == first
    assert (fetched["api"].directory / "manifests" / "api.yaml").read_text() == "# api at develop\n"


def test_a_service_repository_without_the_manifest_is_named(tmp_path: Path) -> None:
    repo = service_repo(tmp_path, "api")
    git(repo, "rm", "-q", "manifests/api.yaml")
    git(repo, *IDENTITY, "commit", "-qm", "no manifest")
    env = environment(tmp_path, services=("api",))
    fetched = fetch_sources(env, tmp_path / "s")
    with pytest.raises(RenderError, match=r"no manifests/api\.yaml in .*dx29-api at develop"):
        checkout_manifests(
            env.manifests, root=tmp_path, work_dir=tmp_path / "m", project=None, services=env.services, sources=fetched
        )


def test_the_secrets_an_environment_references_are_known_to_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "registry-password").write_text("registry-pw-123\n")
    (tmp_path / "git-password").write_text("git-pw-456\n")
    text = (
        "cluster: {context: c, namespace: ns}\n"
        f"registry: {{address: reg.example, username: u, password_file: {tmp_path / 'registry-password'}}}\n"
        f"git: {{username: deploy, password_file: {tmp_path / 'git-password'}}}\n"
        "branch: {name: main}\nmanifests: {git: {url: 'https://git.example/env.git', ref: main}}\n"
        "services:\n  - {name: api, context: a, image: app/api, manifest: api.yaml}\n"
    )
    env = parse_environment(text, file=tmp_path / "environments" / "test.yaml", name="test", root=tmp_path)
    assert run_secrets(env) == {"registry-pw-123", "git-pw-456"}
