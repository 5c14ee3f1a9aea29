"""The environment's cluster, Docker engine and registry, each connected once, on first use.

Every part of a release (the stages, the checks, the record) reaches the outside world
through one :class:`Clients`, shared by the threads of the pipeline: the kubernetes client's
connection pool, docker-py's and requests' are safe to use from several threads. A run that
never builds never connects to a Docker engine; a checks run never asks for one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import docker
import docker.errors
from docker import DockerClient

from deploybook.cluster.connect import KubeClients, connect
from deploybook.config.environment import load_environment
from deploybook.config.model import Environment
from deploybook.environ import proxies_for, snapshot
from deploybook.errors import BuildError
from deploybook.images.credentials import RegistryAuth, registry_host
from deploybook.images.registry import RegistryClient
from deploybook.images.resolve import ImageResolver, client_factory
from deploybook.release.credentials import resolve_registry_auth

__all__ = ["Clients", "connect_environment"]

T = TypeVar("T")


def connect_environment(environment: Environment, context: str | None = None) -> KubeClients:
    """API clients for ``environment``'s cluster (``context`` wins over the file's)."""
    cluster = environment.cluster
    return connect(
        context=context or cluster.context,
        kubeconfig=cluster.kubeconfig,
        in_cluster=True if cluster.in_cluster else None,
    )


class Clients:
    """Lazily connected clients for one environment (``kube_context`` overrides its context)."""

    def __init__(self, environment: Environment, *, kube_context: str | None = None) -> None:
        self.environment = environment
        self.kube_context = kube_context
        self._lock = threading.RLock()  # a client may need another one made first (registry: its auth)
        self._made: dict[str, object] = {}

    def _once(self, name: str, make: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._made:
                self._made[name] = make()
            return self._made[name]  # type: ignore[return-value]

    def connected(self, name: str) -> bool:
        """True once ``name`` (kube, docker, registry) has been connected."""
        return name in self._made

    @property
    def kube(self) -> KubeClients:
        """The environment's cluster, checked to answer when first connected."""
        return self._once("kube", lambda: connect_environment(self.environment, self.kube_context))

    @property
    def registry_auth(self) -> RegistryAuth | None:
        """Credentials for the environment's registry (resolved from their reference)."""
        return self._once("registry_auth", lambda: resolve_registry_auth(self.environment))

    @property
    def registry(self) -> RegistryClient:
        """The registry's v2 API with the environment's credentials and CA."""
        reg, timeouts = self.environment.registry, self.environment.timeouts
        return self._once(
            "registry",
            lambda: RegistryClient(reg.address, self.registry_auth, ca_file=reg.ca_file, timeout=timeouts.http),
        )

    @property
    def image_resolver(self) -> ImageResolver:
        """Pins images no service builds to digests: the release's registry with its credentials
        and CA, any other with the Docker configuration's credentials for it, or anonymously."""
        reg, timeouts = self.environment.registry, self.environment.timeouts

        def make(host: str, auth: RegistryAuth | None, ca_file: str | None) -> RegistryClient:
            if host == registry_host(reg.address):
                return self.registry
            return RegistryClient(host, auth, ca_file=ca_file, timeout=timeouts.http)

        return self._once(
            "image_resolver",
            lambda: ImageResolver(
                client_factory(
                    make, release_registry=reg.address, release_auth=self.registry_auth, release_ca=reg.ca_file
                )
            ),
        )

    @property
    def source_environment(self) -> Environment:
        """The environment this deploy-only one promotes from (its file beside this one's)."""
        env = self.environment
        assert env.promote_from is not None, f"{env.name} promotes nothing"
        return self._once("source_environment", lambda: load_environment(str(env.promote_from), env.file.parent))

    @property
    def source_registry(self) -> RegistryClient:
        """The registry of the source environment, with its credentials and CA: where the
        promoted images are read from."""
        source = self.source_environment
        reg = source.registry
        return self._once(
            "source_registry",
            lambda: RegistryClient(
                reg.address, resolve_registry_auth(source), ca_file=reg.ca_file, timeout=self.environment.timeouts.http
            ),
        )

    def promoted_repository(self, service: str) -> str:
        """Where the source environment keeps ``service``'s images (its own registry and name)."""
        source = self.source_environment
        return source.image_repository(source.service(service))

    @property
    def docker(self) -> DockerClient:
        """The Docker engine from ``DOCKER_HOST`` (as the docker CLI finds it), checked to answer."""
        return self._once("docker", self._docker)

    def _docker(self) -> DockerClient:
        where = os.environ.get("DOCKER_HOST", "the default Docker socket")
        try:
            client = docker.from_env(timeout=int(self.environment.timeouts.build))
            # Its API client is a requests session: read the environment once (deploybook.environ).
            client.api.trust_env = False
            client.api.proxies = proxies_for(client.api.base_url, snapshot())
            client.ping()
        except docker.errors.DockerException as e:
            raise BuildError(
                f"Docker engine not reachable: {e}",
                source=where,
                hint='start the engine or set DOCKER_HOST (local stack: eval "$(stack/env)")',
            ) from e
        return client

    def close(self) -> None:
        """Close what was opened (the Docker client's connections)."""
        client = self._made.get("docker")
        if isinstance(client, DockerClient):
            client.close()
