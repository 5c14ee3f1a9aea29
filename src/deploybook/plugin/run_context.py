"""The run context made from the command line: everything checked before any cluster contact.

The environment file, the options, the branch rule and clean tree, a ``--release`` record: a
bad value stops the run with one ``ERROR:`` line naming the flag, file or key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploybook.config.environment import known_environments, load_environment
from deploybook.config.model import Environment
from deploybook.errors import RecordError
from deploybook.evidence.record import ReleaseRecord, load_file
from deploybook.plugin.options import CHECKS_DIR, ENVIRONMENTS_DIR, RUNBOOK_DIR
from deploybook.release import policy
from deploybook.release.context import RunContext, RunOptions, new_run_id, utc_now
from deploybook.release.credentials import check_git_references, resolve_registry_auth
from deploybook.sources.git import repo_state

__all__ = ["run_context"]


def _options(config: pytest.Config) -> RunOptions:
    opt = config.option
    return RunOptions(
        dry_run=opt.deploybook_dry_run,
        from_stage=opt.deploybook_from_stage,
        confirm_prod=opt.deploybook_confirm_prod,
        take_over_lock=opt.deploybook_take_over_lock,
        rollback_on_failure=opt.deploybook_rollback,
        kube_context=opt.deploybook_kube_context,
    )


def run_context(config: pytest.Config, mode: str) -> RunContext:
    """The context of a ``mode`` run ("runbook" or "checks"); raises on any bad input."""
    env = _load_env(config)
    run_id = new_run_id()
    reports = Path(config.option.deploybook_reports_dir)
    reports = reports if reports.is_absolute() else config.rootpath / reports
    base = RunContext(
        env=env,
        mode=mode,
        run_id=run_id,
        run_dir=reports / env.name / run_id,
        started=utc_now(),
        options=_options(config),
    )
    if mode == "checks":
        return dataclasses.replace(base, source_record=_release_option(config, required=False))
    git = repo_state(config.rootpath)
    source = _source_record(config, env)
    if env.project_is_source:
        policy.check_branch(env, git)
        policy.check_clean_tree(env, git)
    policy.check_source_refs(env)
    # Without --release, a confirmed promotion reads the source environment's record from its
    # cluster when the session starts (the first cluster contact) and is checked there.
    if env.promote_from and (source is not None or not base.options.confirm_prod):
        policy.check_promotion(env, source, confirmed=base.options.confirm_prod)
    # Resolved after the rules (a refusal by them says more), before any cluster contact; the
    # secret itself is never kept. A promotion reads the images with its source's credentials.
    resolve_registry_auth(env)
    check_git_references(env)
    if env.promote_from:
        resolve_registry_auth(load_environment(env.promote_from, env.file.parent))
    return dataclasses.replace(base, git=git, source_record=source)


def _load_env(config: pytest.Config) -> Environment:
    name = config.option.deploybook_env
    directory = config.rootpath / ENVIRONMENTS_DIR
    if not name:
        known = ", ".join(known_environments(directory)) or "none found"
        raise pytest.UsageError(
            f"--env NAME is required to run {RUNBOOK_DIR}/ or {CHECKS_DIR}/ (known environments: {known})"
        )
    return load_environment(name, directory)


def _release_option(config: pytest.Config, *, required: bool) -> ReleaseRecord | None:
    path = config.option.deploybook_release
    if not path:
        if required:
            raise pytest.UsageError("--from-stage needs --release FILE: the release.json to resume from")
        return None
    return load_file(Path(config.invocation_params.dir, path))


def _source_record(config: pytest.Config, env: Environment) -> ReleaseRecord | None:
    opt = config.option
    record = _release_option(config, required=bool(opt.deploybook_from_stage))
    if record is None or env.promote_from is not None:
        return record
    if not opt.deploybook_from_stage:
        raise pytest.UsageError("--release on a non-promoting environment is only used with --from-stage")
    if record.environment != env.name:
        raise RecordError(
            f"release {record.run_id} was made on {record.environment!r}, not {env.name!r}",
            source=opt.deploybook_release,
            hint="resume with a release.json of this environment",
        )
    return record
