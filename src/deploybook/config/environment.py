"""Environment files: ``environments/NAME.yaml`` loaded into a frozen, validated object.

An environment file says what differs per environment: the cluster context and namespace,
the registry and where its credentials come from, the branch rule, where the manifests come
from, timeouts, the lock, the policies (``deploybook.config.policies``), and per-service
overrides (``replicas``, ``http``, ``source``, ``policies``) of the app's services, which are
declared once in ``app.yaml`` (``deploybook.config.app``).

Every value is checked before anything touches a registry or a cluster; a bad value raises
one :class:`~deploybook.errors.ConfigError` naming the file, the line and the key (for
example ``environments/dev.yaml:14: key 'services.gateway.replicas'``) and what is allowed.
Secrets are never values here: a password is named by the variable or file that holds it,
or taken from the Docker config.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import yaml

from deploybook.config.app import APP_FILE, apply_overrides, load_app, services
from deploybook.config.model import (
    BranchRule,
    ClusterConfig,
    Confinement,
    Environment,
    GitSource,
    ManifestSource,
    RegistryConfig,
    Service,
    Timeouts,
)
from deploybook.config.policies import policy_settings
from deploybook.config.sources import git_config, repository_url
from deploybook.config.yamlnode import Node, compose
from deploybook.errors import ConfigError, UnknownEnvironment

__all__ = ["ENVIRONMENTS_DIR", "key_line", "known_environments", "load_environment", "parse_environment"]

ENVIRONMENTS_DIR = "environments"


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
        node = compose(file.read_text())
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
        node = compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(
            f"malformed YAML: {problem}",
            file=str(file),
            line=mark.line + 1 if mark else None,
            hint="fix the YAML syntax at that line",
        ) from e
    doc = Node(node, str(file), "") if node is not None else None
    if doc is None or not isinstance(doc.node, yaml.MappingNode):
        raise ConfigError("an environment file must be a mapping", file=str(file), line=1)
    return _environment(doc, name=name, file=file, root=root)


def _environment(doc: Node, *, name: str, file: Path, root: Path) -> Environment:
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
        "git",
        "confinement",
        "policies",
    )
    promote_from = doc.opt_str("promote_from")
    if promote_from == name:
        doc.fail("promote_from", "an environment cannot promote from itself")
    manifests = _manifests(doc.child("manifests"), root)
    declared = _services(doc, root)
    _check_service_sources(doc.child("manifests"), manifests, declared)
    _one_manifest_each(doc.child("manifests"), manifests, declared)
    return Environment(
        name=name,
        file=file,
        root=root,
        description=doc.opt_str("description") or "",
        cluster=_cluster(doc.child("cluster")),
        registry=_registry(doc.child("registry")),
        branch=_branch(doc.child("branch")),
        manifests=manifests,
        services=declared,
        timeouts=_timeouts(doc.opt_child("timeouts")),
        pull_secret=doc.opt_str("pull_secret", dns=True),
        promote_from=promote_from,
        lock_duration_s=doc.opt_int("lock_duration_s", minimum=10) or 1800,
        git=git_config(doc.opt_child("git")),
        confinement=_confinement(doc.opt_child("confinement")),
        policies=policy_settings(doc.opt_child("policies")),
    )


def _services(doc: Node, root: Path) -> tuple[Service, ...]:
    """The app's services with this environment's overrides (a mapping), or the file's own
    complete list of services (a list: a self-contained environment, as a test writes one)."""
    own = doc.opt_child("services")
    if own is not None and isinstance(own.node, yaml.SequenceNode):
        return services(own, root)
    declared = load_app(root)
    if declared is None:
        doc.fail("services", f"required: a list of services here, or {APP_FILE} in {root} declaring them")
    return declared if own is None else apply_overrides(declared, own)


def _cluster(n: Node) -> ClusterConfig:
    n.only("context", "namespace", "kubeconfig", "in_cluster", "read_only_context")
    in_cluster = n.opt_bool("in_cluster")
    context = n.opt_str("context", expand=True)
    if in_cluster and context:
        n.fail("in_cluster", "in_cluster and context exclude each other")
    return ClusterConfig(
        namespace=n.text("namespace", dns=True),
        context=context,
        kubeconfig=n.opt_str("kubeconfig", expand=True),
        in_cluster=in_cluster,
        read_only_context=n.opt_str("read_only_context", expand=True),
    )


def _registry(n: Node) -> RegistryConfig:
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


def _branch(n: Node) -> BranchRule:
    n.only("name", "clean_tree")
    if not n.has("name"):
        n.fail("name", "required (a branch name, or null for any branch)")
    return BranchRule(name=n.opt_str("name"), clean_tree=n.opt_bool("clean_tree"))


def _manifests(n: Node, root: Path) -> ManifestSource:
    n.only("path", "git", "service_source")
    if sum(n.has(k) for k in ("path", "git", "service_source")) != 1:
        n.fail(
            "path",
            "give exactly one of 'path' (in this repository), 'git' (url, ref, path) or "
            "'service_source' (a folder of each service's own source repository)",
        )
    if n.has("path"):
        return ManifestSource(path=root / n.text("path", expand=True))
    if n.has("service_source"):
        return ManifestSource(service_path=n.text("service_source"))
    g = n.child("git")
    g.only("url", "ref", "path")
    return ManifestSource(git=GitSource(url=repository_url(g, "url"), ref=g.text("ref"), path=g.opt_str("path") or "."))


def _check_service_sources(n: Node, manifests: ManifestSource, declared: tuple[Service, ...]) -> None:
    """Manifests from each service's source need every service to have one."""
    if manifests.service_path is None:
        return
    missing = [s.name for s in declared if s.source is None]
    if missing:
        n.fail(
            "service_source",
            f"needs a git source for every service; none for: {', '.join(missing)}",
            hint="give each service a 'source' (app.yaml, or under services: here), or read the manifests from a path",
        )


def _one_manifest_each(n: Node, manifests: ManifestSource, declared: tuple[Service, ...]) -> None:
    """Manifests read from one place: no two services may name the same file or folder (nor a
    folder and a file in it). Every object would be in two services' manifests, each release of
    one overwriting the other's pins. From each service's own repository, one path is two files."""
    if manifests.service_path is not None:
        return
    seen: list[tuple[PurePosixPath, str]] = []
    for svc in declared:
        mine = PurePosixPath(svc.manifest)
        for theirs, first in seen:
            if mine == theirs or theirs in mine.parents or mine in theirs.parents:
                n.fail(
                    "",
                    f"services {first!r} and {svc.name!r} both take their manifests from "
                    + (f"{str(mine)!r}" if mine == theirs else f"{str(theirs)!r} and {str(mine)!r}"),
                    hint="an object belongs to one service's manifests: give each service its own file or folder "
                    "(the other service's pods may use its ConfigMaps and Services all the same)",
                )
        seen.append((mine, svc.name))


_OBJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$")


def _confinement(n: Node | None) -> Confinement:
    if n is None:
        return Confinement()
    n.only("cluster_scoped", "namespaces")
    objects, namespaces = set(), set()
    for item in n.child("cluster_scoped").items() if n.has("cluster_scoped") else []:
        value = item.value()
        if not isinstance(value, str) or not _OBJECT_NAME.match(value):
            n.fail("cluster_scoped", f"expected Kind/name (ClusterRole/dx29-reader), got {value!r}", item.node)
        objects.add(value)
    for item in n.child("namespaces").items() if n.has("namespaces") else []:
        value = item.value()
        if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value):
            n.fail("namespaces", f"expected a namespace name, got {value!r}", item.node)
        namespaces.add(value)
    return Confinement(cluster_scoped=frozenset(objects), namespaces=frozenset(namespaces))


def _timeouts(n: Node | None) -> Timeouts:
    if n is None:
        return Timeouts()
    n.only("build", "push", "rollout", "http", "probe_failures_allowed", "crashes_allowed")
    default = Timeouts()
    seconds = {k: n.opt_float(k) or getattr(default, k) for k in ("build", "push", "rollout", "http")}
    probes, crashes = (n.opt_int(k, minimum=0) for k in ("probe_failures_allowed", "crashes_allowed"))
    return Timeouts(
        **seconds,
        probe_failures_allowed=default.probe_failures_allowed if probes is None else probes,
        crashes_allowed=default.crashes_allowed if crashes is None else crashes,
    )
