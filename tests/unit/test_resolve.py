"""Unit tests of deploybook.images.resolve: references taken apart, and images pinned to the
digest their registry serves, through RegistryClient behind the fake transport."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from test_registry import FakeTransport

from deploybook.errors import RegistryError
from deploybook.images import registry as registry_module
from deploybook.images.credentials import RegistryAuth
from deploybook.images.registry import RegistryClient
from deploybook.images.resolve import DOCKER_HUB, ImageResolver, client_factory, parse_image

DIGEST = "sha256:" + "cd" * 32
OTHER = "sha256:" + "ef" * 32
Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module.time, "sleep", lambda s: None)


@pytest.mark.parametrize(
    ("image", "registry", "named", "repository", "tag", "digest"),
    [
        ("redis:7", DOCKER_HUB, "docker.io", "library/redis", "7", None),
        ("redis", DOCKER_HUB, "docker.io", "library/redis", "latest", None),
        ("docker.io/bitnami/redis:7.2", DOCKER_HUB, "docker.io", "bitnami/redis", "7.2", None),
        ("index.docker.io/nginx:1", DOCKER_HUB, "docker.io", "library/nginx", "1", None),
        ("localhost:5000/vendor/proxy:1.2", "localhost:5000", "localhost:5000", "vendor/proxy", "1.2", None),
        ("localhost/x", "localhost", "localhost", "x", "latest", None),
        ("ghcr.io/org/app@" + DIGEST, "ghcr.io", "ghcr.io", "org/app", None, DIGEST),
        ("quay.io/a/b:3@" + DIGEST, "quay.io", "quay.io", "a/b", "3", DIGEST),
    ],
)
def test_parse_image_as_the_docker_cli_does(
    image: str, registry: str, named: str, repository: str, tag: str | None, digest: str | None
) -> None:
    source = parse_image(image)
    assert (source.registry, source.named, source.repository, source.tag, source.digest) == (
        registry,
        named,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize("image", ["Redis:7", "redis@sha256:short", "a b", "redis:"])
def test_a_malformed_reference_is_refused_with_the_form_expected(image: str) -> None:
    with pytest.raises(RegistryError, match="malformed") as info:
        parse_image(image)
    assert info.value.hint and "[REGISTRY/]PATH[:TAG]" in info.value.hint


def _hub_handler(seen: list[requests.PreparedRequest]) -> Any:
    """Docker Hub as it answers anonymous pulls: a Bearer challenge, a token for the scope."""

    def handler(request: requests.PreparedRequest) -> Answer:
        seen.append(request)
        url = request.url or ""
        if url.startswith("https://auth.docker.io/token"):
            assert "Authorization" not in request.headers  # anonymous: no credentials sent
            assert "scope=repository%3Alibrary%2Fredis%3Apull" in url
            return 200, {}, json.dumps({"token": "anon"}).encode()
        if request.headers.get("Authorization") != "Bearer anon":
            challenge = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
            return 401, {"WWW-Authenticate": challenge}, b""
        assert url == f"https://{DOCKER_HUB}/v2/library/redis/manifests/7"
        return 200, {"Docker-Content-Digest": DIGEST}, b""

    return handler


def test_a_docker_hub_short_name_is_resolved_anonymously_with_the_bearer_flow() -> None:
    seen: list[requests.PreparedRequest] = []
    transport = FakeTransport(_hub_handler(seen))
    resolver = ImageResolver(lambda host: RegistryClient(host, None, transport=transport))
    resolved = resolver.resolve("redis:7")
    assert resolved.pinned == f"docker.io/library/redis@{DIGEST}"
    assert (resolved.reference, resolved.registry, resolved.how) == (
        "docker.io/library/redis:7",
        DOCKER_HUB,
        "tag resolved",
    )
    accept = seen[-1].headers["Accept"]
    for media_type in ("oci.image.index.v1", "manifest.list.v2", "manifest.v2", "oci.image.manifest.v1"):
        assert media_type in accept
    assert transport.verify and all(v not in (False, None) for v in transport.verify)  # TLS always verified
    asked = len(seen)
    assert resolver.resolve("redis:7") == resolved and len(seen) == asked  # asked once per reference


def test_a_private_image_refused_anonymously_says_to_log_in() -> None:
    def handler(request: requests.PreparedRequest) -> Answer:
        if (request.url or "").startswith("https://auth.example/"):
            return 401, {}, b""
        return 401, {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="s"'}, b""

    resolver = ImageResolver(lambda host: RegistryClient(host, None, transport=FakeTransport(handler)))
    with pytest.raises(RegistryError, match="anonymous token") as info:
        resolver.resolve("reg.example/private/app:1")
    assert info.value.hint and "docker login" in info.value.hint


def _basic_registry(user: str, password: str, digests: dict[str, str]) -> Any:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def handler(request: requests.PreparedRequest) -> Answer:
        if request.headers.get("Authorization") != expected:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        reference = (request.url or "").rsplit("/", 1)[-1]
        if reference not in digests:
            return 404, {}, b""
        return 200, {"Docker-Content-Digest": digests[reference]}, b""

    return handler


def test_the_release_registry_gets_its_credentials_and_ca_other_hosts_the_docker_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"vendoruser:vendorpw").decode()
    config.write_text(json.dumps({"auths": {"vendor.example": {"auth": auth}}}))
    made: list[tuple[str, RegistryAuth | None, str | None]] = []
    transports = {
        "localhost:5000": FakeTransport(_basic_registry("u", "pw", {"1.0": DIGEST})),
        "vendor.example": FakeTransport(_basic_registry("vendoruser", "vendorpw", {"2": OTHER})),
    }

    def make(host: str, auth: RegistryAuth | None, ca: str | None) -> RegistryClient:
        made.append((host, auth, ca))
        return RegistryClient(host, auth, ca_file=ca, transport=transports[host])

    client_for = client_factory(
        make,
        release_registry="localhost:5000",
        release_auth=RegistryAuth("u", "pw", "file pw"),
        release_ca="/ca.crt",
        docker_config=str(config),
    )
    resolver = ImageResolver(client_for)
    assert resolver.resolve("localhost:5000/vendor/bb:1.0").pinned == f"localhost:5000/vendor/bb@{DIGEST}"
    assert resolver.resolve("vendor.example/proxy:2").pinned == f"vendor.example/proxy@{OTHER}"
    assert [(h, a.username if a else None, ca) for h, a, ca in made] == [
        ("localhost:5000", "u", "/ca.crt"),
        ("vendor.example", "vendoruser", None),
    ]
    assert transports["localhost:5000"].verify[-1] == "/ca.crt"


def test_a_written_digest_is_kept_and_confirmed_by_the_registry() -> None:
    handler = _basic_registry("u", "pw", {DIGEST: DIGEST})
    resolver = ImageResolver(
        lambda host: RegistryClient(host, RegistryAuth("u", "pw"), transport=FakeTransport(handler))
    )
    resolved = resolver.resolve(f"localhost:5000/vendor/bb:1.0@{DIGEST}")
    assert (resolved.pinned, resolved.digest, resolved.how) == (
        f"localhost:5000/vendor/bb@{DIGEST}",
        DIGEST,
        "digest confirmed",
    )


def test_a_tag_the_registry_does_not_have_is_an_error_naming_it_and_kept() -> None:
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> Answer:
        calls.append(request.url or "")
        return 404, {}, b""

    resolver = ImageResolver(lambda host: RegistryClient(host, None, transport=FakeTransport(handler)))
    for _ in range(2):
        with pytest.raises(RegistryError, match="vendor/bb:nope not found"):
            resolver.resolve("localhost:5000/vendor/bb:nope")
    assert len(calls) == 1  # the answer (an error too) is kept for the run


def test_the_pinned_form_round_trips_through_the_record_form() -> None:
    handler = _basic_registry("u", "pw", {"7": DIGEST})
    resolver = ImageResolver(
        lambda host: RegistryClient(host, RegistryAuth("u", "pw"), transport=FakeTransport(handler))
    )
    entry = resolver.resolve("localhost:5000/cache:7").to_dict()
    assert entry == {
        "written": "localhost:5000/cache:7",
        "reference": "localhost:5000/cache:7",
        "registry": "localhost:5000",
        "digest": DIGEST,
        "pinned": f"localhost:5000/cache@{DIGEST}",
        "how": "tag resolved",
    }
