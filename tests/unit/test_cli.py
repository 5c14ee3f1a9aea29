"""The deploybook command: init writes a team's project, upgrade keeps the team's own edits."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest

from deploybook import cli

ROOT = Path(__file__).resolve().parents[2]


def test_init_writes_a_runbook_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "team"
    assert cli.main(["init", str(project)]) == 0
    for name in (
        "pytest.ini",
        "conftest.py",
        "app.yaml",
        ".gitignore",
        "package.json",
        "package-lock.json",
        "environments/local.yaml",
        "runbook/test_10_build.py",
        "checks/test_30_digests.py",
        "apps/hello/Dockerfile",
        "apps/hello/manifests/hello.yaml",
        "tests/test_environments.py",
        ".deploybook.json",
    ):
        assert (project / name).is_file(), name
    assert os.access(project / "apps/hello/prepare", os.X_OK)
    assert "reports/" in (project / ".gitignore").read_text()
    # The modules a team gets are this repository's own runbook and checks.
    assert (project / "runbook/test_30_apply.py").read_bytes() == (ROOT / "runbook/test_30_apply.py").read_bytes()
    out = capsys.readouterr().out
    assert "a git checkout on branch main with a first commit" in out and "pytest runbook --env local" in out
    assert (project / ".git").is_dir()


def test_init_refuses_a_directory_that_holds_something(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["init", str(tmp_path), "--no-git"]) == 1
    assert f"{tmp_path}: {tmp_path} is not empty -> init into a new or empty directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_upgrade_replaces_what_deploybook_wrote_and_keeps_what_the_team_changed(tmp_path: Path) -> None:
    project = tmp_path / "team"
    cli.init_project(project)
    build, push = project / "runbook/test_10_build.py", project / "runbook/test_20_push.py"
    build.write_text("# an older deploybook wrote this\n")
    cli._save_state(project, {**cli._load_state(project), "runbook/test_10_build.py": cli._sha(build.read_bytes())})
    push.write_text(push.read_text() + "\n# the team's own line\n")
    (project / "checks/test_10_rollout.py").unlink()

    plan = {c.path: c.action for c in cli.plan_upgrade(project) if c.action != "same"}
    assert plan == {
        PurePosixPath("runbook/test_10_build.py"): "write",
        PurePosixPath("runbook/test_20_push.py"): "keep",
        PurePosixPath("checks/test_10_rollout.py"): "write",
    }
    assert cli.main(["upgrade", str(project), "--check"]) == 1
    assert cli.main(["upgrade", str(project)]) == 0
    assert build.read_bytes() == (ROOT / "runbook/test_10_build.py").read_bytes()
    assert push.read_text().endswith("# the team's own line\n")  # kept
    assert (project / "runbook/test_20_push.py.new").read_bytes() == (ROOT / "runbook/test_20_push.py").read_bytes()
    assert (project / "checks/test_10_rollout.py").is_file()
    assert {c.action for c in cli.plan_upgrade(project)} == {"same", "keep"}


def test_this_repository_runs_the_runbook_a_team_gets() -> None:
    assert {c.action for c in cli.plan_upgrade(ROOT)} == {"same"}


def test_status_of_an_unknown_environment_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "environments").mkdir()
    assert cli.main(["status", "--env", "staging", "--project", str(tmp_path)]) == 1
    assert "unknown environment 'staging'" in capsys.readouterr().err


def test_status_of_an_unreachable_cluster_is_a_row_that_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "prod.yaml").write_text(
        "cluster: {context: nowhere, namespace: ns}\nregistry: {address: reg.example}\nbranch: {name: main}\n"
        "manifests: {path: m}\nservices:\n  - {name: api, context: a, image: app/api, manifest: api.yaml}\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    assert cli.main(["status", "--json", "--project", str(tmp_path)]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert row["environment"] == "prod" and row["verdict"] == "unreachable" and "ClusterError" in row["problem"]
