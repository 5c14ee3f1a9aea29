"""Sources on the real git server and environments held to their namespaces, when things go wrong.

Each refused case releases dev (or prod) from a clean runbook checkout whose environment file
the case changed, and must end with one ``ERROR:`` line naming where the problem is, a
non-zero exit, and the namespace exactly as it was:

- a service repository whose branch is missing (every service named, the ref and the URL);
- the git server down (its web server stopped for the run, started again afterwards);
- the git server refusing the credentials (a password file holding a wrong password, which
  appears nowhere in the output);
- dev's context pointed at prod's namespace (the API server says it may not write there).

An environment repository's ref that moved between test and prod: prod takes its manifests
from a branch of dx29-env-prod that gets a new commit after test released; test's record
keeps the commit it used and prod's names the new one.
"""

from __future__ import annotations

from pathlib import Path

from bad_input.sandbox import Run, Sandbox
from git_server import GitServer
from pipeline_kit import ensure_passed_test_release, error_lines, runbook, stored, versions


def release(box: Sandbox, tmp: Path, environment: str = "dev", *extra: str) -> Run:
    return box.run("runbook", "--env", environment, *extra, reports=tmp / "reports")


def refused(env: dict[str, str], box: Sandbox, tmp: Path, namespace_of: str, *expected: str) -> str:
    """Release dev from ``box``: one error line with every ``expected`` text, nothing changed."""
    before = versions(env, namespace_of)
    run = release(box, tmp)
    errors = error_lines(run)
    assert run.returncode != 0 and len(errors) == 1, f"exit {run.returncode}, errors {errors}\n{run.output[-3000:]}"
    missing = [text for text in expected if text not in errors[0]]
    assert not missing, f"{missing} not in: {errors[0]}"
    assert versions(env, namespace_of) == before, f"something changed in dx29-{namespace_of}"
    return errors[0]


def dev_box(env: dict[str, str], tmp: Path, *replacements: tuple[str, str]) -> Sandbox:
    box = runbook(tmp, env)
    box.edit("environments/dev.yaml", *replacements)
    box.commit("dev changed for the case")
    return box


def test_a_missing_branch_of_the_service_repositories_is_one_error(
    cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    branch = "e2e-no-such-branch"
    box = dev_box(cluster_ready, tmp_path, ("  name: develop", f"  name: {branch}"))
    line = refused(
        cluster_ready, box, tmp_path, "dev", "4 of 4 services", f"ref '{branch}' does not exist", "/dx29-gateway.git"
    )
    assert "gateway, annotation, terms, worker" in line and "nothing was built or applied" in line


def test_the_git_server_down_is_one_error(cluster_ready: dict[str, str], tmp_path: Path, stack_kit: object) -> None:
    box = runbook(tmp_path, cluster_ready)
    with stack_kit.component_down("git-server", cluster_ready):  # type: ignore[attr-defined]
        stack_kit.stop_component("git-server", cluster_ready)  # type: ignore[attr-defined]
        refused(
            cluster_ready, box, tmp_path, "dev", "the git server is unreachable", cluster_ready["DEPLOYBOOK_GIT_URL"]
        )
    assert stack_kit.component_pid("git-server", cluster_ready) is not None  # type: ignore[attr-defined]


def test_refused_credentials_are_one_error_without_the_password(cluster_ready: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-git-password"
    wrong.write_text("not-the-password-7e1d\n")
    box = dev_box(
        cluster_ready,
        tmp_path,
        (
            "  credential_helper: ${DEPLOYBOOK_GIT_CREDENTIAL_HELPER}\n",
            f"  username: ${{DEPLOYBOOK_GIT_USER}}\n  password_file: {wrong}\n",
        ),
    )
    line = refused(cluster_ready, box, tmp_path, "dev", "refused the credentials", f"the password in {wrong}")
    assert "not-the-password-7e1d" not in release(box, tmp_path / "again").output and "7e1d" not in line


def test_devs_context_in_prods_namespace_is_refused_naming_both(cluster_ready: dict[str, str], tmp_path: Path) -> None:
    box = dev_box(cluster_ready, tmp_path, ("  namespace: dx29-dev", "  namespace: dx29-prod"))
    line = refused(cluster_ready, box, tmp_path, "prod", "context deploybook-dev may not write in namespace dx29-prod")
    assert "nothing was applied" in line


def test_an_environment_repositorys_ref_that_moved_is_recorded_where_it_was_used(
    cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    test = ensure_passed_test_release(cluster_ready, tmp_path / "test")
    git = GitServer(cluster_ready, tmp_path)
    with git.throwaway_branch("dx29-env-prod") as (branch, checkout):
        when_test_ran = git.head("dx29-env-prod", branch)
        text = (checkout / "manifests" / "terms.yaml").read_text()
        moved = git.commit_and_push(checkout, branch, "manifests/terms.yaml", text + "# moved after test released\n")
        box = runbook(tmp_path / "prod", cluster_ready)
        box.edit("environments/prod.yaml", ("    ref: main", f"    ref: {branch}"))
        box.commit("prod from a branch of dx29-env-prod")
        run = release(box, tmp_path / "prod", "prod", "--confirm-prod")
        assert run.returncode == 0, run.output[-3000:]
    prod = stored(cluster_ready, "prod")
    assert prod is not None and prod["manifest_source"]["commit"] == moved != when_test_ran
    assert prod["manifest_source"]["ref"] == branch and prod["promoted_from"] == test["run_id"]
    assert stored(cluster_ready, "test")["manifest_source"]["commit"] == test["manifest_source"]["commit"]
