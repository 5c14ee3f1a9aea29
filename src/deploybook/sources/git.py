"""What git says about a checkout (branch, commit, dirty tree), and repositories fetched at a ref.

Only the ``git`` command line is used, so the answers match what an operator sees when
typing the same commands; every failure becomes a :class:`~deploybook.errors.GitError`
naming the directory or URL. A fetch says which of the usual causes it met (the server
unreachable, the credentials refused, TLS not trusted, the ref missing) and what to do.
Credentials and TLS come from a :class:`~deploybook.sources.access.GitAccess`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploybook.errors import GitError
from deploybook.sources.access import GitAccess

# What git prints for each cause, and what to do about it (first match wins).
_FETCH_FAILURES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("authentication failed", "could not read username", "could not read password", "returned error: 401"),
        "the git server refused the credentials ({access})",
        "check the credentials the environment's git settings name",
    ),
    (
        ("returned error: 404", "/' not found", "does not appear to be a git repository"),
        "there is no repository at this URL",
        "check the repository URL in the environment file",
    ),
    (
        ("ssl certificate problem", "certificate verify", "server certificate verification"),
        "TLS verification failed",
        "trust the server's CA (git.ca_file in the environment file)",
    ),
    (
        ("couldn't find remote ref", "not our ref", "unknown revision", "invalid refspec"),
        "ref {ref!r} does not exist in the repository",
        "push the branch (or fix the ref), or release to an environment whose branch exists",
    ),
    (
        ("failed to connect", "could not resolve host", "connection refused", "timed out", "unable to access"),
        "the git server is unreachable",
        "check the URL and that the git server is running",
    ),
)


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


def run_git(
    args: list[str],
    cwd: Path,
    *,
    timeout: float = 120.0,
    strip: bool = True,
    env: Mapping[str, str] | None = None,
    shown: str | None = None,
) -> str:
    """Run ``git ARGS`` in ``cwd`` and return stdout; GitError with git's message on failure.

    ``shown`` is the command as errors name it (default: every argument)."""
    shown = shown or f"git {' '.join(args)}"
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"{shown} could not run: {e}", source=str(cwd)) from e
    if proc.returncode != 0:
        raise GitError(
            f"{shown} failed: {proc.stderr.strip() or proc.stdout.strip()}",
            source=str(cwd),
            hint="check that this is a git checkout and the ref exists",
        )
    return proc.stdout.strip() if strip else proc.stdout


def repo_state(path: Path) -> GitState:
    """Branch, HEAD commit and its time, and dirty tree of the checkout containing ``path``.

    Two git calls: ``show`` for the commit and its time (it fails on a repository with no
    commit), ``status --branch`` for the branch and the changed files."""
    commit, epoch = run_git(["show", "-s", "--format=%H %ct", "HEAD"], path).split()
    status = run_git(["status", "--porcelain", "--branch", "--untracked-files=normal"], path, strip=False)
    head, *changes = status.splitlines()
    files = tuple(line[3:] for line in changes if line.strip())
    return GitState(
        branch=_branch(head),
        commit=commit,
        dirty=bool(files),
        commit_time=_utc(int(epoch)),
        dirty_files=files,
    )


def _branch(head: str) -> str | None:
    """The branch of ``git status --branch``'s first line (``## main...origin/main [ahead 1]``),
    None when detached (``## HEAD (no branch)``). A ref name never holds ``..``."""
    name = head.removeprefix("## ").split("...")[0].split(" ")[0]
    return None if name == "HEAD" else name


@dataclass(frozen=True)
class Checkout:
    """A repository fetched at a ref: where it is, and the commit the ref pointed at."""

    url: str
    ref: str
    directory: Path
    commit: str
    commit_time: str

    @property
    def short(self) -> str:
        """The 12-character abbreviated commit."""
        return self.commit[:12]


def fetch_checkout(
    url: str, ref: str, dest: Path, *, access: GitAccess | None = None, timeout: float = 300.0
) -> Checkout:
    """:func:`fetch_ref`, with what the checkout is (URL, ref, commit and its time)."""
    commit = fetch_ref(url, ref, dest, access=access, timeout=timeout)
    return Checkout(url, ref, dest, commit, commit_time(dest))


def fetch_ref(url: str, ref: str, dest: Path, *, access: GitAccess | None = None, timeout: float = 300.0) -> str:
    """Check out ``ref`` (a branch, tag or commit) of the repository at ``url`` into ``dest``;
    return the commit used.

    A shallow fetch of exactly the ref keeps it quick; ``dest`` is created if needed and
    reused when it already holds a checkout.
    """
    access = access or GitAccess()
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / ".git").exists():
        run_git(["init", "--quiet"], dest)
    command = [*access.config_args(url), "fetch", "--quiet", "--no-tags", "--depth", "1", url, ref]
    try:
        run_git(command, dest, timeout=timeout, env=access.environ(), shown=f"git fetch {url} {ref}")
    except GitError as e:
        raise fetch_failed(e.message, url=url, ref=ref, access=access) from e
    run_git(["checkout", "--quiet", "--force", "FETCH_HEAD"], dest)
    return run_git(["rev-parse", "HEAD"], dest)


def fetch_failed(message: str, *, url: str, ref: str, access: GitAccess) -> GitError:
    """The GitError for a failed fetch: its cause named, git's own words kept."""
    lowered = message.lower()
    for needles, what, hint in _FETCH_FAILURES:
        if any(n in lowered for n in needles):
            return GitError(f"{what.format(access=access.described, ref=ref)}: {message}", source=url, hint=hint)
    return GitError(f"could not fetch ref {ref!r}: {message}", source=url, hint="check the URL, the ref and git access")


def commit_time(path: Path) -> str:
    """The commit time of HEAD of the checkout at ``path``, in UTC (RFC 3339)."""
    return _utc(int(run_git(["show", "-s", "--format=%ct", "HEAD"], path)))


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_url(path: Path) -> str:
    """Where the code comes from: the ``origin`` remote's URL, else the checkout's file URL."""
    try:
        return run_git(["remote", "get-url", "origin"], path)
    except GitError:
        return Path(run_git(["rev-parse", "--show-toplevel"], path)).as_uri()
