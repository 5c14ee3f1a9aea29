"""Cleanup of the throwaway environments the e2e fixtures write: file, manifests, namespace."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol


class Throwaway(Protocol):
    """What a throwaway environment leaves behind."""

    @property
    def file(self) -> Path: ...
    @property
    def manifests(self) -> Path: ...
    @property
    def namespace(self) -> str: ...


def remove_environments(admin: Any, made: Iterable[Throwaway]) -> None:
    """Delete each environment's file, its manifests copy and its namespace, whatever happened."""
    for env in made:
        env.file.unlink(missing_ok=True)
        shutil.rmtree(env.manifests, ignore_errors=True)
        with contextlib.suppress(Exception):  # a namespace never created needs no cleanup
            admin.core.delete_namespace(env.namespace, propagation_policy="Background")
