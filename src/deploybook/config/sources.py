"""Where code comes from, in the app and environment files: a service's git source and the
environment's ``git`` settings (credentials by reference, the CA).

A URL is the one place a password could slip into a file that is read by everyone and
written into every record, so a URL that carries one (``https://user:secret@host/...``) is
refused with its file, line and key; credentials are named in the environment's ``git``
block instead, the way git users give them: a credential helper, or a username and the
file that holds the password.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from deploybook.config.model import GitConfig, ServiceSource
from deploybook.config.yamlnode import Node

__all__ = ["git_config", "repository_url", "service_source", "url_password"]


def url_password(url: str) -> bool:
    """True when ``url`` carries a password (``scheme://user:password@host``)."""
    if "://" not in url:
        return False  # scp-like ``user@host:path`` names a user only
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def repository_url(n: Node, key: str) -> str:
    """A git repository URL under ``key``, expanded, refused when it carries a password."""
    url = n.text(key, expand=True)
    if url_password(url):
        n.fail(
            key,
            "the URL carries a password; a URL is written into records and logs",
            hint="remove it from the URL and name the credentials in the environment's git "
            "settings (credential_helper, or username and password_file)",
        )
    return url


def service_source(n: Node) -> ServiceSource:
    """A service's ``source`` block: ``git`` (the URL), ``ref``, ``path``, ``dockerfile``, ``prepare``."""
    n.only("git", "ref", "path", "dockerfile", "prepare")
    path = n.opt_str("path") or "."
    if path.startswith("/") or ".." in path.split("/"):
        n.fail("path", f"{path!r} must be a folder inside the repository")
    return ServiceSource(
        url=repository_url(n, "git"),
        ref=n.opt_str("ref"),
        path=path,
        dockerfile=n.opt_str("dockerfile") or "Dockerfile",
        prepare=tuple(shlex.split(n.opt_str("prepare") or "")),
    )


def git_config(n: Node | None) -> GitConfig:
    """The environment's ``git`` block: one credential reference at most, and the CA file."""
    if n is None:
        return GitConfig()
    n.only("credential_helper", "username", "password_file", "ca_file")
    cfg = GitConfig(
        credential_helper=n.opt_str("credential_helper", expand=True),
        username=n.opt_str("username", expand=True),
        password_file=n.opt_str("password_file", expand=True),
        ca_file=n.opt_str("ca_file", expand=True),
    )
    if cfg.credential_helper and (cfg.username or cfg.password_file):
        n.fail("password_file" if cfg.password_file else "username", "choose credential_helper or a password file")
    if bool(cfg.username) != bool(cfg.password_file):
        n.fail("username" if cfg.password_file else "password_file", "username and password_file go together")
    return cfg
