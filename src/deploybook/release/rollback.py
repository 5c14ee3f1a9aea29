"""Restore the last passed release after a failed one (``--rollback-on-failure``).

The rollback target is the last passed release of the environment, read from the cluster
before anything is applied. Each service this run applied is rendered again exactly as that
release rendered it (its digests, its release id, its git sha) and server-side applied; when
the rendered text hashes to the sha256 the target recorded for the manifest, the restored
objects are byte for byte the ones that passed (``method: exact``), otherwise the manifests
changed since and the result is the target's images in today's manifests (``re-rendered``).
Then every restored workload is watched until it has rolled out and the digests its pods run
are compared with the target's: a rollback is only reported done when that proof holds.

Rendering goes through ``deploybook.manifests.render.render_service``, as the apply stage's
does, so a rollback reproduces what an apply of the target did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploybook.cluster.selectors import label_selector
from deploybook.config.model import Environment, Service
from deploybook.errors import DeploybookError, RolloutFailed
from deploybook.evidence.record import ReleaseRecord
from deploybook.manifests.apply import apply_objects
from deploybook.manifests.load import load_manifests
from deploybook.manifests.render import render_service, rendered_text
from deploybook.verify.digests import digest_mismatches, running_images
from deploybook.verify.rollout import wait_for_rollout

__all__ = ["RollbackResult", "ServiceRollback", "render_service", "rendered_text", "roll_back", "to_roll_back"]

_WATCHED = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class ServiceRollback:
    """How one service was restored, and the proof."""

    service: str
    from_digest: str | None
    to_digest: str | None
    method: str = ""  # "exact", "re-rendered" or "" when nothing could be restored
    verified: bool = False
    detail: str = ""


@dataclass(frozen=True)
class RollbackResult:
    """The rollback of one failed release to ``target_run_id``."""

    target_run_id: str
    services: tuple[ServiceRollback, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every service was restored and proven to run the target's digests."""
        return bool(self.services) and all(s.verified for s in self.services)

    def to_dict(self) -> dict[str, Any]:
        """The ``rollback`` entry of the release record."""
        return {
            "target_run_id": self.target_run_id,
            "ok": self.ok,
            "services": {
                s.service: {
                    "from": s.from_digest,
                    "to": s.to_digest,
                    "method": s.method,
                    "verified": s.verified,
                    "detail": s.detail,
                }
                for s in self.services
            },
        }


def to_roll_back(attempt: ReleaseRecord, target: ReleaseRecord) -> list[str]:
    """Services this attempt changed (apply ran, passed or not) that the target can restore."""
    touched = [
        n for n, s in attempt.services.items() if s.stages.get("apply", {}).get("outcome") in ("passed", "failed")
    ]
    return [n for n in touched if n in target.services and target.services[n].digest]


def roll_back(
    kube: Any,
    environment: Environment,
    target: ReleaseRecord,
    services: list[str],
    *,
    manifest_dir: Path,
    timeout_s: float,
    attempted: Mapping[str, str | None] | None = None,
    say: Callable[[str], None] | None = None,
) -> RollbackResult:
    """Re-apply ``target``'s rendering of each service in ``services`` and prove it runs.

    ``attempted`` maps service -> the digest the failed release tried (for the record).
    """
    say = say or (lambda _text: None)
    by_name = {s.name: s for s in environment.services}
    refs = {
        s.image: ref
        for s in environment.services
        if (old := target.services.get(s.name)) is not None and (ref := old.ref)
    }
    done = []
    for name in services:
        say(f"rollback {name}: restoring release {target.run_id}")
        restored = _restore(kube, environment, target, by_name[name], refs, manifest_dir, timeout_s)
        done.append(
            ServiceRollback(
                name,
                (attempted or {}).get(name),
                restored.to_digest,
                restored.method,
                restored.verified,
                restored.detail,
            )
        )
        say(
            f"rollback {name}: {done[-1].method or 'not restored'}, "
            f"{'proven' if done[-1].verified else 'NOT proven'}: {done[-1].detail}"
        )
    return RollbackResult(target.run_id, tuple(done))


def _restore(
    kube: Any,
    environment: Environment,
    target: ReleaseRecord,
    service: Service,
    refs: Mapping[str, str],
    manifest_dir: Path,
    timeout_s: float,
) -> ServiceRollback:
    old = target.services[service.name]
    try:
        manifests = load_manifests(manifest_dir / service.manifest)
        objs = render_service(
            service,
            environment,
            manifests,
            refs=refs,
            pull_secret=environment.pull_secret,
            release_id=old.deployed_by or target.run_id,
            git_sha=str(old.source.get("commit") or target.git.get("commit", "")),
            pins={e["written"]: e["pinned"] for e in old.third_party if e.get("written") and e.get("pinned")},
        )
        sha = hashlib.sha256(rendered_text(objs).encode()).hexdigest()
        method = "exact" if old.manifests.get(service.manifest) == sha else "re-rendered"
        apply_objects(kube, objs)
    except (DeploybookError, OSError) as e:
        return ServiceRollback(service.name, None, old.digest, detail=f"could not re-apply: {e}")
    problems = _prove(kube, environment, service, objs, str(old.digest), timeout_s)
    detail = "; ".join(problems) or f"running {old.digest} again"
    return ServiceRollback(service.name, None, old.digest, method, not problems, detail)


def _prove(
    kube: Any, environment: Environment, service: Service, objs: list[dict[str, Any]], digest: str, timeout_s: float
) -> list[str]:
    """Wait for each restored workload and compare the digests its pods run with ``digest``."""
    namespace = environment.cluster.namespace
    problems: list[str] = []
    for obj in objs:
        if obj["kind"] not in _WATCHED:
            continue
        name = obj["metadata"]["name"]
        try:
            wait_for_rollout(
                kube,
                obj["kind"],
                namespace,
                name,
                timeout_s=timeout_s,
                probe_failures_allowed=environment.timeouts.probe_failures_allowed,
                crashes_allowed=environment.timeouts.crashes_allowed,
            )
        except RolloutFailed as e:
            problems.append(f"{obj['kind']}/{name}: {e.cause}: {e.detail}")
            continue
        running = running_images(kube, namespace, label_selector(obj), image_repository=service.image)
        wrong = digest_mismatches(running, digest)
        if not running or wrong:
            problems.append(f"{obj['kind']}/{name}: " + ("; ".join(map(str, wrong)) or "no running container"))
    return problems
