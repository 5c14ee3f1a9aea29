"""The credentials an environment file refers to, resolved (never stored): the registry's,
and git's (a credential helper or a password file, and the CA).

Kept apart from the clients so that checking them, before any cluster contact, costs no
import of the Docker and Kubernetes clients.
"""

from __future__ import annotations

from deploybook.config.environment import key_line, load_environment
from deploybook.config.model import Environment
from deploybook.errors import ConfigError
from deploybook.images.credentials import RegistryAuth, resolve_credentials
from deploybook.release.sources import git_access
from deploybook.sources.access import check_git_access, repository_host

__all__ = ["check_git_references", "resolve_registry_auth", "run_secrets"]


def resolve_registry_auth(environment: Environment) -> RegistryAuth | None:
    """The registry credentials the environment file refers to.

    A reference that cannot be resolved (an unset variable, a missing file) is a ConfigError
    naming the environment file, the line and key of the reference, and the variable or file.
    The plugin resolves them before anything runs, so that is never found after the lock is
    taken and the images are built; the secret itself is never kept in the run state.
    """
    reg = environment.registry
    try:
        return resolve_credentials(
            reg.address, username=reg.username, password_env=reg.password_env, password_file=reg.password_file
        )
    except ConfigError as e:
        key = next((f"registry.{k}" for k in ("password_env", "password_file") if getattr(reg, k)), None)
        if e.file or key is None:
            raise
        raise ConfigError(
            e.message, file=str(environment.file), line=key_line(environment.file, key), key=key, hint=e.hint
        ) from e


def check_git_references(environment: Environment) -> None:
    """The git settings' files and helper exist (when the environment fetches anything with git).

    A ConfigError names the environment file, the line and key of the reference.
    """
    if environment.manifests.git is None and not any(s.source for s in environment.services):
        return
    try:
        check_git_access(git_access(environment))
    except ConfigError as e:
        key = e.key or "git"
        raise ConfigError(
            e.message.removeprefix(f"key '{key}': "),
            file=str(environment.file),
            line=key_line(environment.file, key),
            key=key,
            hint=e.hint,
        ) from e


def run_secrets(environment: Environment) -> set[str]:
    """Every secret value the environment file references, resolved: the registry's password
    (and, for a promotion, the source environment's), and what git is given for each of its
    repositories. The evidence is scanned for them; nothing else keeps them."""
    values: set[str] = set()
    envs = [environment]
    if environment.promote_from:
        envs.append(load_environment(environment.promote_from, environment.file.parent))
    for env in envs:
        try:
            auth = resolve_registry_auth(env)
        except ConfigError:
            auth = None
        if auth is not None:
            values.add(auth.password)
        access = git_access(env)
        for url in _repositories(env):
            password = access.password_for(url)
            if password:
                values.add(password)
    return values


def _repositories(env: Environment) -> set[str]:
    """One repository URL per host the environment fetches from (credentials go by host)."""
    urls = [s.source.url for s in env.services if s.source is not None]
    if env.manifests.git is not None:
        urls.append(env.manifests.git.url)
    return set({repository_host(url): url for url in urls}.values())
