"""How a git command reaches an environment's repositories: credentials and the CA to trust.

Credentials go the way git users give them, through git's credential protocol: the
environment names a credential helper (``credential.helper`` semantics), or a username and a
file holding the password, which a helper of ours reads at the moment git asks. The helper is
configured for the repository's host only (``credential.https://host.helper``), after
clearing any helper of the user's own configuration, so that no ``store`` helper ever writes
the password to disk; the password is never in a URL, an argument, a log or a record.

TLS is verified against ``ca_file`` when one is given. ``GIT_SSL_CAINFO`` wins over
``http.sslCAInfo``, and some machines export it pointing at the system bundle, so the CA is
set as that variable in git's own environment; ``GIT_SSL_NO_VERIFY`` is never passed on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from deploybook.environ import snapshot
from deploybook.errors import ConfigError

__all__ = ["GitAccess", "check_git_access", "repository_host"]

_USER_VAR = "DEPLOYBOOK_GIT_HELPER_USER"
_FILE_VAR = "DEPLOYBOOK_GIT_HELPER_PASSWORD_FILE"
# Answers git's `get` with the username and the password file's content; printf is the
# shell's own, so the password is never an argument of a program.
_FILE_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'printf "username=%s\\npassword=%s\\n" "${_USER_VAR}" "$(cat "${_FILE_VAR}")"; }}; f'
)
_NEVER_PASSED = ("GIT_SSL_NO_VERIFY",)


def repository_host(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) repository URL (None for other transports)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


@dataclass(frozen=True)
class GitAccess:
    """The ``-c`` settings and the environment a git command runs with (no secret in either).

    ``credential_helper`` is a command as ``credential.helper`` takes it; ``username`` and
    ``password_file`` name the file holding the password; ``ca_file`` is the CA to trust.
    """

    credential_helper: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None

    @property
    def described(self) -> str:
        """Where the credentials come from, for error messages."""
        if self.credential_helper:
            return f"credential helper {self.credential_helper}"
        if self.password_file:
            return f"user {self.username} with the password in {self.password_file}"
        return "git's own credential configuration"

    def config_args(self, url: str) -> list[str]:
        """``-c`` options for a command that talks to ``url``."""
        args = ["-c", "http.sslVerify=true"]
        helper = self.credential_helper or (_FILE_HELPER if self.password_file else None)
        host = repository_host(url)
        if helper and host:
            args += ["-c", "credential.helper=", "-c", f"credential.{host}.helper={helper}"]
        return args

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a git command: no prompt, the CA, the password file's location."""
        env = {k: v for k, v in (snapshot() if base is None else base).items() if k not in _NEVER_PASSED}
        env["GIT_TERMINAL_PROMPT"] = "0"  # a release never waits for someone to type
        if self.ca_file:
            env["GIT_SSL_CAINFO"] = self.ca_file
        if self.credential_helper or self.password_file:
            env["GIT_ASKPASS"] = ""  # only the configured helper answers
            env.pop("SSH_ASKPASS", None)
        if self.password_file and self.username:
            env[_USER_VAR], env[_FILE_VAR] = self.username, self.password_file
        return env

    def password_for(self, url: str, timeout: float = 30.0) -> str | None:
        """The password git would send to ``url``'s host (``git credential fill``), or None.

        Only for the evidence's secret scan: a value it knows is a value it can find.
        """
        host = repository_host(url)
        if host is None or not (self.credential_helper or self.password_file):
            return None
        scheme, _, netloc = host.partition("://")
        try:
            done = subprocess.run(
                ["git", *self.config_args(url), "credential", "fill"],
                input=f"protocol={scheme}\nhost={netloc}\n\n",
                env=self.environ(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = [ln.partition("=")[2] for ln in done.stdout.splitlines() if ln.startswith("password=")]
        return found[0] if done.returncode == 0 and found else None


def check_git_access(access: GitAccess) -> None:
    """The references resolve: the CA and password files are readable, the helper exists.

    Raises ConfigError naming the key (``git.password_file``, ...) and the file; the
    password itself is only read to see that it is not empty.
    """
    if access.ca_file and not Path(access.ca_file).is_file():
        raise ConfigError(f"CA file {access.ca_file} does not exist", key="git.ca_file", hint="fix the path")
    if access.password_file:
        _check_password_file(Path(access.password_file))
    program = (access.credential_helper or "").split(" ", 1)[0]
    if program and os.path.isabs(program) and not os.access(program, os.X_OK):
        raise ConfigError(
            f"credential helper {program} is not an executable file",
            key="git.credential_helper",
            hint="fix the path, or name a helper git knows (git credential-NAME)",
        )


def _check_password_file(path: Path) -> None:
    try:
        empty = not path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(
            f"cannot read git password file {path}: {e.strerror}",
            key="git.password_file",
            hint="create the file (mode 0600) or fix git.password_file",
        ) from e
    if empty:
        raise ConfigError(f"git password file {path} is empty", key="git.password_file")
