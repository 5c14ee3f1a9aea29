"""What git says about a checkout (branch, commit, dirty tree) and fetching manifest repos.

Only the ``git`` command line is used, so the answers match what an operator sees when
typing the same commands; every failure becomes a :class:`~deploybook.errors.GitError`
naming the directory or URL.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploybook.errors import GitError


@dataclass(frozen=True)
class GitState:
    """The state of a checkout: branch (None when detached), commit, dirty tree, commit time."""

    branch: str | None
    commit: str
    dirty: bool
    commit_time: str
    dirty_files: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        """The 12-character abbreviated commit."""
        return self.commit[:12]


def run_git(args: list[str], cwd: Path, *, timeout: float = 120.0, strip: bool = True) -> str:
    """Run ``git ARGS`` in ``cwd`` and return stdout; GitError with git's message on failure."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {' '.join(args)} could not run: {e}", source=str(cwd)) from e
    if proc.returncode != 0:
        raise GitError(
            f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}",
            source=str(cwd),
            hint="check that this is a git checkout and the ref exists",
        )
    return proc.stdout.strip() if strip else proc.stdout


def repo_state(path: Path) -> GitState:
    """Branch, HEAD commit and dirty tree of the checkout containing ``path``."""
    branch = run_git(["rev-parse", "--abbrev-ref", "HEAD"], path)
    commit = run_git(["rev-parse", "HEAD"], path)
    epoch = int(run_git(["show", "-s", "--format=%ct", "HEAD"], path))
    changes = run_git(["status", "--porcelain", "--untracked-files=normal"], path, strip=False)
    files = tuple(line[3:] for line in changes.splitlines() if line.strip())
    return GitState(
        branch=None if branch == "HEAD" else branch,
        commit=commit,
        dirty=bool(files),
        commit_time=datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        dirty_files=files,
    )


def fetch_ref(url: str, ref: str, dest: Path, *, timeout: float = 300.0) -> str:
    """Check out ``ref`` of the repository at ``url`` into ``dest``; return the commit used.

    A shallow fetch of exactly the ref keeps it quick; ``dest`` is created if needed and
    reused when it already holds a checkout.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / ".git").exists():
        run_git(["init", "--quiet"], dest)
    try:
        run_git(["fetch", "--quiet", "--depth", "1", url, ref], dest, timeout=timeout)
    except GitError as e:
        raise GitError(
            f"could not fetch ref {ref!r}: {e.message}",
            source=url,
            hint="check the manifests.git url and ref in the environment file and your git access",
        ) from e
    run_git(["checkout", "--quiet", "--force", "FETCH_HEAD"], dest)
    return run_git(["rev-parse", "HEAD"], dest)


def source_url(path: Path) -> str:
    """Where the code comes from: the ``origin`` remote's URL, else the checkout's file URL."""
    try:
        return run_git(["remote", "get-url", "origin"], path)
    except GitError:
        return Path(run_git(["rev-parse", "--show-toplevel"], path)).as_uri()
