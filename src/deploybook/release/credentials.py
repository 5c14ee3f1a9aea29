"""The registry credentials an environment file refers to, resolved (never stored).

Kept apart from the clients so that checking them, before any cluster contact, costs no
import of the Docker and Kubernetes clients.
"""

from __future__ import annotations

from deploybook.config.environment import key_line
from deploybook.config.model import Environment
from deploybook.errors import ConfigError
from deploybook.images.credentials import RegistryAuth, resolve_credentials

__all__ = ["resolve_registry_auth"]


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
