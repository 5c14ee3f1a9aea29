"""The bad-input corpus: every case runs the real CLI and must end with one clear error.

Each case gets a throwaway checkout of the runbook (``bad_input/sandbox.py``) whose
``local`` environment targets one namespace made for this module and holding a real
release of the sample app (made first, with the CLI). ``solo`` is the same environment
with only the gateway, so a case that reaches a stage fails once, not once per service.
A case then breaks one thing (an environment file, a manifest, a flag, the registry's or
the cluster's answer), runs ``pytest runbook --env ...`` in a subprocess and asserts:

- a non-zero exit;
- exactly one distinct error message, naming where the problem came from (file and line
  and key, the flag, the registry URL, the cluster server and context) and no traceback;
- the namespace holds exactly what it held before: every object keeps its resourceVersion.

Cases that stop before the environment lock run side by side (their namespace snapshot is
taken around the whole group: resourceVersions only grow, so an unchanged group means an
unchanged case); cases that take the lock run one after the other, each with its own
snapshot, meanwhile. The group's closing snapshot waits for the locking case running then
to end, so the lock it holds (a Lease, deleted when released) is not counted against the
group. Every case appends a line to ``reports/reliability/bad-input.jsonl``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bad_input.cases import admin_kubeconfig, make_ca, registry_answering_500, write_kubeconfig
from bad_input.sandbox import ROOT, Run, Sandbox, delete_namespace, environ_with, kubectl, namespaced_kinds, snapshot

SUITE = "bad-input"
RESULTS = ROOT / "reports" / "reliability" / f"{SUITE}.jsonl"
PARALLEL = 3


@dataclass
class Ctx:
    """What a case builds its broken input from."""

    box: Sandbox
    tmp: Path
    env: dict[str, str]
    kubeconfig: dict[str, Any]
    stack: ExitStack


@dataclass(frozen=True)
class Invocation:
    """The command line of a case and its process environment (None: the stack's)."""

    args: tuple[str, ...]
    env: dict[str, str] | None = None


@dataclass(frozen=True)
class Case:
    """One broken input, what must be named in the error, and whether it takes the lock."""

    id: str
    expected: str
    names: tuple[str, ...]
    make: Callable[[Ctx], Invocation]
    locks: bool = False
    gap: str | None = None  # a known shortcoming, with what would fix it: the case is xfail(strict)


CASES: list[Case] = []


def case(
    expected: str, *names: str, locks: bool = False, gap: str | None = None
) -> Callable[[Callable[[Ctx], Invocation]], Any]:
    """Register a case; ``names`` are texts the one error must contain (regex allowed)."""

    def register(make: Callable[[Ctx], Invocation]) -> Callable[[Ctx], Invocation]:
        CASES.append(Case(make.__name__.removeprefix("case_").replace("_", "-"), expected, names, make, locks, gap))
        return make

    return register


def release(*extra: str, env: str = "local") -> tuple[str, ...]:
    return ("runbook", "--env", env, *extra)


# --- environment files ---------------------------------------------------------------


@case("malformed YAML reported with file and line", r"environments/local\.yaml:\d+", "malformed YAML")
def case_env_malformed_yaml(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("  namespace: ", "namespace: [unclosed "))
    return Invocation(release())


@case(
    "unknown key named with its line and the allowed keys", r"environments/local\.yaml:\d+", "key 'colour'", "allowed"
)
def case_env_unknown_key(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("lock_duration_s: 1800", "lock_duration_s: 1800\ncolour: blue"))
    return Invocation(release())


@case("a key written twice named with both lines", r"local\.yaml:\d+", "key 'lock_duration_s'", "first at line")
def case_env_key_twice(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("lock_duration_s: 1800", "lock_duration_s: 1800\nlock_duration_s: 60"))
    return Invocation(release())


@case("wrong type named with key and line", r"local\.yaml:\d+", "key 'lock_duration_s'", "integer")
def case_env_wrong_type(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("lock_duration_s: 1800", "lock_duration_s: half an hour"))
    return Invocation(release())


@case("missing required key named", r"local\.yaml:\d+", "key 'cluster.namespace'", "required")
def case_env_missing_namespace(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", (f"  namespace: {c.box.namespace}\n", ""))
    return Invocation(release())


@case("namespace that is not a DNS label refused", r"local\.yaml:\d+", "key 'cluster.namespace'", "DNS label")
def case_env_bad_namespace(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", (f"namespace: {c.box.namespace}", "namespace: Dx29_Local"))
    return Invocation(release())


@case("unknown --env lists the known environments", "unknown environment 'staging'", "local", "prod")
def case_env_unknown_name(c: Ctx) -> Invocation:
    return Invocation(release(env="staging"))


@case("registry address with a scheme refused", r"local\.yaml:\d+", "key 'registry.address'", "without scheme")
def case_env_registry_scheme(c: Ctx) -> Invocation:
    c.box.edit(
        "environments/local.yaml", ("address: ${DEPLOYBOOK_REGISTRY}", "address: https://${DEPLOYBOOK_REGISTRY}")
    )
    return Invocation(release())


@case("two credential sources refused", r"local\.yaml:\d+", "key 'registry.password_file'", "choose one")
def case_env_two_credential_sources(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("  username:", "  password_env: DX29_REGISTRY_PASSWORD\n  username:"))
    return Invocation(release())


@case(
    "unset variable in the file named with its key",
    r"local\.yaml:\d+",
    "key 'registry.address'",
    r"\$\{DEPLOYBOOK_REGISTRY\} is not set",
)
def case_env_variable_unset(c: Ctx) -> Invocation:
    return Invocation(release(), environ_with(c.env, DEPLOYBOOK_REGISTRY=None))


@case("port out of range named", r"app\.yaml:\d+", r"key 'services\[0\]\.port'", "65535")
def case_env_port_out_of_range(c: Ctx) -> Invocation:
    c.box.edit(
        "app.yaml",
        ("    port: 8080\n    manifest: gateway.yaml", "    port: 80800\n    manifest: gateway.yaml"),
    )
    return Invocation(release())


@case("duplicate service name refused", r"app\.yaml:\d+", r"key 'services\[1\]\.name'", "duplicate")
def case_env_duplicate_service(c: Ctx) -> Invocation:
    c.box.edit("app.yaml", ("  - name: annotation", "  - name: gateway"))
    return Invocation(release())


@case("a file that is not a mapping refused", r"local\.yaml:1", "mapping")
def case_env_not_a_mapping(c: Ctx) -> Invocation:
    c.box.write("environments/local.yaml", "- cluster\n- registry\n")
    return Invocation(release())


@case("both manifest sources refused", r"local\.yaml:\d+", "key 'manifests.path'", "exactly one")
def case_env_two_manifest_sources(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("  path: manifests", "  path: manifests\n  git: {url: x, ref: main}"))
    return Invocation(release())


@case("negative timeout refused", r"local\.yaml:\d+", "key 'timeouts.rollout'", "positive")
def case_env_negative_timeout(c: Ctx) -> Invocation:
    c.box.edit("environments/local.yaml", ("  rollout: 180", "  rollout: -5"))
    return Invocation(release())


@case("HTTP check path without a slash refused", r"app\.yaml:\d+", r"key 'services\[0\]\.http\[0\]\.path'")
def case_env_http_path(c: Ctx) -> Invocation:
    c.box.edit(
        "app.yaml",
        ("      - path: /health\n        expect_status: 200", "      - path: health\n        expect_status: 200"),
    )
    return Invocation(release())


@case(
    "password variable unset: named with the environment file's key before anything runs",
    r"solo\.yaml:\d+",
    "key 'registry.password_env'",
    "DX29_REGISTRY_PASSWORD",
    "localhost:5000",
)
def case_env_password_env_unset(c: Ctx) -> Invocation:
    c.box.edit(
        "environments/solo.yaml",
        ("  password_file: ${DEPLOYBOOK_REGISTRY_PASSWORD_FILE}", "  password_env: DX29_REGISTRY_PASSWORD"),
    )
    return Invocation(release(env="solo"), environ_with(c.env, DX29_REGISTRY_PASSWORD=None))


@case(
    "password file missing: named with the environment file's key before anything runs",
    r"local\.yaml:\d+",
    "key 'registry.password_file'",
    "/nonexistent/registry-password",
    "localhost:5000",
)
def case_env_password_file_missing(c: Ctx) -> Invocation:
    return Invocation(
        release(), environ_with(c.env, DEPLOYBOOK_REGISTRY_PASSWORD_FILE="/nonexistent/registry-password")
    )


@case("missing Dockerfile named, nothing applied", "Dockerfile.missing", "does not exist", locks=True)
def case_env_missing_dockerfile(c: Ctx) -> Invocation:
    c.box.edit("environments/solo.yaml", ("    dockerfile: Dockerfile", "    dockerfile: Dockerfile.missing"))
    return Invocation(release(env="solo"))


# --- manifests -------------------------------------------------------------------------


@case(
    "malformed manifest YAML named with file and line",
    r"manifests/gateway\.yaml",
    r"line \d+",
    "malformed YAML",
    locks=True,
)
def case_manifest_malformed_yaml(c: Ctx) -> Invocation:
    c.box.edit("manifests/gateway.yaml", ("  replicas: 1", "  replicas: [1"))
    return Invocation(release(env="solo"))


@case(
    "manifest without kind named with file and document", r"manifests/gateway\.yaml, document 1", "'kind'", locks=True
)
def case_manifest_missing_kind(c: Ctx) -> Invocation:
    c.box.edit("manifests/gateway.yaml", ("kind: Deployment\n", ""))
    return Invocation(release(env="solo"))


@case("image that no service builds named", r"manifests/gateway\.yaml", "dx29/payments", "no service", locks=True)
def case_manifest_unknown_image(c: Ctx) -> Invocation:
    c.box.edit("manifests/gateway.yaml", ("image: dx29/gateway", "image: dx29/payments"))
    return Invocation(release(env="solo"))


ESCALATION = "dbx-bad-input-escalation"


@case(
    "cluster-scoped escalation (a ClusterRoleBinding to cluster-admin) refused before anything is applied",
    r"manifests/gateway\.yaml, document 3",
    f"ClusterRoleBinding/{ESCALATION} is cluster-scoped",
    r"confinement: \{cluster_scoped: \[ClusterRoleBinding/" + ESCALATION,
    locks=True,
)
def case_manifest_cluster_admin_binding(c: Ctx) -> Invocation:
    c.box.write(
        "manifests/gateway.yaml",
        (c.box.root / "manifests/gateway.yaml").read_text()
        + "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
        + f"metadata: {{name: {ESCALATION}}}\n"
        + "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
        + f"subjects: [{{kind: ServiceAccount, name: default, namespace: {c.box.namespace}}}]\n",
    )
    return Invocation(release(env="solo"))


@case(
    "YAML alias bomb refused at once, naming the file, the document and the limit",
    r"manifests/gateway\.yaml, document 3",
    "limit max_nodes|limit max_aliases",
    locks=True,
)
def case_manifest_alias_bomb(c: Ctx) -> Invocation:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  " + "\n  ".join(levels) + "\n"
    c.box.write("manifests/gateway.yaml", (c.box.root / "manifests/gateway.yaml").read_text() + "---\n" + bomb)
    return Invocation(release(env="solo"))


@case(
    "a manifest key written twice named with both lines (kubectl keeps the second silently)",
    r"manifests/gateway\.yaml",
    "key 'env' written twice in one mapping",
    locks=True,
)
def case_manifest_key_twice(c: Ctx) -> Invocation:
    c.box.edit("manifests/gateway.yaml", ("          env:\n", "          env: []\n          env:\n"))
    return Invocation(release(env="solo"))


@case("manifest file missing named", r"manifests/gateway-v2\.yaml", "does not exist", locks=True)
def case_manifest_file_missing(c: Ctx) -> Invocation:
    c.box.edit("environments/solo.yaml", ("manifest: gateway.yaml", "manifest: gateway-v2.yaml"))
    return Invocation(release(env="solo"))


@case(
    "API server rejects an invalid port: its message and the object named",
    "Deployment/dx29-gateway-deployment",
    "containerPort",
    "server https://",
    locks=True,
)
def case_manifest_invalid_port(c: Ctx) -> Invocation:
    c.box.edit("manifests/gateway.yaml", ("containerPort: 8080", "containerPort: 700000"))
    return Invocation(release(env="solo"))


@case(
    "API server rejects an unknown field: the field and the object named",
    "Deployment/dx29-gateway-deployment",
    "replicaz",
    locks=True,
)
def case_manifest_unknown_field(c: Ctx) -> Invocation:
    c.box.edit("manifests/gateway.yaml", ("  replicas: 1", "  replicaz: 1"))
    return Invocation(release(env="solo"))


@case(
    "all four services, one manifest naming an image no service builds: nothing applied, one error",
    r"manifests/worker\.yaml",
    "dx29/payments",
    "no service",
    "1 of 4 services",
    locks=True,
)
def case_manifest_one_of_four_unknown_image(c: Ctx) -> Invocation:
    c.box.edit("manifests/worker.yaml", ("image: dx29/worker", "image: dx29/payments"))
    return Invocation(release())


@case(
    "all four services, one manifest the API server rejects: nothing applied, one error",
    r"manifests/annotation\.yaml",
    "Deployment/dx29-annotation-deployment",
    "containerPort",
    "1 of 4 services",
    locks=True,
)
def case_manifest_one_of_four_rejected(c: Ctx) -> Invocation:
    c.box.edit("manifests/annotation.yaml", ("containerPort: 8080", "containerPort: 700000"))
    return Invocation(release())


# --- flags -----------------------------------------------------------------------------


@case("--env missing: the flag and the known environments named", "--env NAME is required", "local")
def case_flag_env_missing(c: Ctx) -> Invocation:
    return Invocation(("runbook",))


@case(
    "--from-stage with an unknown stage: the flag and the stages named",
    "--from-stage",
    "deploy",
    "'build', 'push', 'apply'",
)
def case_flag_from_stage_unknown(c: Ctx) -> Invocation:
    return Invocation(release("--from-stage", "deploy"))


@case("--from-stage without --release refused", "--from-stage needs --release")
def case_flag_from_stage_without_release(c: Ctx) -> Invocation:
    return Invocation(release("--from-stage", "apply"))


@case("--release file missing named", "no-such-release.json")
def case_flag_release_missing(c: Ctx) -> Invocation:
    return Invocation(release("--from-stage", "apply", "--release", str(c.tmp / "no-such-release.json")))


@case("--release file malformed named", "broken-release.json")
def case_flag_release_malformed(c: Ctx) -> Invocation:
    path = c.tmp / "broken-release.json"
    path.write_text('{"run_id": "x", "services": ')
    return Invocation(release("--from-stage", "apply", "--release", str(path)))


@case("production without --confirm-prod refused", "--confirm-prod", "confirmation")
def case_flag_prod_without_confirm(c: Ctx) -> Invocation:
    return Invocation(release(env="prod"))


# --- registry answers --------------------------------------------------------------------


@case(
    "wrong registry password: the registry and the credential source named",
    "https://localhost:5000",
    "refused",
    locks=True,
)
def case_registry_wrong_password(c: Ctx) -> Invocation:
    wrong = c.tmp / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    return Invocation(release(env="solo"), environ_with(c.env, DEPLOYBOOK_REGISTRY_PASSWORD_FILE=str(wrong)))


@case("unreachable registry: the address named after bounded retries", "localhost:1", "unreachable", locks=True)
def case_registry_unreachable(c: Ctx) -> Invocation:
    return Invocation(release(env="solo"), environ_with(c.env, DEPLOYBOOK_REGISTRY="localhost:1"))


@case(
    "registry certificate from another CA: a TLS verification failure naming the registry",
    "https://localhost:5000",
    "TLS|certificate verify failed",
    locks=True,
)
def case_registry_wrong_ca(c: Ctx) -> Invocation:
    ca = make_ca(c.tmp / "ca")
    return Invocation(release(env="solo"), environ_with(c.env, DEPLOYBOOK_REGISTRY_CA=str(ca)))


@case(
    "registry answering HTTP 500: the registry and the status named",
    r"https://127\.0\.0\.1:\d+",
    "HTTP 500",
    locks=True,
)
def case_registry_http_500(c: Ctx) -> Invocation:
    address, ca = c.stack.enter_context(registry_answering_500(c.tmp / "stub"))
    return Invocation(
        release(env="solo"), environ_with(c.env, DEPLOYBOOK_REGISTRY=address, DEPLOYBOOK_REGISTRY_CA=str(ca))
    )


# --- cluster answers ---------------------------------------------------------------------


@case(
    "unreachable API server: server and context named", "https://127.0.0.1:1", "context deploybook-admin", "unreachable"
)
def case_cluster_unreachable(c: Ctx) -> Invocation:
    path = write_kubeconfig(c.tmp / "kubeconfig", c.kubeconfig, server="https://127.0.0.1:1")
    return Invocation(release(), environ_with(c.env, KUBECONFIG=str(path)))


@case("unknown context named with the known ones", "context 'deploybook-nope' not found", "deploybook-admin")
def case_cluster_unknown_context(c: Ctx) -> Invocation:
    return Invocation(release("--kube-context", "deploybook-nope"))


@case(
    "invalid token refused: server and context named", "refused the credentials", "HTTP 401", "context deploybook-admin"
)
def case_cluster_invalid_token(c: Ctx) -> Invocation:
    path = write_kubeconfig(c.tmp / "kubeconfig", c.kubeconfig, user={"token": "expired." + secrets.token_hex(8)})
    return Invocation(release(), environ_with(c.env, KUBECONFIG=str(path)))


@case(
    "client certificate from another CA refused: server and context named",
    "context deploybook-admin",
    "HTTP 401|HTTP 403|refused",
)
def case_cluster_foreign_client_cert(c: Ctx) -> Invocation:
    import base64

    ca = make_ca(c.tmp / "client", "deploybook-admin-impostor")
    key = ca.with_suffix(".key")
    user = {
        "client-certificate-data": base64.b64encode(ca.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
    path = write_kubeconfig(c.tmp / "kubeconfig", c.kubeconfig, user=user)
    return Invocation(release(), environ_with(c.env, KUBECONFIG=str(path)))


@case(
    "API server certificate from another CA: TLS failure naming the server",
    "server https://",
    "CERTIFICATE_VERIFY_FAILED|certificate verify failed",
)
def case_cluster_wrong_ca(c: Ctx) -> Invocation:
    import base64

    ca = make_ca(c.tmp / "ca")
    path = write_kubeconfig(c.tmp / "kubeconfig", c.kubeconfig, ca_data=base64.b64encode(ca.read_bytes()).decode())
    return Invocation(release(), environ_with(c.env, KUBECONFIG=str(path)))


@case(
    "read-only context trying to release: forbidden, server and context named",
    "server https://",
    "context deploybook-view",
    "may not write in namespace|forbidden|HTTP 403",
)
def case_cluster_forbidden(c: Ctx) -> Invocation:
    return Invocation(release("--kube-context", "deploybook-view"))


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one case did: its run, the snapshot before and after, and the time it took."""

    case: Case
    run: Run
    before: dict[str, str]
    after: dict[str, str]
    seconds: float
    notes: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def target(cluster_ready: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A namespace of its own holding a real release of the sample app, deleted afterwards."""
    namespace = f"dbx-bad-{secrets.token_hex(3)}"
    box = Sandbox.create(tmp_path_factory.mktemp("seed") / "repo", cluster_ready, namespace)
    try:
        # Other suites restart the registry at times; the seed is set-up, so it gets a second try.
        for attempt in range(3):
            run = box.run(*release(), reports=tmp_path_factory.mktemp("seed-reports"))
            if run.returncode == 0:
                break
            time.sleep(10 * (attempt + 1))
        assert run.returncode == 0, f"the seed release failed:\n{run.stdout[-2500:]}\n{run.stderr[-1000:]}"
        yield box
    finally:
        delete_namespace(cluster_ready, namespace)


def _sandbox_for(target: Sandbox, tmp: Path) -> Sandbox:
    box = Sandbox.create(tmp / "repo", target.env, target.namespace)
    # The local environment with a list of its own: the gateway alone (app.yaml not read for it).
    local = (box.root / "environments" / "local.yaml").read_text()
    app = (box.root / "app.yaml").read_text()
    gateway = app[app.index("services:") :].split("  - name: annotation")[0]
    box.write("environments/solo.yaml", local + gateway)
    box.commit("solo: the gateway alone")
    return box


def _run_case(spec: Case, target: Sandbox, tmp: Path, kubeconfig: dict[str, Any], kinds: list[str] | None) -> Outcome:
    with ExitStack() as stack:
        box = _sandbox_for(target, tmp)
        invocation = spec.make(Ctx(box, tmp, target.env, kubeconfig, stack))
        before = snapshot(target.env, target.namespace, kinds) if kinds else {}
        started = time.monotonic()
        run = box.run(*invocation.args, reports=tmp / "reports", env=invocation.env)
        (tmp / "output.txt").write_text(run.output)
        seconds = time.monotonic() - started
        after = snapshot(target.env, target.namespace, kinds) if kinds else {}
    return Outcome(spec, run, before, after, seconds)


def _run_locking(
    specs: list[Case],
    target: Sandbox,
    factory: pytest.TempPathFactory,
    kubeconfig: dict[str, Any],
    kinds: list[str],
    turn: threading.Lock,
) -> dict[str, Outcome]:
    """Cases that take the environment lock, one after the other, each with its own snapshot.

    ``turn`` is held while a case runs, so a snapshot taken under it sees no lock held.
    """
    results = {}
    for spec in specs:
        with turn:
            results[spec.id] = _run_case(spec, target, factory.mktemp(spec.id), kubeconfig, kinds)
    return results


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, target: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Every selected case run: those taking the lock in turn, the others side by side meanwhile."""
    env = target.env
    kinds = namespaced_kinds(env)
    kubeconfig = admin_kubeconfig(env)
    selected = {
        item.callspec.params["spec"].id
        for item in request.session.items
        if hasattr(item, "callspec") and "spec" in item.callspec.params
    }
    specs = [c for c in CASES if c.id in selected]
    early = [c for c in specs if not c.locks]
    turn = threading.Lock()
    before = snapshot(env, target.namespace, kinds)
    with ThreadPoolExecutor(PARALLEL + 1) as pool:
        locking = [c for c in specs if c.locks]
        chain = pool.submit(_run_locking, locking, target, tmp_path_factory, kubeconfig, kinds, turn)
        futures = {
            c.id: pool.submit(_run_case, c, target, tmp_path_factory.mktemp(c.id), kubeconfig, None) for c in early
        }
        results = {name: future.result() for name, future in futures.items()}
        with turn:
            after = snapshot(env, target.namespace, kinds)
        results.update(chain.result())
    for name in futures:
        results[name].before, results[name].after = before, after
    return results


@pytest.fixture(scope="module", autouse=True)
def results_file() -> None:
    """A fresh results file for this suite's run."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("")


_SUMMARY = re.compile(r"^(FAILED|ERROR) \S+ - ")


def error_messages(run: Run) -> list[str]:
    """The distinct error messages of a run, with test ids and service labels taken out."""
    found: list[str] = []
    lines = run.output.splitlines()
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("ERROR: usage:"):
            # argparse's refusal: pytest prints the usage, then the line naming the flag.
            text = next((ln.strip() for ln in lines[i + 1 :] if ": error: " in ln), text)
        elif text.startswith("ERROR: "):
            text = text.removeprefix("ERROR: ")
        elif _SUMMARY.match(text):
            text = _SUMMARY.sub("", text)
        else:
            continue
        if text not in found:
            found.append(text)
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Objects created, deleted or modified between two snapshots."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def record(name: str, expected: str, observed: str, lost: str, passed: bool) -> None:
    """Append one result line for docs/reliability.md."""
    line = {"suite": SUITE, "case": name, "expected": expected, "observed": observed, "lost": lost, "passed": passed}
    with RESULTS.open("a") as out:
        out.write(json.dumps(line) + "\n")


def _cluster_role_binding_exists(env: dict[str, str], name: str) -> bool:
    """Whether the binding was made; one that was is deleted at once (it grants cluster-admin)."""
    found = bool(kubectl(env, "get", "clusterrolebinding", name, "--ignore-not-found", "-o", "name").strip())
    if found:
        kubectl(env, "delete", "clusterrolebinding", name, "--ignore-not-found")
    return found


def _params() -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.gap)] if c.gap else []) for c in CASES
    ]


@pytest.mark.parametrize("spec", _params())
def test_bad_input_is_refused_with_one_clear_error(spec: Case, outcomes: dict[str, Outcome], target: Sandbox) -> None:
    """Non-zero exit, one error naming its source, no traceback, the namespace unchanged."""
    outcome = outcomes[spec.id]
    run = outcome.run
    messages = error_messages(run)
    diff = changed(outcome.before, outcome.after)
    problems = []
    if run.returncode == 0:
        problems.append("exit status 0")
    if len(messages) != 1:
        problems.append(f"{len(messages)} distinct errors")
    missing = [n for n in spec.names if not any(re.search(n, m) for m in messages[:1])]
    if missing:
        problems.append(f"the error does not name {missing}")
    if "Traceback (most recent call last)" in run.output:
        problems.append("a traceback was printed")
    if diff:
        problems.append(f"the namespace changed: {diff}")
    if spec.id == "manifest-cluster-admin-binding" and _cluster_role_binding_exists(target.env, ESCALATION):
        problems.append(f"ClusterRoleBinding/{ESCALATION} exists in the cluster")
    observed = f"exit {run.returncode} in {outcome.seconds:.1f} s: {messages[0] if messages else '(no error)'}"
    if spec.gap:
        observed = f"{observed} [known gap: {spec.gap}]"
    record(
        spec.id, spec.expected, observed[:600], "nothing" if not diff else f"changed: {', '.join(diff)}", not problems
    )
    assert not problems, (
        f"{spec.id}: {'; '.join(problems)}\nerrors: {json.dumps(messages, indent=1)}\n"
        f"--- stdout ---\n{run.stdout[-3000:]}\n--- stderr ---\n{run.stderr[-2000:]}"
    )
