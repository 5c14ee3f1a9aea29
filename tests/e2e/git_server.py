"""The stack's git server as the e2e tests use it: heads, clones, commits and throwaway branches.

Git is given the stack's CA (``GIT_SSL_CAINFO``, which wins over ``http.sslCAInfo``) and
the stack's credential helper for the server's URL only, as a user of the server does. The
repositories are shared and never pristine: a test reads the heads it needs, and what it
pushes goes to a branch of its own (``e2e-...``), deleted afterwards, pass or fail.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

IDENTITY = ["-c", "user.name=deploybook-e2e", "-c", "user.email=e2e@deploybook.invalid"]


class GitServer:
    """git against ``$DEPLOYBOOK_GIT_URL`` with the stack's CA and credential helper."""

    def __init__(self, env: dict[str, str], work: Path) -> None:
        self.env = {**env, "GIT_SSL_CAINFO": env["DEPLOYBOOK_GIT_CA"], "GIT_TERMINAL_PROMPT": "0"}
        self.url = env["DEPLOYBOOK_GIT_URL"]
        self.work = work

    def __call__(self, *args: str, cwd: Path | None = None) -> str:
        helper = f"credential.{self.url}.helper={self.env['DEPLOYBOOK_GIT_CREDENTIAL_HELPER']}"
        proc = subprocess.run(
            ["git", "-c", "credential.helper=", "-c", helper, *IDENTITY, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout.strip()

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def head(self, repo: str, branch: str) -> str:
        """The commit ``branch`` of ``repo`` points at now."""
        line = self("ls-remote", self.repo_url(repo), f"refs/heads/{branch}")
        assert line, f"{repo} has no branch {branch}"
        return line.split()[0]

    def clone(self, repo: str, branch: str) -> Path:
        """A fresh clone of ``repo`` at ``branch`` under the work folder."""
        target = self.work / f"{repo}-{uuid.uuid4().hex[:6]}"
        self("clone", "--quiet", "--branch", branch, self.repo_url(repo), str(target))
        return target

    def commit_and_push(self, checkout: Path, branch: str, path: str, text: str) -> str:
        """Write ``path`` in ``checkout``, commit it and push ``branch``; the new commit."""
        file = checkout / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        self("add", path, cwd=checkout)
        self("commit", "--quiet", "-m", f"e2e: {path}", cwd=checkout)
        self("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=checkout)
        return self("rev-parse", "HEAD", cwd=checkout)

    @contextmanager
    def throwaway_branch(self, repo: str, start: str = "main") -> Iterator[tuple[str, Path]]:
        """A branch ``e2e-ID`` of ``repo`` made at ``start``, and a clone on it; deleted afterwards."""
        branch = f"e2e-{uuid.uuid4().hex[:8]}"
        checkout = self.clone(repo, start)
        self("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=checkout)
        try:
            yield branch, checkout
        finally:
            self("push", "--quiet", "origin", "--delete", branch, cwd=checkout)
