"""Unit tests of deploybook.environ: the environment read from threads while pytest changes it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from deploybook.environ import ca_bundle, proxies_for, snapshot
from deploybook.images.registry import RegistryClient
from tests.unit.test_registry import DIGEST, FakeTransport


class Vanishing(Mapping[str, str]):
    """An environment whose variable GONE is removed between listing the names and reading
    them, as pytest removes PYTEST_CURRENT_TEST from the main thread after a test."""

    def __init__(self) -> None:
        self.data = {"HOME": "/root", "GONE": "runbook/test_10_build.py::test_build (teardown)"}
        self.listed = 0

    def __iter__(self) -> Iterator[str]:
        self.listed += 1
        names = list(self.data)
        self.data.pop("GONE", None)
        return iter(names)

    def __getitem__(self, name: str) -> str:
        return self.data[name]

    def __len__(self) -> int:
        return len(self.data)


class Untouchable(Mapping[str, str]):
    """An environment that fails the test if anything reads it."""

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("os.environ iterated during a request")

    def __getitem__(self, name: str) -> str:
        raise AssertionError(f"os.environ[{name!r}] read during a request")

    def __len__(self) -> int:
        raise AssertionError("os.environ measured during a request")


def test_a_plain_copy_breaks_when_a_variable_goes_away_mid_copy() -> None:
    with pytest.raises(KeyError, match="GONE"):
        dict(Vanishing())


def test_snapshot_copies_again_when_a_variable_went_away(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = Vanishing()
    with monkeypatch.context() as patched:  # only around the call: pytest itself writes os.environ
        patched.setattr(os, "environ", environ)
        copied = snapshot()

    assert copied == {"HOME": "/root"}
    assert environ.listed == 2


def test_proxies_lower_case_names_win_and_empty_values_are_none() -> None:
    environ = {
        "HTTPS_PROXY": "http://upper.example:3128",
        "https_proxy": "http://lower.example:3128",
        "HTTP_PROXY": "",
        "PATH": "/usr/bin",
    }

    assert proxies_for("https://registry.example.com/v2/", environ) == {"https": "http://lower.example:3128"}


def test_no_proxy_covers_a_host_and_its_subdomains() -> None:
    environ = {"ALL_PROXY": "http://proxy.example:3128", "NO_PROXY": "localhost,internal.example"}

    assert proxies_for("https://localhost:5000/v2/", environ) == {}
    assert proxies_for("https://git.internal.example/app.git", environ) == {}
    assert proxies_for("https://myacr.azurecr.io/v2/", environ) == {"all": "http://proxy.example:3128"}


def test_no_proxy_entries_with_a_port_or_a_network() -> None:
    environ = {"https_proxy": "http://proxy.example:3128", "no_proxy": "registry.example:5000, 10.0.0.0/8"}
    proxy = {"https": "http://proxy.example:3128"}

    assert proxies_for("https://registry.example:5000/v2/", environ) == {}
    assert proxies_for("https://registry.example/v2/", environ) == proxy
    assert proxies_for("https://10.1.2.3:6443/api", environ) == {}
    assert proxies_for("https://192.168.1.2:6443/api", environ) == proxy


def test_ca_bundle_as_requests_finds_it() -> None:
    assert (
        ca_bundle({"REQUESTS_CA_BUNDLE": "/etc/team-ca.pem", "CURL_CA_BUNDLE": "/etc/curl.pem"}) == "/etc/team-ca.pem"
    )
    assert ca_bundle({"CURL_CA_BUNDLE": "/etc/curl.pem"}) == "/etc/curl.pem"
    assert ca_bundle({}) is True


def test_registry_calls_read_the_environment_taken_when_the_client_was_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxies: list[Any] = []

    class Recording(FakeTransport):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            proxies.append(kwargs.get("proxies"))
            return super().send(request, **kwargs)

    transport = Recording(lambda request: (200, {"Docker-Content-Digest": DIGEST}, b""))
    client = RegistryClient("registry.example.com", None, transport=transport)
    with monkeypatch.context() as patched:  # only around the call: pytest itself writes os.environ
        patched.setattr(os, "environ", Untouchable())
        digest = client.manifest_digest("team/api", "v1")

    assert digest == DIGEST
    assert proxies == [{"https": "http://proxy.example:3128"}]
