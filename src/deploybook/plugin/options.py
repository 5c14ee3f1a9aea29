"""deploybook's command-line options, in one group, and which kind of run a command line asks for.

Read by every pytest run where deploybook is installed, so it imports nothing but pytest and
the stage names. What the options make of a run is in ``deploybook.plugin.run_context``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybook.release.names import STAGES

__all__ = ["CHECKS_DIR", "ENVIRONMENTS_DIR", "RUNBOOK_DIR", "add_options", "collect_checks_too", "release_mode"]

RUNBOOK_DIR = "runbook"
CHECKS_DIR = "checks"
ENVIRONMENTS_DIR = "environments"


def add_options(parser: pytest.Parser) -> None:
    """All deploybook options, in one group."""
    group = parser.getgroup("deploybook", "deploybook release runbook")
    group.addoption(
        "--env",
        dest="deploybook_env",
        metavar="NAME",
        default=None,
        help="environment to release to or check: environments/NAME.yaml (required for runbook/ and checks/)",
    )
    group.addoption(
        "--dry-run",
        dest="deploybook_dry_run",
        action="store_true",
        default=False,
        help="change nothing: build and render, then server-side dry-run and diff",
    )
    group.addoption(
        "--from-stage",
        dest="deploybook_from_stage",
        metavar="STAGE",
        choices=STAGES,
        default=None,
        help=f"resume a release at STAGE ({', '.join(STAGES)}); earlier stages take their outputs from --release",
    )
    group.addoption(
        "--release",
        dest="deploybook_release",
        metavar="FILE",
        default=None,
        help="a release.json: the release to resume (--from-stage), the test release "
        "to promote (prod), or what checks expect to be running",
    )
    group.addoption(
        "--kube-context",
        dest="deploybook_kube_context",
        metavar="NAME",
        default=None,
        help="kubeconfig context to use instead of the environment's (e.g. a read-only context for checks)",
    )
    group.addoption(
        "--confirm-prod",
        dest="deploybook_confirm_prod",
        action="store_true",
        default=False,
        help="confirm a release to a deploy-only (production) environment",
    )
    group.addoption(
        "--take-over-lock",
        dest="deploybook_take_over_lock",
        action="store_true",
        default=False,
        help="take over the environment lock of a release that stopped renewing it (expired), "
        "or of a dead process on this host; a live holder is never displaced",
    )
    group.addoption(
        "--rollback-on-failure",
        dest="deploybook_rollback",
        action="store_true",
        default=False,
        help="when the release fails, restore the last passed release of the environment "
        "and prove its digests run again (outcome rolled-back)",
    )
    group.addoption(
        "--reports-dir",
        dest="deploybook_reports_dir",
        metavar="DIR",
        default="reports",
        help="where run folders go: DIR/ENV/RUN_ID (default: reports)",
    )


def release_mode(config: pytest.Config) -> str | None:
    """``"runbook"`` when the run collects ``runbook/``, ``"checks"`` for ``checks/``, else None."""
    root = config.rootpath
    runbook, checks = root / RUNBOOK_DIR, root / CHECKS_DIR
    mode = None
    for arg in _arg_paths(config):
        if runbook.is_dir() and _overlaps(arg, runbook):
            return "runbook"
        if checks.is_dir() and _overlaps(arg, checks):
            mode = "checks"
    return mode


def collect_checks_too(config: pytest.Config) -> None:
    """``pytest runbook`` also runs the post-deploy checks, ordered after every stage."""
    root = config.rootpath
    paths = _arg_paths(config)
    checks = root / CHECKS_DIR
    if checks.is_dir() and root / RUNBOOK_DIR in paths and not any(_overlaps(p, checks) for p in paths):
        config.args.append(str(checks))


def _arg_paths(config: pytest.Config) -> list[Path]:
    base = config.invocation_params.dir
    return [(base / str(arg).split("::")[0]).resolve() for arg in config.args]


def _overlaps(arg: Path, directory: Path) -> bool:
    return arg == directory or directory in arg.parents or arg in directory.parents
