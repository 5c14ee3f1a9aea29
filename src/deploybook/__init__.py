"""deploybook: a Kubernetes release as a notebook-style pytest runbook.

``pytest runbook --env ENV`` builds, pushes and applies every service of an app, then runs
the post-deploy checks; ``pytest checks --env ENV`` runs the checks alone. The pytest plugin
enters through :mod:`deploybook.plugin.hooks`; the module map is in ``docs/architecture.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"
