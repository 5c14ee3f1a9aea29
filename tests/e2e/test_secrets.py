"""Security: secrets stay references, TLS is always verified, production refuses what it must.

A real release of the sample app goes to a namespace of its own with these planted values:

- the registry password (the stack's real one, read from its file; the release uses it),
- the value of a Secret made out of band that the gateway's manifest references by name,
- the value of a Secret the release itself applies (a document of the gateway's manifest,
  one value under ``data``, base64, and one under ``stringData``): the evidence may show its
  values' sha256, never a value,
- a fake token in an environment variable of the releasing process,
- the stack's git password and prod registry's password (this release does not use them; the
  dev, test and prod releases of ``test_pipeline.py``, which do, are searched the same way).

Every output of the release and of a checks-only run is then searched for each value, in
plain text and base64 (every alignment, so a value inside a larger encoded blob is found):
stdout and stderr, every file under the run's reports folder (Allure results, the HTML
report, the record), the bundle's members, and base64/gzip blobs decoded out of the HTML.

TLS: no code path turns verification off (searched), a kubeconfig asking to skip it is
refused, and a registry CA that does not match fails with a TLS error (the
``registry-wrong-ca`` case of ``test_bad_input.py``). Checks-only under the read-only
``deploybook-view`` context is ``test_checks_readonly.py``. Production refuses a wrong
branch, a dirty tree, digests that never passed test, and a missing ``--confirm-prod``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_input.cases import admin_kubeconfig, write_kubeconfig
from bad_input.sandbox import ROOT, Run, Sandbox, delete_namespace, environ_with, kubectl
from secret_scan import leaks, report_outputs

SUITE = "security"
RESULTS = ROOT / "reports" / "reliability" / f"{SUITE}.jsonl"
SECRET_NAME = "dx29-appsettings"
RELEASED_SECRET = "dx29-released-settings"


def record(name: str, expected: str, observed: str, passed: bool, lost: str = "nothing") -> None:
    """Append one result line for docs/reliability.md."""
    line = {
        "suite": SUITE,
        "case": name,
        "expected": expected,
        "observed": observed[:400],
        "lost": lost,
        "passed": passed,
    }
    with RESULTS.open("a") as out:
        out.write(json.dumps(line) + "\n")


@pytest.fixture(scope="module", autouse=True)
def results_file() -> None:
    """A fresh results file for this suite's run."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("")


@dataclass(frozen=True)
class Planted:
    """The values that must never show up, by what they are."""

    values: dict[str, str]


@dataclass(frozen=True)
class Released:
    """The runs whose every output is searched, and the sandbox they ran in."""

    box: Sandbox
    runs: tuple[Run, ...]
    planted: Planted


def _reference_secret(box: Sandbox) -> None:
    """The gateway reads one variable from the Secret, by reference only."""
    box.edit(
        "manifests/gateway.yaml",
        (
            "          env:\n",
            "          env:\n"
            "            - name: APP_API_KEY\n"
            "              valueFrom:\n"
            f"                secretKeyRef: {{name: {SECRET_NAME}, key: apikey}}\n",
        ),
    )
    box.commit("gateway reads its API key from a Secret")


def _release_a_secret(box: Sandbox, data_value: str, string_value: str) -> None:
    """The gateway's manifest holds a Secret of its own, applied by the release."""
    path = box.root / "manifests" / "gateway.yaml"
    encoded = base64.b64encode(data_value.encode()).decode()
    path.write_text(
        path.read_text()
        + f"---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {RELEASED_SECRET}\n"
        + f"data:\n  token: {encoded}\nstringData:\n  password: {string_value}\n"
    )
    box.commit("gateway's manifest applies a Secret")


@pytest.fixture(scope="module")
def released(cluster_ready: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Released]:
    """A release and a checks-only run with the planted values in play."""
    namespace = f"dbx-sec-{secrets.token_hex(3)}"
    password = Path(cluster_ready["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    planted = Planted(
        {
            "registry password": password,
            "prod registry password": Path(cluster_ready["DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE"]).read_text().strip(),
            "git password": Path(cluster_ready["DEPLOYBOOK_GIT_PASSWORD_FILE"]).read_text().strip(),
            "Secret value": "dbx-secret-" + secrets.token_hex(16),
            "released Secret's data value": "dbx-data-" + secrets.token_hex(16),
            "released Secret's stringData value": "dbx-string-" + secrets.token_hex(16),
            "token in an environment variable": "dbx-token-" + secrets.token_hex(16),
        }
    )
    env = environ_with(cluster_ready, DX29_API_TOKEN=planted.values["token in an environment variable"])
    box = Sandbox.create(tmp_path_factory.mktemp("sec") / "repo", env, namespace)
    _reference_secret(box)
    _release_a_secret(
        box, planted.values["released Secret's data value"], planted.values["released Secret's stringData value"]
    )
    try:
        kubectl(env, "create", "namespace", namespace)
        kubectl(
            env,
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            SECRET_NAME,
            f"--from-literal=apikey={planted.values['Secret value']}",
        )
        reports = tmp_path_factory.mktemp("sec-reports")
        for _ in range(2):  # the fault suite may stop the node meanwhile: one more try
            release = box.run("runbook", "--env", "local", reports=reports)
            if release.returncode == 0:
                break
        assert release.returncode == 0, f"the release failed:\n{release.stdout[-3000:]}\n{release.stderr[-1500:]}"
        checks = box.run("checks", "--env", "local", reports=reports)
        yield Released(box, (release, checks), planted)
    finally:
        delete_namespace(cluster_ready, namespace)


def outputs(released: Released) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of every output of the runs: streams, report files, bundle members."""
    for run in released.runs:
        yield f"output of pytest {' '.join(run.args)}", run.output.encode()
    yield from report_outputs(released.runs[0].reports)


def test_planted_secrets_never_show_in_any_output(released: Released) -> None:
    """No planted value in the runs' output, the reports, the bundle or decoded blobs in them."""
    found, searched = leaks(outputs(released), released.planted.values)
    kinds = ", ".join(released.planted.values)
    record(
        "planted secrets never written",
        f"{kinds}: absent from every output of a release and a checks run",
        f"{searched} outputs searched (plain, base64, decoded blobs): "
        + ("none found" if not found else "; ".join(found)),
        not found,
        "nothing" if not found else "secret exposed",
    )
    assert searched > 10, f"only {searched} outputs found: the reports folder is not where it was expected"
    assert not found, "planted values leaked:\n" + "\n".join(found)


def test_the_secret_was_really_used(released: Released, cluster_ready: dict[str, str]) -> None:
    """The scan means something only if the release used what was planted: pods read the Secret."""
    spec = json.loads(
        kubectl(
            cluster_ready, "-n", released.box.namespace, "get", "deployment", "dx29-gateway-deployment", "-o", "json"
        )
    )["spec"]["template"]["spec"]
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"] for c in spec["containers"] for e in c.get("env", []) if "valueFrom" in e
    ]
    pull = json.loads(
        kubectl(cluster_ready, "-n", released.box.namespace, "get", "secret", "dx29-registry", "-o", "json")
    )
    assert refs == [SECRET_NAME] and pull["type"] == "kubernetes.io/dockerconfigjson"
    applied = json.loads(
        kubectl(cluster_ready, "-n", released.box.namespace, "get", "secret", RELEASED_SECRET, "-o", "json")
    )["data"]
    values = {key: base64.b64decode(value).decode() for key, value in applied.items()}
    assert values == {
        "token": released.planted.values["released Secret's data value"],
        "password": released.planted.values["released Secret's stringData value"],
    }


def test_the_evidence_shows_the_released_secrets_values_as_sha256(released: Released) -> None:
    """What the report keeps of the Secret the release applied: each value's sha256, once or more."""
    rendered = [
        data.decode(errors="replace")
        for where, data in report_outputs(released.runs[0].reports)
        if RELEASED_SECRET.encode() in data and where.endswith((".yaml", ".yml", "-attachment"))
    ]
    assert rendered, "no rendered YAML holding the released Secret among the outputs"
    for label in ("released Secret's data value", "released Secret's stringData value"):
        sha = hashlib.sha256(released.planted.values[label].encode()).hexdigest()
        assert any(f"sha256:{sha}" in text for text in rendered), f"the {label}'s sha256 is not in the rendered YAML"


_INSECURE = re.compile(
    r"verify\s*=\s*False|verify_ssl\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|"
    r"disable_warnings|insecure-skip-tls-verify:\s*true|--insecure\b|curl\s+-k\b"
)


def test_no_code_path_turns_tls_verification_off() -> None:
    """The engine, stages, checks and stack scripts never skip certificate verification."""
    roots = ("src", "runbook", "checks", "stack", "apps")
    hits = []
    for root in roots:
        for path in (ROOT / root).rglob("*"):
            code = path.suffix in (".py", ".sh", ".yaml", ".yml", ".go", "")
            if path.is_file() and code and path.stat().st_size < 1_000_000:
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if _INSECURE.search(line) and "refus" not in line:
                        hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    record(
        "no code path skips TLS verification",
        "no verify=False, CERT_NONE, insecure flags in the code",
        "none found" if not hits else "; ".join(hits),
        not hits,
    )
    assert not hits, "\n".join(hits)


def test_kubeconfig_skipping_tls_verification_is_refused(cluster_ready: dict[str, str], tmp_path: Path) -> None:
    """A context with insecure-skip-tls-verify is refused before any request is sent."""
    path = write_kubeconfig(tmp_path / "kubeconfig", admin_kubeconfig(cluster_ready), insecure=True)
    box = Sandbox.create(tmp_path / "repo", cluster_ready, "dbx-sec-never-created")
    run = box.run(
        "runbook", "--env", "local", reports=tmp_path / "reports", env=environ_with(cluster_ready, KUBECONFIG=str(path))
    )
    line = next((ln for ln in run.output.splitlines() if ln.startswith("ERROR: ")), "")
    absent = not kubectl(cluster_ready, "get", "namespace", "dbx-sec-never-created", "--ignore-not-found")
    passed = run.returncode != 0 and "refusing to skip TLS verification" in line and absent
    record(
        "kubeconfig with insecure-skip-tls-verify",
        "refused, naming the server and context",
        f"exit {run.returncode}: {line}",
        passed,
    )
    assert passed, run.output[-3000:]


# --- production refuses ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_record() -> dict[str, object]:
    """A passed release record of test with a digest for every service (policy reads no cluster)."""
    services = {
        name: {
            "name": name,
            "image": f"localhost:5000/dx29/{name}",
            "tag": "t",
            "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
        }
        for name in ("gateway", "annotation", "terms", "worker")
    }
    return {
        "run_id": "20260101T000000Z-abcdef",
        "environment": "test",
        "namespace": "app-ingress",
        "outcome": "passed",
        "dry_run": False,
        "git": {"branch": "main", "commit": "0" * 40},
        "services": services,
    }


def _prod(
    tmp: Path,
    env: dict[str, str],
    record_data: dict[str, object] | None,
    *,
    branch: str = "main",
    dirty: bool = False,
    confirm: bool = True,
) -> Run:
    box = Sandbox.create(tmp / "repo", env, "dbx-never-used", branch=branch)
    args = ["runbook", "--env", "prod"]
    if record_data is not None:
        (tmp / "test-release.json").write_text(json.dumps(record_data))
        args += ["--release", str(tmp / "test-release.json")]
    if confirm:
        args.append("--confirm-prod")
    if dirty:
        box.write("manifests/uncommitted.yaml", "# not committed\n")
    return box.run(*args, reports=tmp / "reports")


PROD_CASES = {
    "prod-from-another-branch": ({"branch": "release-7"}, r"branch 'main'.*'release-7'"),
    "prod-from-a-dirty-tree": ({"dirty": True}, r"clean tree.*uncommitted"),
    "prod-digests-that-failed-test": ({"outcome": "failed"}, r"did not pass on 'test'"),
    "prod-digests-from-local-not-test": ({"environment": "local"}, r"only promotes 'test' releases"),
    "prod-without-confirm-prod": ({"confirm": False}, r"--confirm-prod.*explicit confirmation"),
}


@pytest.mark.parametrize("name", PROD_CASES)
def test_production_refuses(
    name: str, test_record: dict[str, object], cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    """Each broken promotion rule stops the run before any cluster is contacted, naming the rule."""
    change, expected = PROD_CASES[name]
    data = {**test_record, **{k: v for k, v in change.items() if k in ("outcome", "environment")}}
    run = _prod(
        tmp_path,
        cluster_ready,
        data,
        branch=str(change.get("branch", "main")),
        dirty=bool(change.get("dirty")),
        confirm=bool(change.get("confirm", True)),
    )
    errors = [ln for ln in run.output.splitlines() if ln.startswith("ERROR: ")]
    contacted = "deploybook: release " in run.output
    passed = run.returncode != 0 and len(errors) == 1 and bool(re.search(expected, errors[0])) and not contacted
    record(
        name,
        f"refused before any cluster contact: {expected}",
        f"exit {run.returncode}: {errors[0] if errors else '(no error line)'}",
        passed,
    )
    assert passed, f"{name}: exit {run.returncode}, errors {errors}, contacted {contacted}\n{run.output[-2500:]}"
