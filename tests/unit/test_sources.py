"""Git sources: how git is given credentials and the CA, what a failed fetch says, fetching a ref.

The git command line is real here (a local repository stands in for the server); the
server's side, with TLS and authentication, is tests/e2e/test_git_sources.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploybook.errors import ConfigError, GitError
from deploybook.sources.access import GitAccess, check_git_access, repository_host
from deploybook.sources.git import commit_time, fetch_checkout, fetch_failed, repo_state

URL = "https://git.example:8443/dx29-gateway.git"
IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_credentials_are_for_the_repositorys_host_only_and_replace_the_users_helpers() -> None:
    args = GitAccess(credential_helper="/stack/git-credential").config_args(URL)
    assert args == [
        "-c",
        "http.sslVerify=true",
        "-c",
        "credential.helper=",
        "-c",
        "credential.https://git.example:8443.helper=/stack/git-credential",
    ]
    assert GitAccess().config_args(URL) == ["-c", "http.sslVerify=true"]  # git's own configuration
    assert repository_host("file:///srv/repo.git") is None and repository_host("git@h:x.git") is None


def test_the_environment_of_git_names_the_ca_and_never_a_password(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("pw-never-in-args\n")
    access = GitAccess(username="deploy", password_file=str(password), ca_file="/stack/ca.crt")
    base = {"GIT_SSL_CAINFO": "/etc/ssl/certs/ca-certificates.crt", "GIT_SSL_NO_VERIFY": "1", "SSH_ASKPASS": "x"}
    env = access.environ(base)
    assert env["GIT_SSL_CAINFO"] == "/stack/ca.crt"  # the variable wins over http.sslCAInfo, so it is set
    assert "GIT_SSL_NO_VERIFY" not in env and "SSH_ASKPASS" not in env
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == ""
    everything = " ".join([*access.config_args(URL), *env.values()])
    assert "pw-never-in-args" not in everything and str(password) in everything


def test_the_password_file_helper_answers_git_with_the_files_content(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-from-file\n")
    access = GitAccess(username="deploy", password_file=str(password))
    proc = subprocess.run(
        ["git", *access.config_args(URL), "credential", "fill"],
        input="protocol=https\nhost=git.example:8443\n\n",
        env=access.environ(),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "username=deploy\n" in proc.stdout and "password=s3cret-from-file\n" in proc.stdout


def test_other_hosts_get_nothing_from_the_helper(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-from-file\n")
    access = GitAccess(username="deploy", password_file=str(password))
    proc = subprocess.run(
        ["git", *access.config_args(URL), "credential", "fill"],
        input="protocol=https\nhost=elsewhere.example\n\n",
        env=access.environ(),
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "s3cret" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("access", "key"),
    [
        (GitAccess(ca_file="/nonexistent/ca.crt"), "git.ca_file"),
        (GitAccess(username="u", password_file="/nonexistent/password"), "git.password_file"),
        (GitAccess(credential_helper="/nonexistent/helper get"), "git.credential_helper"),
    ],
)
def test_a_reference_that_does_not_resolve_names_its_key(access: GitAccess, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_git_access(access)
    assert info.value.key == key


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        check_git_access(GitAccess(username="u", password_file=str(tmp_path / "password")))
    check_git_access(GitAccess(credential_helper="store"))  # a helper git knows by name


@pytest.mark.parametrize(
    ("stderr", "cause"),
    [
        ("fatal: Authentication failed for 'https://h/r.git/'", "refused the credentials (credential helper h)"),
        ("fatal: could not read Username for 'https://h': terminal prompts disabled", "refused the credentials"),
        ("fatal: unable to access 'https://h/r.git/': Failed to connect to h port 8443", "unreachable"),
        ("fatal: unable to access '...': SSL certificate problem: unable to get local issuer", "TLS verification"),
        ("fatal: couldn't find remote ref feature-x", "ref 'feature-x' does not exist"),
        ("fatal: repository 'https://h/nope.git/' not found", "no repository at this URL"),
    ],
)
def test_a_failed_fetch_names_its_cause(stderr: str, cause: str) -> None:
    error = fetch_failed(f"git fetch failed: {stderr}", url=URL, ref="feature-x", access=GitAccess("h"))
    assert cause in error.message and error.source == URL and error.hint


def test_fetch_a_branch_then_a_commit_of_a_real_repository(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "develop")
    (origin / "app").write_text("one\n")
    git(origin, "add", "-A")
    git(origin, *IDENTITY, "commit", "-qm", "one")
    first = git(origin, "rev-parse", "HEAD")
    (origin / "app").write_text("two\n")
    git(origin, *IDENTITY, "commit", "-qam", "two")
    checkout = fetch_checkout(origin.as_uri(), "develop", tmp_path / "work")
    assert checkout.commit == git(origin, "rev-parse", "HEAD") and (checkout.directory / "app").read_text() == "two\n"
    assert checkout.short == checkout.commit[:12] and checkout.commit_time.endswith("Z")
    again = fetch_checkout(origin.as_uri(), first, tmp_path / "work")  # a rollback asks for a recorded commit
    assert again.commit == first and (again.directory / "app").read_text() == "one\n"
    with pytest.raises(GitError, match="ref 'main' does not exist"):
        fetch_checkout(origin.as_uri(), "main", tmp_path / "other")


def test_the_state_of_a_checkout_branch_commit_time_and_changed_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "release/1.2")
    with pytest.raises(GitError, match="git show"):  # no commit yet
        repo_state(repo)
    (repo / "app").write_text("one\n")
    git(repo, "add", "-A")
    git(repo, *IDENTITY, "commit", "-qm", "one")
    clean = repo_state(repo)
    assert (clean.branch, clean.commit, clean.dirty, clean.dirty_files) == (
        "release/1.2",
        git(repo, "rev-parse", "HEAD"),
        False,
        (),
    )
    assert clean.commit_time == commit_time(repo) and clean.commit_time.endswith("Z")
    git(repo, "remote", "add", "origin", repo.as_uri())
    git(repo, "fetch", "-q", "origin")
    git(repo, "branch", "-q", "--set-upstream-to", "origin/release/1.2")
    (repo / "app").write_text("two\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "new file").write_text("new\n")
    dirty = repo_state(repo / "docs")
    assert dirty.branch == "release/1.2" and dirty.dirty
    assert set(dirty.dirty_files) == {"app", "docs/"}
    git(repo, "checkout", "-q", "--detach")
    assert repo_state(repo).branch is None
