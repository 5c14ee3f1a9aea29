"""Three environments on the one cluster: namespaces dx29-dev, dx29-test and dx29-prod,
each with a deployer context (what a release needs, in its namespace only) and a
read-only view context. Asked with `kubectl auth can-i` as each user, and proven with
real writes that must pass or be Forbidden."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.e2e

ENVIRONMENTS = ["dev", "test", "prod"]

# `kubectl auth can-i` arguments: what a release does in its own namespace.
RELEASE_WRITES = [
    (verb, resource)
    for resource in [
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "jobs.batch",
        "cronjobs.batch",
        "services",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "persistentvolumeclaims",
        "leases.coordination.k8s.io",
    ]
    for verb in ("create", "update", "patch", "delete")
]
RELEASE_READS = [
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("get", "pods", "--subresource=log"),
    ("list", "events"),
    ("watch", "events"),
    ("watch", "events.events.k8s.io"),
    ("create", "pods", "--subresource=exec"),
    ("get", "secrets"),
    ("get", "leases.coordination.k8s.io"),
    ("get", "services", "--subresource=proxy"),
]
VIEW_READS = [
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("get", "pods", "--subresource=log"),
    ("list", "events"),
    ("list", "events.events.k8s.io"),
    ("list", "deployments.apps"),
    ("get", "configmaps"),
    ("list", "services"),
    ("get", "services", "--subresource=proxy"),
]
VIEW_REFUSED = [
    *RELEASE_WRITES,
    ("create", "pods"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "pods", "--subresource=exec"),
    ("create", "pods", "--subresource=portforward"),
    ("update", "deployments.apps", "--subresource=scale"),
]


def forbidden(proc) -> bool:
    """kubectl failed because the API server refused (403): "... is forbidden: User ..."."""
    return proc.returncode != 0 and "is forbidden: User" in proc.stderr


def can_i(sh, context: str, *args: str) -> bool:
    out = sh.proc("kubectl", "--context", context, "auth", "can-i", *args)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), f"{context} can-i {' '.join(args)}: {out.stdout}{out.stderr}"
    return answer == "yes"


def wrong_answers(sh, context: str, expected: list[tuple[tuple[str, ...], bool]]) -> list[str]:
    """Each (can-i arguments, expected answer) asked as context; the ones answered otherwise."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda case: can_i(sh, context, *case[0]), expected))
    return [f"{' '.join(args)}: {got}" for (args, want), got in zip(expected, answers, strict=True) if got != want]


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_namespace_exists_with_its_contexts(sh, env_name) -> None:
    namespace = sh.json("get", "namespace", f"dx29-{env_name}")
    assert namespace["metadata"]["labels"]["deploybook.local/environment"] == env_name
    config = sh.json("config", "view")
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    for context in (f"deploybook-{env_name}", f"deploybook-{env_name}-view"):
        assert contexts[context]["namespace"] == f"dx29-{env_name}", contexts[context]
    assert config["current-context"] == "deploybook-admin"
    assert {"deploybook-admin", "deploybook-view"} <= set(contexts)


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_deployer_may_release_in_its_namespace_only(sh, env_name) -> None:
    own = f"dx29-{env_name}"
    others = [f"dx29-{e}" for e in ENVIRONMENTS if e != env_name] + ["default", "kube-system"]
    expected: list[tuple[tuple[str, ...], bool]] = []
    expected += [((*case, "-n", own), True) for case in RELEASE_WRITES + RELEASE_READS]
    for other in others:
        expected += [((*case, "-n", other), False) for case in RELEASE_WRITES]
        expected += [(("get", "pods", "-n", other), False), (("get", "secrets", "-n", other), False)]
    expected += cluster_wide(env_name)
    wrong = wrong_answers(sh, f"deploybook-{env_name}", expected)
    assert wrong == [], wrong


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_viewer_reads_its_namespace_and_changes_nothing(sh, env_name) -> None:
    own = f"dx29-{env_name}"
    expected: list[tuple[tuple[str, ...], bool]] = []
    expected += [((*case, "-n", own), True) for case in VIEW_READS]
    expected += [((*case, "-n", own), False) for case in VIEW_REFUSED]
    for other in [f"dx29-{e}" for e in ENVIRONMENTS if e != env_name] + ["default"]:
        expected += [(("get", "pods", "-n", other), False)]
        expected += [(("get", "services", "--subresource=proxy", "-n", other), False)]
    expected += cluster_wide(env_name)
    wrong = wrong_answers(sh, f"deploybook-{env_name}-view", expected)
    assert wrong == [], wrong


def cluster_wide(env_name: str) -> list[tuple[tuple[str, ...], bool]]:
    """Both users of an environment: their own Namespace object and node health, nothing else.
    Each question carries the namespace its real request has: a Namespace object's own name
    (the API server files /api/v1/namespaces/NAME under namespace NAME), none (-A) for other
    cluster-wide objects. Without it, can-i would ask in the context's namespace."""
    others = [f"dx29-{e}" for e in ENVIRONMENTS if e != env_name]
    return [
        (("get", f"namespace/dx29-{env_name}", "-n", f"dx29-{env_name}"), True),
        (("get", f"namespace/dx29-{env_name}", "-A"), True),
        *[(("get", f"namespace/{other}", "-n", other), False) for other in others],
        (("list", "namespaces", "-A"), False),
        (("create", "namespaces", "-A"), False),
        (("get", "nodes", "-A"), True),
        (("list", "nodes", "-A"), True),
        (("patch", "nodes", "-A"), False),
        (("get", "leases.coordination.k8s.io", "-n", "kube-node-lease"), True),
        (("list", "leases.coordination.k8s.io", "-n", "kube-node-lease"), False),
        (("update", "leases.coordination.k8s.io", "-n", "kube-node-lease"), False),
        (("list", "pods", "-A"), False),
        (("create", "clusterroles.rbac.authorization.k8s.io", "-A"), False),
        (("create", "clusterrolebindings.rbac.authorization.k8s.io", "-A"), False),
        (("get", "persistentvolumes", "-A"), False),
    ]


def test_writes_pass_in_the_own_namespace_and_are_forbidden_elsewhere(sh) -> None:
    name = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = ("kubectl", "--context", "deploybook-admin")
    lease = f"""{{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {{"name": "{name}"}}, "spec": {{"holderIdentity": "stack-test"}}}}"""
    try:
        sh(
            "kubectl",
            "--context",
            "deploybook-dev",
            "-n",
            "dx29-dev",
            "create",
            "configmap",
            name,
            "--from-literal=a=b",
        )
        sh("kubectl", "--context", "deploybook-dev", "-n", "dx29-dev", "create", "-f", "-", input=lease)
        sh("kubectl", "--context", "deploybook-dev", "get", "namespace", "dx29-dev")
        sh("kubectl", "--context", "deploybook-dev", "get", "nodes")
        for context, namespace in [
            ("deploybook-dev", "dx29-prod"),
            ("deploybook-dev", "dx29-test"),
            ("deploybook-test", "dx29-prod"),
            ("deploybook-prod-view", "dx29-prod"),
            ("deploybook-dev-view", "dx29-dev"),
        ]:
            refused = sh.proc(
                "kubectl", "--context", context, "-n", namespace, "create", "configmap", name, "--from-literal=a=b"
            )
            assert forbidden(refused), (context, namespace, refused.stderr)
        for context in ("deploybook-dev-view", "deploybook-test-view", "deploybook-prod-view"):
            refused = sh.proc("kubectl", "--context", context, "get", "secrets")
            assert forbidden(refused), (context, refused.stderr)
        for context, namespace in [("deploybook-prod", "dx29-dev"), ("deploybook-dev-view", "dx29-test")]:
            refused = sh.proc("kubectl", "--context", context, "get", "namespace", namespace)
            assert forbidden(refused), (context, refused.stderr)
        refused = sh.proc("kubectl", "--context", "deploybook-dev", "get", "namespaces")
        assert forbidden(refused), refused.stderr
        sh("kubectl", "--context", "deploybook-dev-view", "get", "namespace", "dx29-dev")
    finally:
        for namespace in ("dx29-dev", "dx29-test", "dx29-prod"):
            sh(*admin, "-n", namespace, "delete", "configmap", name, "--ignore-not-found", check=False)
        sh(*admin, "-n", "dx29-dev", "delete", "lease", name, "--ignore-not-found", check=False)
