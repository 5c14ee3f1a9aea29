"""What the app and its environments are, as frozen objects: the shape every part of a run reads.

Made by ``deploybook.config.environment`` from the app definition and an environment file,
after every value was checked; nothing here reads a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BranchRule",
    "ClusterConfig",
    "Environment",
    "GitSource",
    "HttpCheck",
    "ManifestSource",
    "RegistryConfig",
    "Service",
    "Timeouts",
]


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster is: a kubeconfig context, or the pod's own service account."""

    namespace: str
    context: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False


@dataclass(frozen=True)
class RegistryConfig:
    """The registry and how to find its credentials (never the password itself)."""

    address: str
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    docker_config: bool = False
    ca_file: str | None = None


@dataclass(frozen=True)
class BranchRule:
    """Which branch may release here (``None``: any) and whether the tree must be clean."""

    name: str | None
    clean_tree: bool = False


@dataclass(frozen=True)
class GitSource:
    """Manifests kept in a separate git repository at a pinned ref."""

    url: str
    ref: str
    path: str = "."


@dataclass(frozen=True)
class ManifestSource:
    """Either a directory of this repository or a git repository; exactly one is set."""

    path: Path | None = None
    git: GitSource | None = None

    def describe(self) -> str:
        """Short human form, for logs and the release record."""
        if self.git:
            return f"{self.git.url}@{self.git.ref}:{self.git.path}"
        return str(self.path)


@dataclass(frozen=True)
class HttpCheck:
    """One HTTP request a check sends to a Service, and what it expects back."""

    path: str
    expect_status: int = 200
    expect_json: Mapping[str, Any] | None = None
    expect_text: str | None = None
    latency_ms: int | None = None


@dataclass(frozen=True)
class Service:
    """One service of the app: how to build its image and which manifest deploys it."""

    name: str
    context: Path
    dockerfile: Path
    image: str
    manifest: str
    port: int | None = None
    replicas: int | None = None
    http: tuple[HttpCheck, ...] = ()
    prepare: tuple[str, ...] = ()  # a command run in the repository root before the build


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each kind of wait."""

    build: float = 600.0
    push: float = 300.0
    rollout: float = 300.0
    http: float = 10.0


@dataclass(frozen=True)
class Environment:
    """One target environment, as loaded from ``environments/NAME.yaml``."""

    name: str
    file: Path
    root: Path
    cluster: ClusterConfig
    registry: RegistryConfig
    branch: BranchRule
    manifests: ManifestSource
    services: tuple[Service, ...]
    timeouts: Timeouts = Timeouts()
    pull_secret: str | None = None
    promote_from: str | None = None
    lock_duration_s: int = 1800
    description: str = ""

    def service(self, name: str) -> Service:
        """The service called ``name``; KeyError names the known ones."""
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"no service {name!r} in {self.name} (known: {', '.join(self.service_names)})")

    @property
    def service_names(self) -> tuple[str, ...]:
        """Names of all services, in file order."""
        return tuple(s.name for s in self.services)

    def image_repository(self, service: Service) -> str:
        """Full repository of a service's image in this environment's registry."""
        return f"{self.registry.address}/{service.image}"
