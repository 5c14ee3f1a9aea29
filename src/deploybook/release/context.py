"""What one run is, fixed before anything runs: environment, mode, run id, options, sources.

A :class:`RunContext` is immutable. It is made once by the pytest layer from the command line
and the environment file; the one fact that may be learned later (the release a promotion
takes its digests from, read from the test environment's cluster) gives a new context with
:func:`dataclasses.replace`, never a change in place.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploybook.config.model import Environment
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.release.names import STAGES
from deploybook.sources.git import GitState


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a few random hex digits."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def utc_now() -> str:
    """The current UTC time in RFC 3339 form."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RunOptions:
    """What the operator asked for on the command line."""

    dry_run: bool = False
    from_stage: str | None = None
    confirm_prod: bool = False
    take_over_lock: bool = False
    rollback_on_failure: bool = False
    kube_context: str | None = None


@dataclass(frozen=True)
class RunContext:
    """One run of the runbook (``mode="runbook"``) or of the checks alone (``"checks"``).

    ``source_record`` is the release this run builds on: the one resumed (``--from-stage``),
    the test release promoted (a deploy-only environment), or, for checks alone, the release
    the checks compare against (``--release FILE``; else the record kept in the cluster).
    """

    env: Environment
    mode: str
    run_id: str
    run_dir: Path
    started: str
    options: RunOptions = RunOptions()
    git: GitState | None = None
    source_record: ReleaseRecord | None = None
    promotion_proof: str = ""  # for a promotion: what proved that every digest passed

    @property
    def releasing(self) -> bool:
        """True for a runbook run that changes the cluster (not checks alone, not a dry run)."""
        return self.mode == "runbook" and not self.options.dry_run

    @property
    def tag(self) -> str:
        """The image tag of this release: the short commit, marked when the tree is dirty."""
        if self.git is None:
            return self.run_id.lower()
        return f"{self.git.short}-dirty" if self.git.dirty else self.git.short

    @property
    def promoting(self) -> bool:
        """True when this environment only promotes what another one released."""
        return self.env.promote_from is not None

    def recorded(self, service: str) -> ServiceRecord | None:
        """What the source record says about ``service`` (None without one)."""
        if self.source_record is None:
            return None
        return self.source_record.services.get(service)

    def skips_stage(self, stage: str) -> bool:
        """True when ``--from-stage`` resumes after ``stage``: its output comes from the record."""
        start = self.options.from_stage
        return start is not None and STAGES.index(stage) < STAGES.index(start)

    @property
    def built_from(self) -> str:
        """The commit the images are built from (for a promotion: the promoted release's)."""
        if self.promoting and self.source_record is not None:
            return str(self.source_record.git.get("commit", ""))
        return self.git.commit if self.git else ""
