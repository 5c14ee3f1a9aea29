"""The engine's clients: made once, on first use, from any thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from deploybook.config.environment import parse_environment
from deploybook.release.clients import Clients

ENV_TEXT = """\
cluster: {context: c, namespace: ns}
registry: {address: "localhost:5000", username: ci, password_env: TEST_REGISTRY_PASSWORD}
branch: {name: null}
manifests: {path: m}
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml}
"""


def test_the_registry_client_is_made_once_with_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", "s3cret-value")
    env = parse_environment(ENV_TEXT, file=Path("environments/x.yaml"), name="x", root=Path("/r"))
    clients = Clients(env)
    made: list[object] = []
    threads = [threading.Thread(target=lambda: made.append(clients.registry)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(made) == 8 and len({id(m) for m in made}) == 1  # one client, made by the first caller
    registry = made[0]
    assert registry.auth is not None and registry.auth.username == "ci"  # type: ignore[attr-defined]
    assert clients.connected("registry") and not clients.connected("kube") and not clients.connected("docker")
