"""Finding the cluster the way kubectl does; TLS always verified.

The transport seam here is the network: a tiny HTTPS server on loopback answers
``/version`` and ``/apis`` with certificates made by openssl for the test.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploybook.cluster.connect import connect
from deploybook.errors import ClusterError


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={ca}",
                "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.crt"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "1", "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt"))  # fmt: skip
    return Pki(ca=d / "ca.crt", cert=d / "server.crt", key=d / "server.key", other_ca=d / "other-ca.crt")


class FakeApiServer(BaseHTTPRequestHandler):
    """Answers what connect() asks: the version and the (empty) API group list."""

    status = 200

    def do_GET(self) -> None:
        bodies: dict[str, Any] = {
            "/version": {
                "major": "1",
                "minor": "34",
                "gitVersion": "v1.34.4",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24",
                "compiler": "gc",
                "platform": "linux/amd64",
            },
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
        }
        path = self.path.split("?")[0].rstrip("/")
        status = self.server.status if path == "/version" else 200  # type: ignore[attr-defined]
        body = json.dumps(bodies[path] if status == 200 else {"kind": "Status", "code": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_server(pki: Pki) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    server.status = 200  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def server_url(server: ThreadingHTTPServer) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(path: Path, server: str, ca: Path | None, current: str | None = "admin", **cluster: Any) -> Path:
    cluster_entry: dict[str, Any] = {"server": server, **cluster}
    if ca is not None:
        cluster_entry["certificate-authority"] = str(ca)
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster_entry}],
        "users": [{"name": "admin", "user": {"token": "not-a-real-token"}}],
        "contexts": [
            {"name": "admin", "context": {"cluster": "local", "user": "admin"}},
            {"name": "view", "context": {"cluster": "local", "user": "admin"}},
        ],
    }
    if current:
        data["current-context"] = current
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def no_ambient_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The developer's own KUBECONFIG, home and pod must not leak into these tests."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_connects_and_reports_server_context_and_version(
    api_server: ThreadingHTTPServer, pki: Pki, tmp_path: Path
) -> None:
    config = kubeconfig(tmp_path / "config", server_url(api_server), pki.ca)
    kube = connect(kubeconfig=config)
    assert kube.server == server_url(api_server)
    assert kube.context == "admin"
    assert kube.kubeconfig == str(config)
    assert kube.server_version() == "v1.34.4"


def test_kubeconfig_env_joined_files_and_context(
    api_server: ThreadingHTTPServer, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "view"}))
    config = kubeconfig(tmp_path / "config", server_url(api_server), pki.ca)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{empty}:{config}")
    assert connect().context == "view"  # the first file setting current-context wins, as in kubectl
    assert connect(context="admin").context == "admin"


def test_home_kubeconfig_is_the_default(api_server: ThreadingHTTPServer, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    kubeconfig(tmp_path / "home" / ".kube" / "config", server_url(api_server), pki.ca)
    assert connect().server == server_url(api_server)


def test_server_certificate_from_another_ca_is_refused(
    api_server: ThreadingHTTPServer, pki: Pki, tmp_path: Path
) -> None:
    config = kubeconfig(tmp_path / "config", server_url(api_server), pki.other_ca)
    with pytest.raises(ClusterError) as info:
        connect(kubeconfig=config)
    assert server_url(api_server) in str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value).lower()


def test_rejected_credentials(api_server: ThreadingHTTPServer, pki: Pki, tmp_path: Path) -> None:
    api_server.status = 401  # type: ignore[attr-defined]
    config = kubeconfig(tmp_path / "config", server_url(api_server), pki.ca)
    with pytest.raises(ClusterError, match=r"refused the credentials \(HTTP 401\).*context admin"):
        connect(kubeconfig=config)


def test_unreachable_cluster_names_server_context_and_kubeconfig(pki: Pki, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig(tmp_path / "config", server, pki.ca)
    with pytest.raises(ClusterError) as info:
        connect(kubeconfig=config, context="view")
    message = str(info.value)
    assert "unreachable" in message
    assert f"server {server}" in message
    assert "context view" in message
    assert f"kubeconfig {config}" in message
    assert "stack/status" in message


def test_unknown_context_lists_the_known_ones(pki: Pki, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", "https://127.0.0.1:1", pki.ca)
    with pytest.raises(ClusterError) as info:
        connect(kubeconfig=config, context="prod")
    assert "context 'prod' not found" in str(info.value)
    assert "admin, view" in str(info.value)
    assert str(config) in str(info.value)


def test_no_current_context_and_none_given(pki: Pki, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", "https://127.0.0.1:1", pki.ca, current=None)
    with pytest.raises(ClusterError, match="no current-context"):
        connect(kubeconfig=config)


def test_missing_explicit_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not exist"):
        connect(kubeconfig=tmp_path / "nope")


def test_nothing_to_go_on(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"no kubeconfig found.*not running in a pod"):
        connect()


@pytest.mark.parametrize(
    ("server", "cluster", "match"),
    [
        ("https://127.0.0.1:1", {"insecure-skip-tls-verify": True}, "refusing to skip TLS verification"),
        ("http://127.0.0.1:1", {}, "refusing a cluster without TLS"),
    ],
)
def test_unverified_tls_is_refused(pki: Pki, tmp_path: Path, server: str, cluster: dict[str, Any], match: str) -> None:
    config = kubeconfig(tmp_path / "config", server, None, **cluster)
    with pytest.raises(ClusterError, match=match):
        connect(kubeconfig=config)


def test_in_cluster_without_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterError, match="in-cluster configuration unusable"):
        connect(in_cluster=True)


def test_in_cluster_with_a_context_is_a_contradiction() -> None:
    with pytest.raises(ClusterError, match="in-cluster configuration has no contexts"):
        connect(context="admin", in_cluster=True)


def test_malformed_kubeconfig_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("clusters: [unclosed\n")
    with pytest.raises(ClusterError) as info:
        connect(kubeconfig=config)
    assert str(config) in str(info.value)
