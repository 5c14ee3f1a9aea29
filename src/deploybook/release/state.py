"""Run state of one release: what each stage produced, per service.

The state lives in ``config.stash[RUN_STATE]`` (never in module globals) so every xdist
worker has its own copy built from the same run id. Each worker writes what it learns about
a service as a JSON fragment under ``RUN_DIR/fragments/``; the controller merges the
fragments into ``release.json`` at the end of the session.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deploybook.config.environment import Environment

if TYPE_CHECKING:
    from deploybook.evidence.record import ReleaseRecord
    from deploybook.sources.git import GitState

STAGES: tuple[str, ...] = ("build", "push", "apply")
"""The release stages, in the order they run."""

FRAGMENTS = "fragments"


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a few random hex digits."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def utc_now() -> str:
    """The current UTC time in RFC 3339 form."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ServiceResult:
    """What the stages produced for one service; serialised into the release record."""

    name: str
    image: str | None = None
    tag: str | None = None
    image_id: str | None = None
    digest: str | None = None
    digest_source: str | None = None
    deployed_by: str | None = None
    manifests: dict[str, str] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ref(self) -> str | None:
        """The pinned image reference ``repository@sha256:...`` once the digest is known."""
        return f"{self.image}@{self.digest}" if self.image and self.digest else None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON, including the pinned ``ref``."""
        return {**asdict(self), "ref": self.ref}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceResult:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class RunState:
    """The state of one release run, shared by hooks and fixtures through ``config.stash``.

    ``source_record`` is a release record this run builds on: the record being resumed
    (``--from-stage``), the test release being promoted (prod), or, for a checks-only run,
    the record kept in the cluster. ``rollback_target`` is the last passed release of the
    environment, read before anything is applied when ``--rollback-on-failure`` is given.
    ``running_test`` is the node id of the test running now, so an interrupted release can
    say where it stopped.
    """

    env: Environment
    run_id: str
    run_dir: Path
    mode: str
    dry_run: bool = False
    from_stage: str | None = None
    confirm_prod: bool = False
    take_over_lock: bool = False
    rollback_on_failure: bool = False
    git: GitState | None = None
    started: str = field(default_factory=utc_now)
    source_record: ReleaseRecord | None = None
    results: dict[str, ServiceResult] = field(default_factory=dict)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    rollback_target: ReleaseRecord | None = None
    running_test: str | None = None

    @property
    def tag(self) -> str:
        """The image tag of this release: the short commit, marked when the tree is dirty."""
        if self.git is None:
            return self.run_id.lower()
        return f"{self.git.short}-dirty" if self.git.dirty else self.git.short

    def result(self, service: str) -> ServiceResult:
        """The (possibly empty) result of ``service``."""
        return self.results.setdefault(service, ServiceResult(name=service))

    def record_service(self, service: str, **fields: Any) -> ServiceResult:
        """Update what is known about ``service`` and persist it as a fragment."""
        result = self.result(service)
        for key, value in fields.items():
            if key not in ServiceResult.__dataclass_fields__:
                raise AttributeError(f"ServiceResult has no field {key!r}")
            setattr(result, key, value)
        self.write_fragment(service)
        return result

    def record_stage(self, service: str, stage: str, outcome: str, duration_s: float, reason: str = "") -> None:
        """Remember how a stage ended for ``service`` (outcome, time, reason when not passed)."""
        entry: dict[str, Any] = {"outcome": outcome, "duration_s": round(duration_s, 3)}
        if reason:
            entry["reason"] = reason
        self.result(service).stages[stage] = entry
        self.write_fragment(service)

    def mark_failed(self, service: str, stage: str, reason: str) -> None:
        """Record the first failure of ``service``; its later stages will be skipped."""
        self.failures.setdefault(service, (stage, reason))

    def failure(self, service: str) -> tuple[str, str] | None:
        """``(stage, reason)`` of the failure that blocks ``service``, if any."""
        return self.failures.get(service)

    def expected_digest(self, service: str) -> str | None:
        """The digest ``service`` should run: from this run, else from the source record."""
        digest = self.results.get(service, ServiceResult(service)).digest
        if digest is None and self.source_record is not None:
            svc = self.source_record.services.get(service)
            digest = svc.digest if svc else None
        return digest

    def expected_ref(self, service: str) -> str | None:
        """The pinned image reference ``service`` should run (this run, else source record)."""
        ref = self.results.get(service, ServiceResult(service)).ref
        if ref is None and self.source_record is not None:
            svc = self.source_record.services.get(service)
            ref = svc.ref if svc else None
        return ref

    def prefill_from_record(self) -> None:
        """Take outputs of stages this run does not do (resume, promotion) from the source record."""
        record = self.source_record
        if record is None:
            return
        for svc in self.env.services:
            old = record.services.get(svc.name)
            if old is None or not old.digest:
                continue
            self.results[svc.name] = ServiceResult(
                name=svc.name,
                image=self.env.image_repository(svc),
                tag=old.tag,
                image_id=None if self.env.promote_from else old.image_id,
                digest=old.digest,
            )

    def write_fragment(self, service: str) -> Path:
        """Write ``service``'s result to ``RUN_DIR/fragments/SERVICE.json`` atomically."""
        return self.write_extra(service, self.result(service).to_dict())

    def write_extra(self, name: str, data: dict[str, Any]) -> Path:
        """Write a named fragment (e.g. the manifest source) for the controller to merge."""
        directory = self.run_dir / FRAGMENTS
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(path)
        return path


RUN_STATE = pytest.StashKey[RunState]()
"""Where the plugin keeps the :class:`RunState` of the current run in ``config.stash``."""
