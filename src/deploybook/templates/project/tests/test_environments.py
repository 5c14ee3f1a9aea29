"""This project's own test: every environment file loads (what a bare `pytest` runs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploybook.config.environment import known_environments, load_environment

ENVIRONMENTS = Path(__file__).resolve().parents[1] / "environments"
# What `eval "$(stack/env)"` exports, for a machine without the local stack.
STACK_VARIABLES = {
    "DEPLOYBOOK_REGISTRY": "localhost:5000",
    "DEPLOYBOOK_REGISTRY_USER": "deploybook",
    "DEPLOYBOOK_REGISTRY_PASSWORD_FILE": "/dev/null",
    "DEPLOYBOOK_REGISTRY_CA": "/dev/null",
}


@pytest.mark.parametrize("name", known_environments(ENVIRONMENTS))
def test_environment_loads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in STACK_VARIABLES.items():
        monkeypatch.setenv(variable, os.environ.get(variable, value))
    assert load_environment(name, ENVIRONMENTS).services
