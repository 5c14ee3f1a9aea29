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
    "POLICY_NAMES",
    "BranchRule",
    "ClusterConfig",
    "Confinement",
    "Environment",
    "GitConfig",
    "GitSource",
    "HttpCheck",
    "ManifestSource",
    "PolicySetting",
    "RegistryConfig",
    "Service",
    "ServiceSource",
    "Timeouts",
]


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster is: a kubeconfig context, or the pod's own service account."""

    namespace: str
    context: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    read_only_context: str | None = None  # for checks alone and status: may read, may not write


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
class GitConfig:
    """How git reaches the environment's repositories: credentials by reference, and the CA.

    ``credential_helper`` is a git credential helper command (as ``credential.helper`` takes
    it); ``username`` with ``password_file`` names a file holding the password. Neither is a
    secret; the password is read by git's helper protocol at fetch time, never stored here.
    """

    credential_helper: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True)
class ServiceSource:
    """A service's code in a git repository: fetched at ``ref`` (None: the environment's branch).

    ``path`` is the build context inside the repository, ``dockerfile`` relative to it, and
    ``prepare`` a command run in the checkout's root before the build.
    """

    url: str
    ref: str | None = None
    path: str = "."
    dockerfile: str = "Dockerfile"
    prepare: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestSource:
    """Where the manifests are: a directory of this repository, a git repository, or a folder
    of each service's own source repository (``service_path``); exactly one is set."""

    path: Path | None = None
    git: GitSource | None = None
    service_path: str | None = None

    def describe(self) -> str:
        """Short human form, for logs and the release record."""
        if self.git:
            return f"{self.git.url}@{self.git.ref}:{self.git.path}"
        if self.service_path is not None:
            return f"each service's source repository:{self.service_path}"
        return str(self.path)


POLICY_NAMES = ("non_root", "port_listening", "resources_requested", "no_latest_tag")
"""The built-in policies (``deploybook.config.policies``), every one enforced unless relaxed."""


@dataclass(frozen=True)
class PolicySetting:
    """One policy as a file sets it: enforced, or relaxed with a reason; ``where`` is file:line."""

    policy: str
    enforce: bool = True
    reason: str = ""
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the release record keeps."""
        return {"policy": self.policy, "enforce": self.enforce, "reason": self.reason, "where": self.where}


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
    # The code from a git repository instead: then context, dockerfile and prepare above are
    # not used; the source's own are, inside its checkout.
    source: ServiceSource | None = None
    policies: tuple[PolicySetting, ...] = ()  # this service's own settings, over the environment's
    build_args: tuple[tuple[str, str], ...] = ()  # docker build --build-arg NAME=VALUE, in file order
    target: str | None = None  # docker build --target: the Dockerfile stage the image ends at


@dataclass(frozen=True)
class Confinement:
    """What a release may write outside its own namespace: nothing, unless named here.

    ``cluster_scoped`` holds ``Kind/name`` of each cluster-scoped object the release may own
    (a ClusterRole, say); ``namespaces`` the other namespaces its manifests may name.
    """

    cluster_scoped: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each kind of wait, and how long a failing probe is waited for.

    ``probe_failures_allowed`` is a failure budget per replica (as werf's
    failures-allowed-per-replica): a pod not ready whose readiness or liveness probe failed
    more often than this ends its rollout before the deadline. With the kubelet's default
    probe period (10 s), the default of 2 ends it at the third failure, about 20 s after the
    first.

    ``crashes_allowed`` is how many times each container may exit (non-zero) during a rollout
    and be restarted without failing it; by default none. One is the setting for a service
    that exits once when a dependency released beside it is not up yet, as it may under
    ``kubectl rollout status``; the verdict on a real crash loop then comes at the second exit,
    after the kubelet's first back-off (about 10 s).
    """

    build: float = 600.0
    push: float = 300.0
    rollout: float = 300.0
    http: float = 10.0
    probe_failures_allowed: int = 2
    crashes_allowed: int = 0


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
    git: GitConfig = GitConfig()
    confinement: Confinement = Confinement()
    policies: tuple[PolicySetting, ...] = ()  # for every service; a service's own win

    def policies_for(self, service: Service) -> dict[str, PolicySetting]:
        """Every built-in policy as it holds for ``service``: its own setting, else the
        environment's, else enforced."""
        settings = {name: PolicySetting(name) for name in POLICY_NAMES}
        settings.update({s.policy: s for s in self.policies})
        settings.update({s.policy: s for s in service.policies})
        return settings

    def relaxed_policies(self) -> list[tuple[str, PolicySetting]]:
        """``(service, setting)`` of every policy relaxed for a service, in service order."""
        return [
            (svc.name, setting)
            for svc in self.services
            for setting in self.policies_for(svc).values()
            if not setting.enforce
        ]

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

    def written_names(self, service: Service) -> tuple[str, str]:
        """How a manifest may write the service's image, tag or digest aside: its name
        (``dx29/web``) or its full repository in this environment's registry."""
        return service.image, self.image_repository(service)

    @property
    def built_names(self) -> frozenset[str]:
        """Every name a manifest may write a service's image as (see ``written_names``)."""
        return frozenset(name for s in self.services for name in self.written_names(s))

    def source_ref(self, service: Service) -> str | None:
        """The ref a git-sourced service is fetched at: its own, else the branch rule's."""
        if service.source is None:
            return None
        return service.source.ref or self.branch.name or "HEAD"

    @property
    def project_is_source(self) -> bool:
        """True when this checkout is part of what is released, so the branch rule holds it:
        a service builds from it, the manifests are in it, or the environment only promotes
        (its environment files and runbook decide what goes live)."""
        builds_here = any(s.source is None for s in self.services)
        return builds_here or self.manifests.path is not None or self.promote_from is not None
