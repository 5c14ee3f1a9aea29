"""The names of a release's stages and built-in checks, in the order they run for each service.

A module of its own, importing nothing, because the pytest plugin's entry reads them (for
``--from-stage`` and the markers) in every pytest run, a team's own unit tests included.
"""

from __future__ import annotations

STAGES: tuple[str, ...] = ("build", "push", "apply")
"""The release stages, in the order they run for each service."""

CHECKS: tuple[str, ...] = ("rollout", "endpoints", "digests", "containers", "rules")
"""The built-in post-deploy checks, in the order they run for each service."""
