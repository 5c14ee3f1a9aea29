"""Unit tests of deploybook.images.credentials and .registry: credentials, and the v2 client behind a fake transport."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from deploybook.errors import ConfigError, RegistryError
from deploybook.images import registry as registry_module
from deploybook.images.credentials import RegistryAuth, registry_host, resolve_credentials
from deploybook.images.registry import RegistryClient

DIGEST = "sha256:" + "ab" * 32
Handler = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]


class FakeTransport(BaseAdapter):
    """A requests adapter answering from a handler and recording what was sent."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []
        self.verify: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.verify.append(kwargs.get("verify"))
        status, headers, body = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module.time, "sleep", lambda s: None)


# --- RegistryAuth -------------------------------------------------------------------------


def test_password_hidden_from_repr_and_str() -> None:
    auth = RegistryAuth("deploybook", "s3cret-pass", "env REG_PW")
    assert "s3cret-pass" not in repr(auth)
    assert "s3cret-pass" not in str(auth)
    assert "env REG_PW" in str(auth)
    assert auth.docker_auth_config() == {"username": "deploybook", "password": "s3cret-pass"}


@pytest.mark.parametrize(
    ("address", "host"),
    [("localhost:5000", "localhost:5000"), ("https://x.azurecr.io/v1/", "x.azurecr.io"), (" r.io/a ", "r.io")],
)
def test_registry_host(address: str, host: str) -> None:
    assert registry_host(address) == host


# --- resolve_credentials ------------------------------------------------------------------


def test_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_PW", "pw1")
    auth = resolve_credentials("localhost:5000", username="u", password_env="REG_PW")
    assert auth == RegistryAuth("u", "pw1", "env REG_PW")


def test_missing_env_var_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REG_PW_MISSING", raising=False)
    with pytest.raises(ConfigError, match="REG_PW_MISSING") as info:
        resolve_credentials("localhost:5000", username="u", password_env="REG_PW_MISSING")
    assert "localhost:5000" in str(info.value)


def test_password_from_file_strips_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw2\n")
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    auth = resolve_credentials("localhost:5000", username="u", password_file=secret)
    assert auth is not None and auth.password == "pw2" and str(secret) in auth.source


def test_missing_password_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=str(missing)):
        resolve_credentials("localhost:5000", username="u", password_file=missing)


def test_empty_password_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        resolve_credentials("localhost:5000", username="u", password_file=empty)


def test_password_reference_needs_username(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_PW", "pw")
    with pytest.raises(ConfigError, match="username"):
        resolve_credentials("localhost:5000", password_env="REG_PW")


def _write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_docker_config_auths_entry(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"alice:pw3").decode()
    config = _write_config(tmp_path, {"auths": {"https://localhost:5000": {"auth": encoded}}})
    auth = resolve_credentials("localhost:5000", docker_config=config)
    assert auth is not None and (auth.username, auth.password) == ("alice", "pw3")
    assert "auths[https://localhost:5000]" in auth.source


def test_docker_config_default_location_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = base64.b64encode(b"bob:pw4").decode()
    _write_config(tmp_path, {"auths": {"r.example:443": {"auth": encoded}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    auth = resolve_credentials("r.example:443")
    assert auth is not None and auth.username == "bob"


def test_no_config_and_no_reference_means_anonymous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "absent"))
    assert resolve_credentials("localhost:5000") is None


def test_named_docker_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_credentials("localhost:5000", docker_config=tmp_path / "absent.json")


def test_other_registry_in_config_gives_none(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"alice:pw").decode()
    config = _write_config(tmp_path, {"auths": {"other:5000": {"auth": encoded}}})
    assert resolve_credentials("localhost:5000", docker_config=config) is None


def _install_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    """A real executable docker-credential-<name> on PATH; it logs the server it was asked for."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    helper = bindir / f"docker-credential-{name}"
    helper.write_text('#!/bin/sh\nread server\necho "$server" >> "$0.asked"\n' + script)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return helper


def test_cred_helper_for_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = json.dumps({"ServerURL": "x.azurecr.io", "Username": "00000000-0000", "Secret": "tok"})
    helper = _install_helper(tmp_path, monkeypatch, "acr", f"echo '{answer}'\n")
    config = _write_config(tmp_path, {"credHelpers": {"x.azurecr.io": "acr"}})
    auth = resolve_credentials("x.azurecr.io", docker_config=config)
    assert auth is not None and (auth.username, auth.password) == ("00000000-0000", "tok")
    assert Path(f"{helper}.asked").read_text().strip() == "x.azurecr.io"


def test_creds_store_not_found_falls_back_to_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_helper(tmp_path, monkeypatch, "desktop", "echo 'credentials not found in native keychain'; exit 1\n")
    encoded = base64.b64encode(b"carol:pw5").decode()
    config = _write_config(tmp_path, {"credsStore": "desktop", "auths": {"localhost:5000": {"auth": encoded}}})
    auth = resolve_credentials("localhost:5000", docker_config=config)
    assert auth is not None and auth.username == "carol"


def test_missing_helper_names_it_and_the_config(tmp_path: Path) -> None:
    config = _write_config(tmp_path, {"credHelpers": {"localhost:5000": "no-such-helper-xyz"}})
    with pytest.raises(ConfigError, match="docker-credential-no-such-helper-xyz") as info:
        resolve_credentials("localhost:5000", docker_config=config)
    assert str(config) in str(info.value)


def test_failing_helper_reports_its_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_helper(tmp_path, monkeypatch, "broken", "echo 'keychain locked' >&2; exit 3\n")
    config = _write_config(tmp_path, {"credsStore": "broken"})
    with pytest.raises(ConfigError, match="keychain locked"):
        resolve_credentials("localhost:5000", docker_config=config)


# --- RegistryClient -----------------------------------------------------------------------


def test_basic_challenge_then_digest() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") != _basic("u", "pw"):
            return 401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'}, b""
        return 200, {"Docker-Content-Digest": DIGEST}, b""

    transport = FakeTransport(handler)
    client = RegistryClient("localhost:5000", RegistryAuth("u", "pw"), ca_file="/ca.crt", transport=transport)
    assert client.manifest_digest("dx29/gateway", "v1") == DIGEST
    last = transport.sent[-1]
    assert (last.method, last.url) == ("HEAD", "https://localhost:5000/v2/dx29/gateway/manifests/v1")
    accept = last.headers["Accept"]
    assert "application/vnd.docker.distribution.manifest.v2+json" in accept
    assert "application/vnd.oci.image.manifest.v1+json" in accept
    assert transport.verify == ["/ca.crt", "/ca.crt"]


def test_bearer_token_flow_with_scope_and_cache() -> None:
    tokens_issued: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = request.url or ""
        if url.startswith("https://auth.example/token"):
            assert request.headers.get("Authorization") == _basic("u", "pw")
            assert "service=reg.example" in url and "scope=repository%3Adx29%2Fterms%3Apull" in url
            tokens_issued.append("t1")
            return 200, {}, json.dumps({"token": "t1"}).encode()
        if request.headers.get("Authorization") == "Bearer t1":
            return 200, {"Docker-Content-Digest": DIGEST}, b""
        challenge = 'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:dx29/terms:pull"'
        return 401, {"WWW-Authenticate": challenge}, b""

    client = RegistryClient("reg.example", RegistryAuth("u", "pw"), transport=FakeTransport(handler))
    assert client.manifest_digest("dx29/terms", "abc") == DIGEST
    assert client.manifest_digest("dx29/terms", "abc") == DIGEST
    assert tokens_issued == ["t1"]


def test_requests_to_one_registry_are_bounded_so_kept_open_connections_are_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "AT_ONCE", 3)
    lock, in_flight, most = threading.Lock(), [0], [0]

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        threading.Event().wait(0.05)  # time.sleep is patched away here (no_backoff)
        with lock:
            in_flight[0] -= 1
        return 200, {"Docker-Content-Digest": DIGEST}, b""

    client = RegistryClient("localhost:5000", None, transport=FakeTransport(handler))
    with ThreadPoolExecutor(10) as pool:
        digests = list(pool.map(lambda i: client.manifest_digest(f"dx29/s{i}", "t"), range(10)))
    assert digests == [DIGEST] * 10
    assert most[0] == 3


def test_bearer_access_token_field_accepted() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if (request.url or "").startswith("https://auth.example/"):
            return 200, {}, json.dumps({"access_token": "t2"}).encode()
        if request.headers.get("Authorization") == "Bearer t2":
            return 200, {}, b""
        return 401, {"WWW-Authenticate": 'Bearer realm="https://auth.example/oauth2/token",service="s"'}, b""

    RegistryClient("reg.example", RegistryAuth("u", "pw"), transport=FakeTransport(handler)).ping()


def test_bearer_realm_must_be_https() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return 401, {"WWW-Authenticate": 'Bearer realm="http://auth.example/token",service="s"'}, b""

    client = RegistryClient("reg.example", RegistryAuth("u", "pw"), transport=FakeTransport(handler))
    with pytest.raises(RegistryError, match="not HTTPS"):
        client.ping()


def test_token_service_refusing_names_registry_and_user() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if (request.url or "").startswith("https://auth.example/"):
            return 401, {}, b'{"details":"incorrect username or password"}'
        return 401, {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="s"'}, b""

    client = RegistryClient("reg.example", RegistryAuth("u", "wrong", "env PW"), transport=FakeTransport(handler))
    with pytest.raises(RegistryError) as info:
        client.ping()
    text = str(info.value)
    assert "https://reg.example" in text and "u (password from env PW)" in text and "wrong" not in text


def test_wrong_basic_password_is_one_clear_error() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""

    client = RegistryClient("localhost:5000", RegistryAuth("u", "bad"), transport=FakeTransport(handler))
    with pytest.raises(RegistryError, match="refused") as info:
        client.ping()
    assert info.value.source == "https://localhost:5000" and info.value.hint


def test_credentials_required_but_missing() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""

    client = RegistryClient("localhost:5000", None, transport=FakeTransport(handler))
    with pytest.raises(RegistryError, match="requires credentials"):
        client.ping()


def test_manifest_not_found() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return 404, {}, b""

    client = RegistryClient("localhost:5000", None, transport=FakeTransport(handler))
    with pytest.raises(RegistryError, match="dx29/none:v9 not found"):
        client.manifest_digest("dx29/none", "v9")


def test_digest_computed_when_header_missing() -> None:
    body = b'{"schemaVersion":2}'

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, body if request.method == "GET" else b""

    client = RegistryClient("localhost:5000", None, transport=FakeTransport(handler))
    import hashlib

    assert client.manifest_digest("a/b", "t") == "sha256:" + hashlib.sha256(body).hexdigest()


def test_server_errors_are_retried_then_succeed() -> None:
    answers = iter([503, 502, 200])

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return next(answers), {}, b""

    transport = FakeTransport(handler)
    RegistryClient("localhost:5000", None, transport=transport).ping()
    assert len(transport.sent) == 3


def test_connection_errors_bounded_then_clear_error() -> None:
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        calls.append(request.url or "")
        raise requests.exceptions.ConnectionError("Connection refused")

    client = RegistryClient("localhost:1", None, transport=FakeTransport(handler))
    with pytest.raises(RegistryError, match="unreachable after 3 tries") as info:
        client.ping()
    assert len(calls) == 3 and info.value.source == "https://localhost:1"


def test_tls_failure_points_at_the_ca() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        raise requests.exceptions.SSLError("certificate verify failed")

    client = RegistryClient("localhost:5000", None, transport=FakeTransport(handler))
    with pytest.raises(RegistryError, match="TLS verification") as info:
        client.ping()
    assert "CA" in (info.value.hint or "")


def test_system_trust_when_no_ca_file() -> None:
    transport = FakeTransport(lambda request: (200, {}, b""))
    RegistryClient("localhost:5000", None, transport=transport).ping()
    assert transport.verify == [os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True]


# --- the registry holds an image already; Basic credentials sent up front -------------------


def test_image_config_tells_which_image_a_tag_holds_and_basic_auth_is_sent_once_asked() -> None:
    config = "sha256:" + "cd" * 32
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": config}}).encode()
    expected = _basic("deploybook", "pw")

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") != expected:
            return 401, {"WWW-Authenticate": 'Basic realm="Registry"'}, b""
        if request.url and request.url.endswith("/manifests/gone"):
            return 404, {}, b""
        return 200, {"Docker-Content-Digest": DIGEST}, manifest

    transport = FakeTransport(handler)
    client = RegistryClient("localhost:5000", RegistryAuth("deploybook", "pw"), transport=transport)
    assert client.image_config("dx29/gateway", "abc123") == (DIGEST, config)
    assert client.image_config("dx29/gateway", "gone") is None
    assert client.manifest_digest("dx29/gateway", "abc123") == DIGEST
    # One challenge, then the credentials go with every request: 1 + 3 requests, not 2 x 3.
    assert len(transport.sent) == 4
