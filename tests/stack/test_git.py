"""The stack's git server: the sample app's service and environment repositories over
HTTPS (verified with the stack's CA) with basic authentication, the way a pipeline uses
them: clone with the credentials from the password file (never in a URL), build a service
from its repository, push to develop and merge to main. Without the credentials, or with a
wrong password, the server answers 401."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

SERVICES = ["gateway", "annotation", "terms", "worker"]
SERVICE_REPOS = [f"dx29-{s}" for s in SERVICES]
ENV_REPOS = ["dx29-env-test", "dx29-env-prod"]
APP = Path(__file__).resolve().parents[2] / "apps" / "dx29"
SEED_IDENTITY = "deploybook-stack <stack@deploybook.local>"


def curl_status(sh, url: str, *, user: str | None = None) -> str:
    """HTTP status of a GET over TLS verified with the stack's CA; credentials go to curl
    on stdin (its config), never on its command line."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", sh.env["DEPLOYBOOK_GIT_CA"]]
    if user is None:
        return sh(*args, url)
    return sh(*args, "-K", "-", url, input=f'user = "{user}"\n')


def info_refs(git, repo: str) -> str:
    return f"{git.repo_url(repo)}/info/refs?service=git-upload-pack"


@pytest.mark.parametrize("repo", SERVICE_REPOS + ENV_REPOS)
def test_repository_advertises_its_branches(git, repo) -> None:
    heads = git.heads(repo)
    if repo in SERVICE_REPOS:
        assert set(heads) == {"develop", "main"}, heads
    else:
        assert set(heads) == {"main"}, heads
    symref = git("ls-remote", "--symref", git.repo_url(repo), "HEAD")
    assert symref.startswith("ref: refs/heads/main\tHEAD"), symref


def seed_commit(git, checkout: Path) -> str:
    """The repository's first commit: the one stack/up seeded (later pushes build on it)."""
    (root,) = git("-C", str(checkout), "rev-list", "--max-parents=0", "HEAD").split()
    return root


@pytest.mark.parametrize("service", SERVICES)
def test_service_repository_is_a_build_context_with_its_manifests(git, tmp_path, service) -> None:
    repo = f"dx29-{service}"
    checkout = tmp_path / repo
    git("clone", "-q", "--branch", "develop", git.repo_url(repo), str(checkout))
    seed = seed_commit(git, checkout)
    assert git("-C", str(checkout), "merge-base", "--is-ancestor", seed, "origin/main", check=False) == ""
    identities = git("-C", str(checkout), "log", "-1", "--format=%an <%ae>|%cn <%ce>", seed).strip()
    assert identities == f"{SEED_IDENTITY}|{SEED_IDENTITY}"
    git("-C", str(checkout), "checkout", "-q", "--detach", seed)

    files = {
        path: mode
        for mode, _, _, path in (
            line.split(maxsplit=3) for line in git("-C", str(checkout), "ls-files", "-s").splitlines()
        )
    }
    assert {"Dockerfile", "prepare", f"manifests/{service}.yaml", ".gitignore"} <= set(files), files
    assert files["prepare"] == "100755", "prepare is committed executable"
    assert not any("busybox" in path or path.startswith("rootfs/") for path in files), files
    sizes = git("-C", str(checkout), "ls-tree", "-r", "-l", "HEAD")
    assert all(int(line.split()[3]) < 64 * 1024 for line in sizes.splitlines()), "no binary is committed"

    # The service's files as in apps/dx29 (a state seeded from an older apps/dx29 keeps
    # its repositories: stack/up never rewrites one), and its dev manifest beside the code.
    source = APP / service
    for path in source.rglob("*"):
        if path.is_file() and "rootfs" not in path.relative_to(source).parts:
            relative = path.relative_to(source).as_posix()
            assert (checkout / relative).read_bytes() == path.read_bytes(), f"{relative} differs from {path}"
    manifest = (checkout / "manifests" / f"{service}.yaml").read_bytes()
    assert manifest == (APP / "manifests" / f"{service}.yaml").read_bytes()
    uses_http_server = '"/app/serve"' in (source / "Dockerfile").read_text()
    for script in (APP / "common").iterdir():
        assert (checkout / "common" / script.name).exists() == uses_http_server, script.name

    # prepare fills rootfs/ (git-ignored) with the static busybox; the tree stays clean.
    subprocess.run([str(checkout / "prepare")], check=True, capture_output=True, timeout=60)
    assert (checkout / "rootfs" / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert git("-C", str(checkout), "status", "--porcelain") == ""


@pytest.mark.parametrize("env_name", ["test", "prod"])
def test_environment_repository_holds_every_service_manifest(git, tmp_path, env_name) -> None:
    checkout = tmp_path / env_name
    git("clone", "-q", git.repo_url(f"dx29-env-{env_name}"), str(checkout))
    manifests = sorted(p.name for p in (checkout / "manifests").iterdir())
    assert manifests == sorted(f"{s}.yaml" for s in SERVICES)
    for service in SERVICES:
        docs = list(yaml.safe_load_all((checkout / "manifests" / f"{service}.yaml").read_text()))
        source = list(yaml.safe_load_all((APP / "manifests" / f"{service}.yaml").read_text()))
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        expected = 2 if env_name == "prod" and service in ("gateway", "annotation") else 1
        assert deployment["spec"]["replicas"] == expected, service
        deployment["spec"]["replicas"] = 1
        assert docs == source, f"{service}: only the replicas differ from apps/dx29/manifests"


def test_service_builds_from_its_repository_and_answers(git, sh, tmp_path) -> None:
    """What a dev pipeline does with a service repository: prepare, build, run."""
    checkout = tmp_path / "dx29-terms"
    git("clone", "-q", "--branch", "develop", git.repo_url("dx29-terms"), str(checkout))
    revision = git("-C", str(checkout), "rev-parse", "HEAD").strip()
    subprocess.run([str(checkout / "prepare")], check=True, capture_output=True, timeout=60)
    tag = f"stack-test/terms:{uuid.uuid4().hex[:12]}"
    name = f"stack-test-terms-{uuid.uuid4().hex[:8]}"
    try:
        sh(
            "docker",
            "build",
            "-q",
            "--build-arg",
            "VERSION=9.9.9",
            "--build-arg",
            f"REVISION={revision}",
            "-t",
            tag,
            str(checkout),
        )
        # No network but its own loopback; the service is asked from inside the container.
        sh("docker", "run", "-d", "--name", name, "--network", "none", tag)
        deadline = time.monotonic() + 30
        while True:
            answer = sh(
                "docker",
                "exec",
                name,
                "/bin/busybox",
                "timeout",
                "5",
                "/bin/busybox",
                "wget",
                "-qO-",
                "http://127.0.0.1:8080/health",
                check=False,
            )
            if answer or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert answer == f'{{"service":"terms","version":"9.9.9","revision":"{revision}"}}'
    finally:
        sh("docker", "rm", "-f", name, check=False)
        sh("docker", "rmi", "-f", tag, check=False)


def test_anonymous_and_wrong_password_are_refused(git, git_client, sh, tmp_path) -> None:
    url = info_refs(git, "dx29-gateway")
    user = sh.env["DEPLOYBOOK_GIT_USER"]
    password = Path(sh.env["DEPLOYBOOK_GIT_PASSWORD_FILE"]).read_text().strip()
    assert curl_status(sh, url) == "401"
    assert curl_status(sh, url, user=f"{user}:wrong-{uuid.uuid4().hex}") == "401"
    assert curl_status(sh, url, user=f"someone-else:{password}") == "401"
    assert curl_status(sh, url, user=f"{user}:{password}") == "200"
    # Every repository path asks first, pushes included.
    assert curl_status(sh, f"{git.repo_url('dx29-env-prod')}/info/refs?service=git-receive-pack") == "401"

    anonymous = git_client("anonymous", credentials=False)
    refused = anonymous.run("ls-remote", git.repo_url("dx29-gateway"), GIT_TRACE_CURL="1")
    assert refused.returncode != 0 and "HTTP/1.1 401" in refused.stderr, refused.stderr[-2000:]

    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    refused = git.run("ls-remote", git.repo_url("dx29-gateway"), DEPLOYBOOK_GIT_PASSWORD_FILE=str(wrong))
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr, refused.stderr


def test_askpass_reading_the_password_file_clones(git_client, tmp_path) -> None:
    """The other way to hand git the password: GIT_ASKPASS, a program that prints it."""
    askpass = tmp_path / "askpass"
    askpass.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  Username*) printf "%s\\n" "$DEPLOYBOOK_GIT_USER" ;;\n'
        '  *) cat "$DEPLOYBOOK_GIT_PASSWORD_FILE" ;;\n'
        "esac\n"
    )
    askpass.chmod(0o700)
    client = git_client("askpass-home", credentials=False)
    client("clone", "-q", client.repo_url("dx29-env-test"), str(tmp_path / "env-test"), GIT_ASKPASS=str(askpass))
    assert (tmp_path / "env-test" / "manifests" / "gateway.yaml").is_file()


def test_push_to_develop_then_merge_to_main(git, tmp_path) -> None:
    """A dev pipeline commits to develop; a release merges develop to main. The shared
    repository is put back as it was afterwards (only if nobody pushed meanwhile)."""
    repo = "dx29-worker"
    before = git.heads(repo)
    checkout = tmp_path / repo
    git("clone", "-q", "--branch", "develop", git.repo_url(repo), str(checkout))
    token = uuid.uuid4().hex
    (checkout / "stack-test.txt").write_text(token)
    git("-C", str(checkout), "add", "stack-test.txt")
    git("-C", str(checkout), "commit", "-q", "-m", f"stack test {token}")
    pushed = git("-C", str(checkout), "rev-parse", "HEAD").strip()
    try:
        git("-C", str(checkout), "push", "-q", "origin", "develop")
        assert git.heads(repo)["develop"] == pushed

        git("-C", str(checkout), "checkout", "-q", "main")
        git("-C", str(checkout), "merge", "-q", "--no-ff", "-m", f"Merge develop ({token})", "develop")
        merged = git("-C", str(checkout), "rev-parse", "HEAD").strip()
        git("-C", str(checkout), "push", "-q", "origin", "main")
        after = git.heads(repo)
        assert after == {"develop": pushed, "main": merged}, after

        fresh = tmp_path / "fresh"
        git("clone", "-q", "--branch", "main", git.repo_url(repo), str(fresh))
        assert (fresh / "stack-test.txt").read_text() == token
    finally:
        # Put the branches back only where they still are what this test pushed.
        current = git.heads(repo)
        for branch, test_commit in current.items():
            if branch in before and test_commit != before[branch] and test_commit in _ours(git, checkout, token):
                git(
                    "-C",
                    str(checkout),
                    "push",
                    "-q",
                    f"--force-with-lease={branch}:{test_commit}",
                    "origin",
                    f"{before[branch]}:refs/heads/{branch}",
                )
    assert git.heads(repo) == before


def _ours(git, checkout: Path, token: str) -> set[str]:
    """The commits this test made (they carry its token in their message)."""
    out = git("-C", str(checkout), "log", "--all", "--format=%H", f"--grep={token}", check=False)
    return set(out.split())


def test_status_names_the_git_server_registries_and_contexts(stack_command) -> None:
    out = stack_command("status").stdout
    assert "https://localhost:8443/REPOSITORY.git" in out, out
    for repo in SERVICE_REPOS + ENV_REPOS:
        assert repo in out
    assert "https://localhost:5000" in out and "https://localhost:5001" in out, out
    contexts = next(line for line in out.splitlines() if line.startswith("contexts"))
    for env_name in ("dev", "test", "prod"):
        assert f"deploybook-{env_name} " in f"{contexts} " and f"deploybook-{env_name}-view" in contexts
