"""Release rules checked before anything changes: branch, clean tree, production promotion.

The rules are the environment file's (``branch.name``, ``branch.clean_tree``,
``promote_from``), so ``local`` can relax them while ``prod`` insists on a clean ``main``
and on promoting only digests that passed on test. The branch rule holds every source of a
release: each service's git source is fetched at that branch (a source naming another ref
is refused), and this checkout is held to it when it is a source itself
(``Environment.project_is_source``). A promotion is checked twice: the record it takes
(a file, or the source environment's cluster) must claim a passed release of the right
environment, and every digest it names must be proven by the source environment's own
history of passed releases, which the author of a file cannot write. Each broken rule is
one :class:`~deploybook.errors.PolicyError` that says which rule and how to satisfy it.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploybook.config.model import Environment
from deploybook.errors import PolicyError
from deploybook.evidence.record import PassedRelease, ReleaseRecord
from deploybook.sources.git import GitState


def check_branch(env: Environment, git: GitState) -> None:
    """The checkout must be on the environment's branch (when the file names one)."""
    wanted = env.branch.name
    if wanted is None or git.branch == wanted:
        return
    raise PolicyError(
        f"environment {env.name!r} releases from branch {wanted!r}, this checkout is on "
        f"{git.branch or 'a detached HEAD'!r}",
        source=f"{env.file} branch.name",
        hint=f"git switch {wanted}, or release to an environment that allows this branch",
    )


def check_source_refs(env: Environment) -> None:
    """A service source that names its own ref must name the environment's branch."""
    wanted = env.branch.name
    for service in env.services:
        ref = service.source.ref if service.source else None
        if wanted is not None and ref is not None and ref != wanted:
            raise PolicyError(
                f"service {service.name}'s source is pinned to ref {ref!r}, but environment {env.name!r} "
                f"releases every source from branch {wanted!r}",
                source=f"{env.file} branch.name",
                hint=f"remove the source's ref (it then follows {wanted!r}), or release to an environment "
                f"whose branch is {ref!r}",
            )


def check_clean_tree(env: Environment, git: GitState) -> None:
    """When the environment asks for it, nothing may be uncommitted."""
    if not env.branch.clean_tree or not git.dirty:
        return
    shown = ", ".join(git.dirty_files[:5]) + (" ..." if len(git.dirty_files) > 5 else "")
    raise PolicyError(
        f"environment {env.name!r} needs a clean tree; uncommitted: {shown}",
        source=f"{env.file} branch.clean_tree",
        hint="commit or remove the changes, then release again",
    )


def check_promotion(env: Environment, record: ReleaseRecord | None, *, confirmed: bool) -> None:
    """A deploy-only environment takes every digest from a passed release of ``promote_from``."""
    if env.promote_from is None:
        return
    if not confirmed:
        raise PolicyError(
            f"releasing to {env.name!r} needs explicit confirmation",
            source="--confirm-prod",
            hint="add --confirm-prod once the test release has been reviewed",
        )
    if record is None:
        raise PolicyError(
            f"{env.name!r} is deploy-only and promotes a release of {env.promote_from!r}; none was given "
            f"and none is recorded",
            source="--release",
            hint=f"pass --release reports/{env.promote_from}/RUN_ID/release.json of a passed release",
        )
    _check_promoted_record(env, record)


def _check_promoted_record(env: Environment, record: ReleaseRecord) -> None:
    where = f"release {record.run_id}"
    if record.environment != env.promote_from:
        raise PolicyError(
            f"{where} was made on {record.environment!r}; {env.name!r} only promotes {env.promote_from!r} releases",
            source=where,
            hint=f"pass the release.json of a passed {env.promote_from} release",
        )
    if not record.passed:
        raise PolicyError(
            f"{where} did not pass on {record.environment!r} (outcome {record.outcome!r}"
            f"{', dry-run' if record.dry_run else ''}); its digests never passed test",
            source=where,
            hint="release to test until it passes, then promote that release",
        )
    missing = [s for s in env.service_names if not record.services.get(s) or not record.services[s].digest]
    if missing:
        raise PolicyError(
            f"{where} has no tested digest for: {', '.join(missing)}",
            source=where,
            hint="promote a test release that built every service of this environment",
        )


def check_proven(
    env: Environment, claim: ReleaseRecord, passed: Sequence[PassedRelease], *, where: str
) -> PassedRelease:
    """Every digest ``claim`` promotes is the one its release ran when it passed, as the source
    environment's own history (``where``) says; returns that history entry."""
    entry = next((p for p in passed if p.run_id == claim.run_id), None)
    if entry is None:
        known = ", ".join(p.run_id for p in passed[:5]) or "none"
        raise PolicyError(
            f"release {claim.run_id} never passed on {env.promote_from!r}: its own record of passed releases "
            f"has {known}; nothing was applied",
            source=where,
            hint=f"promote a release that passed on {env.promote_from} (without --release: the one it runs now)",
        )
    wrong = [
        f"{name}: {claim.services[name].digest} (that release ran {entry.digests.get(name) or 'no digest'})"
        for name in env.service_names
        if claim.services[name].digest != entry.digests.get(name)
    ]
    if wrong:
        raise PolicyError(
            f"release {claim.run_id} names digests that never passed on {env.promote_from!r}: "
            + "; ".join(wrong)
            + "; nothing was applied",
            source=where,
            hint=f"promote the release.json {env.promote_from} wrote, unedited, or no --release at all",
        )
    return entry
