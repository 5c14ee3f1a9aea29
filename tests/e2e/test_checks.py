"""The checks against the live stack; the read-only rule holds without a cluster."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ_ONLY_MODULES = [
    "checks",
    "src/deploybook/verify",
    "src/deploybook/cluster/watch.py",
    "src/deploybook/release/checking.py",
    "src/deploybook/plugin/status_table.py",
]
# Kubernetes client write methods, dynamic-client writes and raw write requests.
# str.replace and datetime.replace are not writes; the dynamic client's replace takes body=.
WRITE = re.compile(
    r"\b(create|patch|replace|delete)_\w+\(|\.(create|patch|delete)\(|\.replace\((body|name|namespace)=|"
    r"[\"'](POST|PUT|PATCH|DELETE)[\"']|kubectl\s+(apply|create|patch|delete|set)"
)


def test_write_pattern_tells_api_writes_from_string_methods() -> None:
    assert WRITE.search("kube.apps.patch_namespaced_deployment(name, ns, body)")
    assert WRITE.search("resource.replace(body=obj, namespace=ns)")
    assert WRITE.search("api.delete(name='x')")
    assert not WRITE.search('stamp.replace("Z", "+00:00")')
    assert not WRITE.search("renewed.replace(tzinfo=UTC)")


def test_checks_and_their_modules_never_write() -> None:
    files = [p for m in READ_ONLY_MODULES for p in ((ROOT / m).rglob("*.py") if (ROOT / m).is_dir() else [ROOT / m])]
    assert len(files) >= 9
    hits = [
        f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if WRITE.search(line)
    ]
    assert not hits, "write calls in read-only checks:\n" + "\n".join(hits)


ORDER = [
    "runbook/test_10_build.py",
    "runbook/test_20_push.py",
    "runbook/test_30_apply.py",
    "checks/test_10_rollout.py",
    "checks/test_20_endpoints.py",
    "checks/test_30_digests.py",
    "checks/test_40_containers.py",
    "checks/test_50_workload_rules.py",
]


def _collected_modules(env: dict[str, str], *args: str) -> list[str]:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--env", "local", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    modules: list[str] = []
    for line in proc.stdout.splitlines():
        module = line.split("::")[0]
        if "::" in line and (not modules or modules[-1] != module):
            modules.append(module)
    return modules


def test_runbook_runs_the_checks_after_the_stages_in_order(stack_env: dict[str, str]) -> None:
    assert _collected_modules(stack_env, "runbook") == ORDER


def test_checks_alone_run_rollout_endpoints_digests_containers(stack_env: dict[str, str]) -> None:
    assert _collected_modules(stack_env, "checks") == ORDER[3:]
