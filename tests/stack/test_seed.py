"""How stack/up seeds the git server's repositories, run on a state directory of its own
(no server needed): every repository once, deterministic seed commits, and a second run
that changes nothing, leaving a repository that was pushed to as it is."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

STACK_DIR = Path(__file__).resolve().parents[2] / "stack"
REPOS = [f"dx29-{s}" for s in ("gateway", "annotation", "terms", "worker")] + ["dx29-env-test", "dx29-env-prod"]


def seed(state: Path) -> subprocess.CompletedProcess[str]:
    script = f"""
        set -euo pipefail
        source {STACK_DIR}/lib/common.sh
        source {STACK_DIR}/lib/components.sh
        mkdir -p "$LOGS"
        seed_repositories
    """
    env = dict(os.environ, DEPLOYBOOK_STACK_STATE=str(state))
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)


def refs(repo: Path) -> str:
    return (
        subprocess.run(
            [
                "git",
                "-c",
                "safe.directory=*",
                "--git-dir",
                str(repo),
                "for-each-ref",
                "--format=%(refname) %(objectname)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        + (repo / "HEAD").read_text()
    )


def test_seeding_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for state in (first, second):
        done = seed(state)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("seeding git repository") == 6, done.stderr
    repositories = first / "git" / "repositories"
    assert sorted(p.name for p in repositories.iterdir()) == sorted(f"{r}.git" for r in REPOS)
    for repo in REPOS:
        assert refs(repositories / f"{repo}.git") == refs(second / "git" / "repositories" / f"{repo}.git"), repo
        owner = (repositories / f"{repo}.git" / "objects").stat().st_uid
        assert owner == int(subprocess.run(["id", "-u", "www-data"], capture_output=True, text=True).stdout)

    # A repository that moved on (here: develop deleted) is left as it is; nothing is re-seeded.
    gateway = repositories / "dx29-gateway.git"
    subprocess.run(
        ["git", "-c", "safe.directory=*", "--git-dir", str(gateway), "update-ref", "-d", "refs/heads/develop"],
        check=True,
    )
    before = {repo: refs(repositories / f"{repo}.git") for repo in REPOS}
    again = seed(first)
    assert again.returncode == 0, again.stderr
    assert "seeding" not in again.stderr, again.stderr
    assert {repo: refs(repositories / f"{repo}.git") for repo in REPOS} == before
    assert not list((first / "git" / "tmp").iterdir())
