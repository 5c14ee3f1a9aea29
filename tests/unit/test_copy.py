"""An image copied by digest between two registries, each behind a fake transport.

The fake is a small in-memory v2 registry (blobs, manifests by digest, uploads, Basic auth);
the real one is tests/e2e/test_pipeline.py's promotion from the stack's registry to prod's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from deploybook.errors import RegistryError
from deploybook.images import registry as registry_module
from deploybook.images.copy import copy_image
from deploybook.images.credentials import RegistryAuth
from deploybook.images.registry import RegistryClient

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry(BaseAdapter):
    """What the copy needs of a distribution registry, in memory, with Basic auth."""

    def __init__(self, host: str, password: str) -> None:
        super().__init__()
        self.host, self.password = host, password
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.tags: dict[str, str] = {}
        self.calls: list[str] = []
        self.uploads = 0
        self.failing_puts = 0  # blob upload PUTs to answer 503 after reading their bytes

    def image(self, layers: list[bytes]) -> str:
        """Store an image (config + layers) and return its manifest digest."""
        config = b'{"architecture":"amd64"}'
        for blob in (config, *layers):
            self.blobs[digest_of(blob)] = blob
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"digest": digest_of(config), "size": len(config)},
                "layers": [{"digest": digest_of(layer), "size": len(layer)} for layer in layers],
            },
            separators=(",", ":"),
        ).encode()
        self.manifests[digest_of(body)] = (body, MANIFEST_TYPE)
        return digest_of(body)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append(f"{request.method} {request.path_url}")
        expected = "Basic " + base64.b64encode(f"deploybook:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._answer(request, 401, {"WWW-Authenticate": 'Basic realm="registry"'})
        status, headers, body = self._handle(request)
        return self._answer(request, status, headers, body)

    def _handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        path, method = request.path_url, request.method
        if found := re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]+)", path):
            blob = self.blobs.get(found.group(2))
            return (200, {}, b"" if method == "HEAD" else blob) if blob is not None else (404, {}, b"")
        if re.fullmatch(r"/v2/(.+)/blobs/uploads/", path) and method == "POST":
            self.uploads += 1
            return 202, {"Location": f"https://{self.host}/v2/x/blobs/uploads/u{self.uploads}?_state=s"}, b""
        if (
            found := re.fullmatch(r"/v2/x/blobs/uploads/u\d+\?_state=s&digest=(sha256:[0-9a-f]+)", path)
        ) and method == "PUT":
            body = request.body.read() if hasattr(request.body, "read") else request.body  # type: ignore[union-attr]
            if self.failing_puts:
                self.failing_puts -= 1
                return 503, {}, b"upstream unavailable"
            assert isinstance(body, bytes) and digest_of(body) == found.group(1), (
                "the upload's bytes hash to its digest"
            )
            self.blobs[found.group(1)] = body
            return 201, {}, b""
        if found := re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path):
            return self._manifest(request, found.group(2))
        return 404, {}, b""

    def _manifest(self, request: requests.PreparedRequest, digest: str) -> tuple[int, dict[str, str], bytes]:
        if request.method == "PUT":
            body = request.body if isinstance(request.body, bytes) else b""
            refs = json.loads(body)
            missing = [d["digest"] for d in [refs["config"], *refs["layers"]] if d["digest"] not in self.blobs]
            if missing:
                return 400, {}, b"MANIFEST_BLOB_UNKNOWN"
            self.manifests[digest_of(body)] = (body, request.headers["Content-Type"])
            if not digest.startswith("sha256:"):
                self.tags[digest] = digest_of(body)
            return 201, {"Docker-Content-Digest": digest_of(body)}, b""
        digest = self.tags.get(digest, digest)
        if digest not in self.manifests:
            return 404, {}, b""
        body, media_type = self.manifests[digest]
        return 200, {"Content-Type": media_type, "Docker-Content-Digest": digest}, body

    def _answer(self, request: Any, status: int, headers: dict[str, str], body: bytes = b"") -> requests.Response:
        response = requests.Response()
        response.status_code, response._content, response._content_consumed = status, body, True
        response.headers.update(headers)
        response.request, response.url = request, request.url or ""
        return response

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module.time, "sleep", lambda s: None)


def client(fake: FakeRegistry) -> RegistryClient:
    return RegistryClient(fake.host, RegistryAuth("deploybook", fake.password), transport=fake)


def test_an_image_is_copied_blob_by_blob_and_put_by_its_digest() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    digest = test.image([b"layer-one" * 1000, b"layer-two"])
    result = copy_image(client(test), "dx29/gateway", client(prod), "dx29/gateway", digest, tags=("871661d9cba0",))
    assert prod.manifests[digest] == test.manifests[digest]  # the very bytes: the same digest
    assert prod.tags == {"871661d9cba0": digest}  # the release's tag names it in prod's registry too
    assert set(prod.blobs) == set(test.blobs) and len(result.copied) == 3 and result.manifests == [digest]
    assert result.bytes_sent == sum(len(b) for b in test.blobs.values())
    assert "3 blob(s) copied" in result.summary()


def test_blobs_the_target_has_are_not_sent_again() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    digest = test.image([b"shared", b"new"])
    prod.blobs[digest_of(b"shared")] = b"shared"
    result = copy_image(client(test), "dx29/terms", client(prod), "dx29/terms", digest)
    assert result.present == [digest_of(b"shared")] and len(result.copied) == 2
    assert not any(c.startswith("GET /v2/dx29/terms/blobs/" + digest_of(b"shared")) for c in test.calls)


def test_an_upload_answered_503_is_sent_again_whole() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    layer = b"layer" * 5000
    digest = test.image([layer])
    prod.failing_puts = 2  # the first try reads the bytes and fails; so does the second
    copy_image(client(test), "dx29/gateway", client(prod), "dx29/gateway", digest)
    assert prod.failing_puts == 0 and prod.blobs[digest_of(layer)] == layer
    assert prod.manifests[digest] == test.manifests[digest]


def test_a_source_serving_other_bytes_is_refused_before_anything_is_put() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    digest = test.image([b"honest"])
    test.blobs[digest_of(b"honest")] = b"tampered"
    with pytest.raises(RegistryError, match="hashes to"):
        copy_image(client(test), "dx29/worker", client(prod), "dx29/worker", digest)
    assert digest not in prod.manifests and digest_of(b"honest") not in prod.blobs


def test_a_digest_the_source_does_not_hold_is_named() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    with pytest.raises(RegistryError, match="is not in the registry") as info:
        copy_image(client(test), "dx29/worker", client(prod), "dx29/worker", "sha256:" + "0" * 64)
    assert info.value.source == "https://test:5000"


def test_refused_credentials_at_the_target_say_so_without_the_password() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    digest = test.image([b"x"])
    wrong = RegistryClient(prod.host, RegistryAuth("deploybook", "pw-test"), transport=prod)
    with pytest.raises(RegistryError, match="refused") as info:
        copy_image(client(test), "dx29/worker", wrong, "dx29/worker", digest)
    assert "pw-test" not in str(info.value)


def test_an_upload_sent_elsewhere_is_refused() -> None:
    test, prod = FakeRegistry("test:5000", "pw-test"), FakeRegistry("prod:5001", "pw-prod")
    digest = test.image([b"x"])
    prod.host = "elsewhere:443"  # its Location headers now name another host
    with pytest.raises(RegistryError, match="not to itself"):
        copy_image(
            client(test),
            "dx29/worker",
            RegistryClient("prod:5001", RegistryAuth("deploybook", "pw-prod"), transport=prod),
            "dx29/worker",
            digest,
        )
