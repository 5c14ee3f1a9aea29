"""Inside a running container: the user its process runs as and the TCP ports it listens on.

Reached with pytest-testinfra's kubectl backend, which runs `kubectl exec POD -c CONTAINER --
/bin/sh -c CMD`. The commands are chosen to work on busybox-based images without /etc/passwd
or netstat: `id -u` (a busybox applet) and `cat /proc/net/tcp /proc/net/tcp6` (the kernel's
socket tables; a listener bound to `::` shows only in tcp6, and tcp6 is absent when IPv6 is
off, so a non-zero exit with a table on stdout still counts).

Exec needs `create` on `pods/exec`, which the read-only `view` role does not grant:
`ExecForbidden` says so, so a read-only run can skip with that reason instead of failing.
Nothing here changes the cluster; the commands only read.

`policy_problems` judges what was seen against the runtime policies ``non_root`` and
``port_listening`` (``deploybook.config.policies``); a relaxed one is not judged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from deploybook.config.model import Environment, PolicySetting, Service
from deploybook.config.policies import relax_hint
from deploybook.errors import ExecFailed, ExecForbidden

__all__ = [
    "ContainerFacts",
    "FactsCache",
    "facts_key",
    "inspect_container",
    "judge_container",
    "kubectl_url",
    "listening_ports",
    "policy_problems",
    "runtime_relaxed",
]

RUNTIME_POLICIES = ("non_root", "port_listening")  # judged inside the container, after the rollout

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp{,6}
# One exec answers both questions (each exec is a kubectl process and a round trip through the
# API server): the user's id on the first line, then the TCP socket tables.
FACTS_COMMAND = "id -u; cat /proc/net/tcp /proc/net/tcp6"

RunCommand = Callable[[str], Any]  # returns an object with rc, stdout, stderr


@dataclass(frozen=True)
class ContainerFacts:
    """What was seen inside one container."""

    pod: str
    container: str
    uid: int
    listening: frozenset[int]


def facts_key(pod: Mapping[str, Any], container: str, digest: str | None) -> str | None:
    """What decides a container's user and listening ports: the image digest and the specs.

    Two containers with the same digest, the same container spec apart from name and image
    reference (command, args, env, ports, securityContext) and the same pod securityContext
    show the same facts, so one `kubectl exec` can answer for all of them. None when the
    digest is not known yet (nothing to share).
    """
    if not digest:
        return None
    spec = pod.get("spec", {})
    mine: Mapping[str, Any] = next((c for c in spec.get("containers", []) if c.get("name") == container), {})
    relevant = {k: v for k, v in mine.items() if k not in ("name", "image")}
    return json.dumps([digest, relevant, spec.get("securityContext") or {}], sort_keys=True)


def listening_ports(proc_net_tcp: str) -> set[int]:
    """Ports in state LISTEN in the text of /proc/net/tcp and/or /proc/net/tcp6."""
    ports = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def kubectl_url(
    pod: str,
    container: str,
    namespace: str,
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
) -> str:
    """The testinfra host spec for one container, with the same context as the API clients."""
    params = {"container": container, "namespace": namespace}
    if context:
        params["context"] = context
    # kubectl's --kubeconfig takes one file; a KUBECONFIG list is left to the environment.
    if kubeconfig and ":" not in kubeconfig:
        params["kubeconfig"] = kubeconfig
    return f"kubectl://{pod}?{urlencode(params)}"


def _testinfra_runner(url: str) -> RunCommand:
    import testinfra

    return testinfra.get_host(url).run  # type: ignore[no-any-return]


def _run(run: RunCommand, command: str) -> Any:
    result = run(command)
    stderr = (result.stderr or "").strip()
    if result.rc != 0 and "forbidden" in stderr.lower():
        raise ExecForbidden(stderr)
    return result


def inspect_container(
    pod: str,
    container: str,
    namespace: str,
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    run: RunCommand | None = None,
) -> ContainerFacts:
    """Run `id -u` and read the TCP tables in the container; raise ExecForbidden/ExecFailed."""
    where = f"pod {namespace}/{pod} container {container}"
    run = run or _testinfra_runner(kubectl_url(pod, container, namespace, context=context, kubeconfig=kubeconfig))
    answer = _run(run, FACTS_COMMAND)
    uid, _, tables = answer.stdout.partition("\n")
    stderr = (answer.stderr or "").strip()
    if not uid.strip().isdigit():
        raise ExecFailed(f"`id -u` in {where} exited {answer.rc}: stdout {uid.strip()!r}, stderr {stderr!r}")
    if "local_address" not in tables:
        raise ExecFailed(f"`{FACTS_COMMAND}` in {where} exited {answer.rc} without a socket table: stderr {stderr!r}")
    return ContainerFacts(pod, container, int(uid.strip()), frozenset(listening_ports(tables)))


def policy_problems(
    facts: ContainerFacts,
    *,
    port: int | None,
    settings: Mapping[str, PolicySetting],
    service: str,
    file: str,
) -> list[str]:
    """What the enforced runtime policies find in ``facts``: root, the declared port not listening
    (``file`` is the environment file, named in how to relax a policy)."""
    where = f"pod {facts.pod} container {facts.container}"
    problems = []
    if facts.uid == 0 and settings.get("non_root", PolicySetting("non_root")).enforce:
        problems.append(
            f"{where} runs as root (uid 0), and policy non_root expects a non-root user: set USER in the "
            "image or runAsUser in the manifest, " + relax_hint("non_root", service, file)
        )
    listening = settings.get("port_listening", PolicySetting("port_listening")).enforce
    if port is not None and listening and port not in facts.listening:
        problems.append(
            f"{where} listens on {sorted(facts.listening) or 'no TCP port'}, not on the declared port {port} "
            "(policy port_listening): fix the port in the app definition or the server, "
            + relax_hint("port_listening", service, file)
        )
    return problems


def judge_container(
    facts: ContainerFacts, service: Service, env: Environment
) -> tuple[tuple[str, ...], tuple[PolicySetting, ...]]:
    """``(problems, relaxed runtime policies)`` of ``facts``, by the policies as they hold for ``service``."""
    settings = env.policies_for(service)
    problems = policy_problems(facts, port=service.port, settings=settings, service=service.name, file=str(env.file))
    return tuple(problems), runtime_relaxed(settings)


def runtime_relaxed(settings: Mapping[str, PolicySetting]) -> tuple[PolicySetting, ...]:
    """The runtime policies ``settings`` relax (shown with their reasons by the containers check)."""
    return tuple(s for name, s in settings.items() if name in RUNTIME_POLICIES and not s.enforce)


class FactsCache:
    """Facts seen inside containers, by `facts_key`: containers alike share one exec.

    The first service to ask for a key looks inside; the others asking meanwhile wait for
    that answer instead of starting an exec of their own. A look that failed is not kept.
    """

    def __init__(self) -> None:
        self._facts: dict[str, Future[ContainerFacts]] = {}
        self._lock = threading.Lock()

    def get(self, key: str | None, look: Callable[[], ContainerFacts]) -> ContainerFacts:
        """The facts for ``key``, looking inside (``look``) only the first time."""
        if key is None:
            return look()
        with self._lock:
            answer = self._facts.get(key)
            first = answer is None
            if answer is None:
                answer = self._facts[key] = Future()
        if first:
            try:
                answer.set_result(look())
            except BaseException as exc:
                with self._lock:
                    del self._facts[key]
                answer.set_exception(exc)
        return answer.result()
