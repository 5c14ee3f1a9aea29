"""The code every service is built from: its git source fetched at the environment's branch.

A service whose code lives in its own repository (``source`` in the app or the environment
file) is fetched before anything touches a cluster, every service side by side, each into
``RUN_DIR/sources/SERVICE`` at the ref the branch rule gives (a rollback or a promotion asks
for recorded commits instead). The commit each ref pointed at is what the build labels, the
record and the report name. Git reaches the repositories with the environment's credentials
by reference and its CA (``deploybook.sources.access``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from deploybook.config.model import Environment, Service
from deploybook.errors import GitError
from deploybook.sources.access import GitAccess
from deploybook.sources.git import Checkout, GitState, fetch_checkout

__all__ = ["fetch_sources", "git_access", "source_info"]

_AT_ONCE = 4


def git_access(env: Environment) -> GitAccess:
    """How git reaches ``env``'s repositories, from its ``git`` settings."""
    g = env.git
    return GitAccess(g.credential_helper, g.username, g.password_file, g.ca_file)


def fetch_sources(
    env: Environment,
    work_dir: Path,
    *,
    commits: Mapping[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Checkout]:
    """Every git-sourced service's repository, fetched into ``work_dir/SERVICE`` at its ref
    (or at ``commits[service]``, and then only the services it names).

    One GitError names every service whose source could not be fetched, grouped by cause.
    """
    wanted = [s for s in env.services if s.source is not None and (commits is None or s.name in commits)]
    access = git_access(env)

    def fetch(service: Service) -> Checkout:
        assert service.source is not None
        ref = (commits or {}).get(service.name) or env.source_ref(service) or "HEAD"
        return fetch_checkout(service.source.url, ref, work_dir / service.name, access=access)

    with ThreadPoolExecutor(max_workers=min(_AT_ONCE, len(wanted)) or 1) as pool:
        futures = {s.name: pool.submit(fetch, s) for s in wanted}
    failed = {name: f.exception() for name, f in futures.items() if f.exception() is not None}
    if failed:
        raise _grouped(failed, env)
    fetched = {name: f.result() for name, f in futures.items()}
    for name, checkout in fetched.items():
        if say is not None:
            say(f"source {name}: {checkout.url} {checkout.ref} at {checkout.short}")
    return fetched


def _grouped(failed: Mapping[str, BaseException | None], env: Environment) -> GitError:
    """One error for every failed fetch: services that failed for the same cause share a line."""
    groups: dict[str, tuple[list[str], str]] = {}
    for name, error in failed.items():
        text = f"{error.source}: {error.message}" if isinstance(error, GitError) and error.source else str(error)
        cause = error.hint if isinstance(error, GitError) and error.hint else text
        groups.setdefault(cause, ([], text))[0].append(name)
    return GitError(
        f"could not fetch the source of {len(failed)} of {len(env.services)} services, so nothing was built "
        "or applied: " + "; ".join(f"{', '.join(names)}: {text}" for names, text in groups.values()),
        source=str(env.file),
        hint=next(iter(groups)) if len(groups) == 1 else "see each service's cause",
    )


def source_info(
    env: Environment, service: Service, checkout: Checkout | None, project: GitState | None
) -> dict[str, Any]:
    """What the record says about the code ``service`` was built from."""
    if checkout is not None and service.source is not None:
        return {
            "kind": "git",
            "url": checkout.url,
            "ref": checkout.ref,
            "commit": checkout.commit,
            "path": service.source.path,
        }
    context = service.context
    return {
        "kind": "path",
        "path": str(context.relative_to(env.root)) if context.is_relative_to(env.root) else str(context),
        "commit": project.commit if project else None,
        "dirty": bool(project and project.dirty),
    }
