"""The deploybook exception tree.

Every error keeps where it came from (``stage``, ``service``, ``source``: a file and line,
a flag, a registry URL, a cluster server) and says what to do next, so the terminal can
show it as one line instead of a traceback. Library errors are wrapped at the seam where
they are met (``raise ... from e``); nothing above a seam catches a library exception::

    DeploybookError
    ├── ConfigError                 the app or an environment file is missing, malformed or invalid
    │   └── UnknownEnvironment      --env names no file in environments/
    ├── PolicyError                 branch rule, clean tree, production promotion, confinement
    ├── LockHeld                    another release holds the environment's Lease
    ├── GitError                    a git command failed (checkout state, fetching a source)
    ├── RecordError                 release.json missing, malformed or not usable
    ├── EvidenceError               the report or the bundle could not be made or verified
    ├── BuildError                  docker build failed (missing Dockerfile, failing step)
    ├── RegistryError               registry unreachable, auth refused, digest mismatch
    │   └── PushError               docker push failed
    ├── ClusterError                cluster unreachable or an API call failed
    │   ├── RenderError             manifests could not be loaded or rendered
    │   ├── ApplyError              server-side apply refused an object
    │   │   ├── OutsideNamespace    an object the cluster calls cluster-scoped, not allowed by name
    │   │   └── PreflightFailed     a service's manifests refused before anything was applied
    │   └── ExecFailed              a command could not be run inside a container
    │       └── ExecForbidden       the context may not exec into pods (pods/exec)
    └── CheckFailed                 a post-deploy check found something other than expected
        └── RolloutFailed           a workload did not roll out; ``cause`` says why
"""

from __future__ import annotations


class DeploybookError(Exception):
    """Base of all deploybook errors.

    ``message`` says what failed; ``hint`` says what to do next. ``stage``, ``service`` and
    ``source`` locate the failure and are kept as attributes for reports.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        service: str | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.service = service
        self.source = source
        self.hint = hint

    def __str__(self) -> str:
        where = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("stage", self.stage),
                ("service", self.service),
            )
            if value
        )
        text = self.message
        if self.source:
            text = f"{self.source}: {text}"
        if where:
            text = f"[{where}] {text}"
        if self.hint:
            text = f"{text} -> {self.hint}"
        return text

    def one_line(self) -> str:
        """The error as one terminal line: class name, location, message, hint."""
        return f"{type(self).__name__}: {self}".replace("\n", " ")


class ConfigError(DeploybookError):
    """An environment file is missing, malformed or fails validation.

    ``file``, ``line`` and ``key`` locate the offending value; ``source`` is built from them.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        source = file
        if file and line:
            source = f"{file}:{line}"
        if key:
            message = f"key '{key}': {message}"
        super().__init__(message, source=source, hint=hint)
        self.file = file
        self.line = line
        self.key = key


class UnknownEnvironment(ConfigError):
    """``--env`` names an environment that has no file in ``environments/``."""


class PolicyError(DeploybookError):
    """A release rule refuses this run (branch, clean tree, production promotion)."""


class LockHeld(DeploybookError):
    """Another release holds the environment lock; ``holder`` names it."""

    def __init__(self, message: str, *, holder: str, source: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, source=source, hint=hint)
        self.holder = holder


class GitError(DeploybookError):
    """A git command failed while reading a checkout or fetching a manifest repository."""


class RecordError(DeploybookError):
    """A release record is missing, malformed or cannot be used for this run."""


class BuildError(DeploybookError):
    """An image build failed (missing Dockerfile or context, a failing build step)."""


class RegistryError(DeploybookError):
    """The registry is unreachable, refused the credentials or answered unexpectedly."""


class PushError(RegistryError):
    """Pushing an image to the registry failed."""


class ClusterError(DeploybookError):
    """The cluster is unreachable or an API call failed."""


class RenderError(ClusterError):
    """Manifests could not be rendered (unknown image, malformed manifest)."""


class ApplyError(ClusterError):
    """Server-side apply refused an object."""


class OutsideNamespace(ApplyError):
    """An object would be written outside the environment's namespace, which it did not allow."""


class StillRunning(ApplyError):
    """A Job or bare Pod of an earlier release must run again for this one, and has not finished yet."""


class PreflightFailed(ApplyError):
    """Before anything ran, some service's manifests did not render or were refused by a dry-run."""


class ExecFailed(ClusterError):
    """A command could not be run in a container, or said nothing usable."""


class ExecForbidden(ExecFailed):
    """The context may not exec into pods (no ``create`` on ``pods/exec``)."""


class EvidenceError(DeploybookError):
    """The release evidence could not be produced or verified (Allure missing, a bad bundle)."""


class CheckFailed(DeploybookError):
    """A post-deploy check found something other than what was expected."""


class RolloutFailed(CheckFailed):
    """A workload that will not roll out; ``cause`` names why (CrashLoopBackOff, Timeout, ...).

    ``evidence`` is the text an operator reads to see why: conditions, events, log tails.
    """

    def __init__(
        self,
        *,
        kind: str,
        namespace: str,
        name: str,
        cause: str,
        detail: str,
        evidence: str = "",
        deadline_s: float = 0.0,
        deadline_source: str = "timeout",
        elapsed_s: float = 0.0,
        timeline: tuple[tuple[float, str], ...] = (),
        service: str | None = None,
    ) -> None:
        super().__init__(
            f"{kind} {namespace}/{name} failed to roll out after {elapsed_s:.1f}s: {cause}: {detail} "
            f"(deadline {deadline_s:.0f}s from {deadline_source})",
            service=service,
            hint="see the conditions, events and log tails in the evidence; fix the cause and release again",
        )
        self.kind, self.namespace, self.name = kind, namespace, name
        self.cause, self.detail, self.evidence = cause, detail, evidence
        self.deadline_s, self.deadline_source = deadline_s, deadline_source
        self.elapsed_s, self.timeline = elapsed_s, timeline
