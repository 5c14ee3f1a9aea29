"""The app definition: every service declared once, in ``app.yaml`` at the project root.

A service says how its image is built (context, Dockerfile, prepare command), which image
repository it is, which manifest deploys it, its port and its HTTP checks. Environment files
say only what differs per environment; for a service that is its ``replicas``, ``http``
checks and ``source`` (see :func:`apply_overrides`). A service's code is a folder of this
project (``context``) or a git repository (``source``: ``deploybook.config.sources``). An
environment file may instead declare its services itself, as a list of the same entries: it
is then complete on its own (a small project, or a test's throwaway environment), and
``app.yaml`` is not read for it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path

import yaml

from deploybook.config.model import HttpCheck, Service
from deploybook.config.policies import policy_settings
from deploybook.config.sources import service_source
from deploybook.config.yamlnode import Node, compose
from deploybook.errors import ConfigError

__all__ = ["APP_FILE", "OVERRIDABLE", "apply_overrides", "load_app", "services"]

APP_FILE = "app.yaml"
OVERRIDABLE = ("replicas", "http", "source", "policies", "build_args")


def load_app(root: Path) -> tuple[Service, ...] | None:
    """The services of ``root/app.yaml``, or None when the project has no app definition."""
    file = root / APP_FILE
    if not file.is_file():
        return None
    doc = _document(file)
    doc.only("name", "description", "services")
    return services(doc.child("services"), root)


def _document(file: Path) -> Node:
    try:
        node = compose(file.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(
            f"malformed YAML: {getattr(e, 'problem', None) or e}",
            file=str(file),
            line=mark.line + 1 if mark else None,
            hint="fix the YAML syntax at that line",
        ) from e
    if node is None or not isinstance(node, yaml.MappingNode):
        raise ConfigError("the app definition must be a mapping with 'services'", file=str(file), line=1)
    return Node(node, str(file), "")


def services(n: Node, root: Path) -> tuple[Service, ...]:
    """Service entries (a YAML list), each validated; names and images must be unique."""
    seen: set[str] = set()
    builds: dict[str, str] = {}  # image -> the service that builds it
    found = []
    for item in n.items():
        svc = _service(item, root)
        if svc.name in seen:
            item.fail("name", f"duplicate service name {svc.name!r}")
        if (first := builds.get(svc.image)) is not None:
            # Its pushed digest, its manifests' pinning and its checks are the service's: two
            # services of one image would each pin and check the other's.
            item.fail(
                "image",
                f"service {first!r} already builds image {svc.image!r}",
                hint=f"workloads that run one image are one service: put them all in the manifest of {first!r}",
            )
        seen.add(svc.name)
        builds[svc.image] = svc.name
        found.append(svc)
    if not found:
        n.fail("", "at least one service is required")
    return tuple(found)


def apply_overrides(declared: tuple[Service, ...], n: Node) -> tuple[Service, ...]:
    """The app's services with an environment's per-service overrides (name -> fields).

    Only ``replicas``, ``http``, ``source``, ``policies`` and ``build_args`` (arg by arg) may differ
    per environment; an override of a service the app does not declare, or of another field,
    names the environment file, line and key.
    """
    by_name = {s.name: s for s in declared}
    for name, override in n.entries():
        if name not in by_name:
            n.fail(name, f"no service {name!r} in {APP_FILE} (declared: {', '.join(by_name)})")
        override.only(*OVERRIDABLE)
        svc = by_name[name]
        if override.has("replicas"):
            svc = replace(svc, replicas=override.opt_int("replicas", minimum=0))
        if override.has("http"):
            if svc.port is None:
                override.fail("http", f"http checks need a port, and {APP_FILE} gives {name} none")
            svc = replace(svc, http=tuple(_http_check(c) for c in override.child("http").items()))
        if override.has("source"):
            svc = replace(svc, source=service_source(override.child("source")))
        if override.has("policies"):
            own = {s.policy: s for s in svc.policies}
            own.update({s.policy: s for s in policy_settings(override.child("policies"))})
            svc = replace(svc, policies=tuple(own.values()))
        if override.has("build_args"):  # arg by arg over the app's
            args = dict(svc.build_args) | dict(_build_args(override.child("build_args")))
            svc = replace(svc, build_args=tuple(args.items()))
        by_name[name] = svc
    return tuple(by_name[s.name] for s in declared)


def _service(n: Node, root: Path) -> Service:
    n.only(
        "name",
        "context",
        "dockerfile",
        "image",
        "port",
        "manifest",
        "replicas",
        "http",
        "prepare",
        "source",
        "policies",
        "build_args",
        "target",
    )
    source = service_source(n.child("source")) if n.has("source") else None
    # With a git source the code is in its checkout, and a context here is optional.
    context = root / (n.opt_str("context", expand=True) or ".") if source else root / n.text("context", expand=True)
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
        source=source,
        policies=policy_settings(n.opt_child("policies")),
        build_args=_build_args(n.opt_child("build_args")),
        target=n.opt_str("target"),
    )


# An ARG name as the Dockerfile reference has it; the two deploybook sets from the release.
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RELEASE_ARGS = ("VERSION", "REVISION")
# A word of the name (npmToken reads as npm_Token) that says secret, or a kind of key.
_SECRET_WORDS = re.compile(
    r"(?:^|_)(?:PASSWORD|PASSWD|SECRETS?|TOKEN|CREDENTIALS?|APIKEY)(?:_|$)|(?:API|ACCESS|PRIVATE)_?KEY", re.IGNORECASE
)


def _looks_secret(name: str) -> bool:
    return bool(_SECRET_WORDS.search(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)))


def _build_args(n: Node | None) -> tuple[tuple[str, str], ...]:
    """``build_args: {NAME: value}``: strings or numbers, ``${VAR}`` expanded; never a secret."""
    if n is None:
        return ()
    args = []
    for name, value in n.entries():
        if not _ARG_NAME.match(name):
            n.fail(name, f"{name!r} is not a build arg name (letters, digits and '_', not first a digit)")
        if name in _RELEASE_ARGS:
            n.fail(name, f"{name} is set by deploybook from the release (the image's OCI version and revision labels)")
        if _looks_secret(name):
            n.fail(
                name,
                f"{name} looks like a secret, and a build arg is kept in the image for anyone who can pull it "
                "(docker history shows it)",
                hint="give the secret to the running container instead (a Secret in the manifests, as env or a file)",
            )
        raw = value.value()
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            n.fail(name, f"expected a string or a number, got {raw!r}", hint='quote it: "true", "1.0"')
        text = n.opt_str(name, expand=True) if isinstance(raw, str) else str(raw)
        args.append((name, text or ""))
    return tuple(args)


def _http_check(n: Node) -> HttpCheck:
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
