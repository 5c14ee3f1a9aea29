"""Environment files: ``environments/NAME.yaml`` loaded into a frozen, validated object.

Every value is checked before anything touches a registry or a cluster; a bad value raises
one :class:`~deploybook.errors.ConfigError` naming the file, the line and the key (for
example ``environments/dev.yaml:14: key 'services[1].port'``) and what is allowed.

``${VAR}`` (or ``${VAR:-default}``) is expanded in addresses, user names and paths so the
same file works with the local stack's exported variables. Secrets are never values here:
a password is named by the variable or file that holds it, or taken from the Docker config.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploybook.errors import ConfigError, UnknownEnvironment

ENVIRONMENTS_DIR = "environments"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


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


def known_environments(directory: Path) -> list[str]:
    """Names of the environment files in ``directory``, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_environment(name: str, directory: Path | str = ENVIRONMENTS_DIR) -> Environment:
    """Load and validate ``directory/NAME.yaml``.

    Raises UnknownEnvironment (listing the known names) or ConfigError (file, line, key).
    """
    directory = Path(directory).resolve()
    file = directory / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not file.is_file():
        known = ", ".join(known_environments(directory)) or "none"
        raise UnknownEnvironment(
            f"unknown environment {name!r}",
            file=str(directory),
            hint=f"use --env with one of: {known}",
        )
    return parse_environment(file.read_text(), file=file, name=name, root=directory.parent)


def key_line(file: Path, key: str) -> int | None:
    """The 1-based line of a dotted ``key`` (e.g. ``registry.password_env``) in a YAML file."""
    try:
        node = yaml.compose(file.read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if k.value == part), None)
        if node is None:
            return None
    return int(node.start_mark.line) + 1 if node is not None else None


def parse_environment(text: str, *, file: Path, name: str, root: Path) -> Environment:
    """Validate the YAML ``text`` of an environment file into an Environment."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(
            f"malformed YAML: {problem}",
            file=str(file),
            line=mark.line + 1 if mark else None,
            hint="fix the YAML syntax at that line",
        ) from e
    doc = _Node(node, str(file), "") if node is not None else None
    if doc is None or not isinstance(doc.node, yaml.MappingNode):
        raise ConfigError("an environment file must be a mapping", file=str(file), line=1)
    return _environment(doc, name=name, file=file, root=root)


def _environment(doc: _Node, *, name: str, file: Path, root: Path) -> Environment:
    doc.only(
        "description",
        "cluster",
        "registry",
        "branch",
        "manifests",
        "services",
        "timeouts",
        "pull_secret",
        "promote_from",
        "lock_duration_s",
    )
    promote_from = doc.opt_str("promote_from")
    if promote_from == name:
        doc.fail("promote_from", "an environment cannot promote from itself")
    services = _services(doc.child("services"), root)
    if not services:
        doc.fail("services", "at least one service is required")
    return Environment(
        name=name,
        file=file,
        root=root,
        description=doc.opt_str("description") or "",
        cluster=_cluster(doc.child("cluster")),
        registry=_registry(doc.child("registry")),
        branch=_branch(doc.child("branch")),
        manifests=_manifests(doc.child("manifests"), root),
        services=services,
        timeouts=_timeouts(doc.opt_child("timeouts")),
        pull_secret=doc.opt_str("pull_secret", dns=True),
        promote_from=promote_from,
        lock_duration_s=doc.opt_int("lock_duration_s", minimum=10) or 1800,
    )


def _cluster(n: _Node) -> ClusterConfig:
    n.only("context", "namespace", "kubeconfig", "in_cluster")
    in_cluster = n.opt_bool("in_cluster")
    context = n.opt_str("context", expand=True)
    if in_cluster and context:
        n.fail("in_cluster", "in_cluster and context exclude each other")
    return ClusterConfig(
        namespace=n.text("namespace", dns=True),
        context=context,
        kubeconfig=n.opt_str("kubeconfig", expand=True),
        in_cluster=in_cluster,
    )


def _registry(n: _Node) -> RegistryConfig:
    n.only("address", "username", "password_env", "password_file", "docker_config", "ca_file")
    cfg = RegistryConfig(
        address=n.text("address", expand=True),
        username=n.opt_str("username", expand=True),
        password_env=n.opt_str("password_env"),
        password_file=n.opt_str("password_file", expand=True),
        docker_config=n.opt_bool("docker_config"),
        ca_file=n.opt_str("ca_file", expand=True),
    )
    sources = [k for k in ("password_env", "password_file") if getattr(cfg, k)]
    if cfg.docker_config:
        sources.append("docker_config")
    if len(sources) > 1:
        n.fail(sources[1], f"choose one credential source, not {' and '.join(sources)}")
    if (cfg.password_env or cfg.password_file) and not cfg.username:
        n.fail("username", "a username is required with password_env or password_file")
    if "://" in cfg.address or cfg.address.endswith("/"):
        n.fail("address", f"{cfg.address!r} must be HOST[:PORT] without scheme or slash")
    return cfg


def _branch(n: _Node) -> BranchRule:
    n.only("name", "clean_tree")
    if not n.has("name"):
        n.fail("name", "required (a branch name, or null for any branch)")
    return BranchRule(name=n.opt_str("name"), clean_tree=n.opt_bool("clean_tree"))


def _manifests(n: _Node, root: Path) -> ManifestSource:
    n.only("path", "git")
    if n.has("path") == n.has("git"):
        n.fail("path", "give exactly one of 'path' (in this repository) or 'git' (url, ref, path)")
    if n.has("path"):
        return ManifestSource(path=root / n.text("path", expand=True))
    g = n.child("git")
    g.only("url", "ref", "path")
    return ManifestSource(
        git=GitSource(url=g.text("url", expand=True), ref=g.text("ref"), path=g.opt_str("path") or ".")
    )


def _services(n: _Node, root: Path) -> tuple[Service, ...]:
    seen: set[str] = set()
    services = []
    for item in n.items():
        svc = _service(item, root)
        if svc.name in seen:
            item.fail("name", f"duplicate service name {svc.name!r}")
        seen.add(svc.name)
        services.append(svc)
    return tuple(services)


def _service(n: _Node, root: Path) -> Service:
    n.only("name", "context", "dockerfile", "image", "port", "manifest", "replicas", "http", "prepare")
    context = root / n.text("context", expand=True)
    port = n.opt_int("port", minimum=1)
    if port is not None and port > 65535:
        n.fail("port", f"{port} is not a TCP port (1-65535)")
    http = tuple(_http_check(c) for c in n.child("http").items()) if n.has("http") else ()
    if http and port is None:
        n.fail("http", "http checks need the service's 'port'")
    return Service(
        name=n.text("name", dns=True),
        context=context,
        dockerfile=context / (n.opt_str("dockerfile") or "Dockerfile"),
        image=n.text("image"),
        manifest=n.text("manifest"),
        port=port,
        replicas=n.opt_int("replicas", minimum=0),
        http=http,
        prepare=tuple(shlex.split(n.opt_str("prepare") or "")),
    )


def _http_check(n: _Node) -> HttpCheck:
    n.only("path", "expect_status", "expect_json", "expect_text", "latency_ms")
    path = n.text("path")
    if not path.startswith("/"):
        n.fail("path", f"{path!r} must start with '/'")
    status = n.opt_int("expect_status", minimum=100)
    if status is not None and status > 599:
        n.fail("expect_status", f"{status} is not an HTTP status")
    if n.has("expect_json") and n.has("expect_text"):
        n.fail("expect_text", "choose expect_json or expect_text, not both")
    expect_json = n.child("expect_json").value() if n.has("expect_json") else None
    if expect_json is not None and not isinstance(expect_json, dict):
        n.fail("expect_json", "must be a mapping of field: expected value")
    return HttpCheck(
        path=path,
        expect_status=status or 200,
        expect_json=expect_json,
        expect_text=n.opt_str("expect_text"),
        latency_ms=n.opt_int("latency_ms", minimum=1),
    )


def _timeouts(n: _Node | None) -> Timeouts:
    if n is None:
        return Timeouts()
    n.only("build", "push", "rollout", "http")
    default = Timeouts()
    return Timeouts(**{k: n.opt_float(k) or getattr(default, k) for k in ("build", "push", "rollout", "http")})


class _Node:
    """A composed YAML node that remembers its file and key path, for located errors."""

    def __init__(self, node: yaml.Node, file: str, key: str) -> None:
        self.node = node
        self.file = file
        self.key = key

    def _path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, message: str, node: yaml.Node | None = None, hint: str | None = None) -> None:
        target = node or self._entry(name)[1] or self.node
        line = target.start_mark.line + 1
        raise ConfigError(message, file=self.file, line=line, key=self._path(name), hint=hint)

    def _entry(self, name: str) -> tuple[yaml.Node | None, yaml.Node | None]:
        if isinstance(self.node, yaml.MappingNode):
            for k, v in self.node.value:
                if k.value == name:
                    return k, v
        return None, None

    def only(self, *allowed: str) -> None:
        if not isinstance(self.node, yaml.MappingNode):
            raise ConfigError(
                "must be a mapping", file=self.file, line=self.node.start_mark.line + 1, key=self.key or None
            )
        for k, _ in self.node.value:
            if k.value not in allowed:
                self.fail(k.value, f"unknown key (allowed: {', '.join(allowed)})", k)

    def has(self, name: str) -> bool:
        return self._entry(name)[1] is not None

    def child(self, name: str) -> _Node:
        value = self._entry(name)[1]
        if value is None:
            self.fail(name, "required key is missing")
        assert value is not None
        return _Node(value, self.file, self._path(name))

    def opt_child(self, name: str) -> _Node | None:
        return self.child(name) if self.has(name) else None

    def items(self) -> list[_Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise ConfigError("must be a list", file=self.file, line=self.node.start_mark.line + 1, key=self.key)
        return [_Node(v, self.file, f"{self.key}[{i}]") for i, v in enumerate(self.node.value)]

    def value(self) -> Any:
        return yaml.SafeLoader("").construct_object(self.node, deep=True)

    def _scalar(self, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        if not self.has(name):
            return None
        value = self.child(name).value()
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(name, f"expected {what}, got {value!r}")
        return value

    def text(self, name: str, *, expand: bool = False, dns: bool = False) -> str:
        value = self.opt_str(name, expand=expand, dns=dns)
        if not value:
            self.fail(name, "required, a non-empty string")
        assert value is not None
        return value

    def opt_str(self, name: str, *, expand: bool = False, dns: bool = False) -> str | None:
        value = self._scalar(name, str, "a string")
        if value is not None and expand:
            value = self._expand(name, value) or None
        if value is not None and dns and not _DNS_LABEL.match(value):
            self.fail(name, f"{value!r} is not a DNS label (lower case letters, digits, '-')")
        return None if value is None else str(value)

    def _expand(self, name: str, value: str) -> str:
        def substitute(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(3)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            self.fail(name, f"${{{var}}} is not set", hint=f'export {var} (local stack: eval "$(stack/env)")')
            return ""

        return _VAR.sub(substitute, value)

    def opt_bool(self, name: str) -> bool:
        return bool(self._scalar(name, bool, "true or false"))

    def opt_int(self, name: str, *, minimum: int) -> int | None:
        value = self._scalar(name, int, "an integer")
        if value is not None and value < minimum:
            self.fail(name, f"{value} is below the minimum {minimum}")
        return None if value is None else int(value)

    def opt_float(self, name: str) -> float | None:
        value = self._scalar(name, (int, float), "a number of seconds")
        if value is not None and value <= 0:
            self.fail(name, f"{value} must be positive")
        return float(value) if value is not None else None
