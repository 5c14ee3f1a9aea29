"""Helpers that make the broken inputs of the bad-input corpus: kubeconfigs, CAs, stub servers.

Everything here stays on this machine: kubeconfigs are copies of the local stack's with one
thing changed, certificates are made with ``openssl`` in a temporary folder, and the only
server is an HTTPS stub on a loopback port that answers every request with HTTP 500 (over
TLS with a certificate of its own, which the case trusts: deploybook never skips
verification, so only a verified connection can get as far as the 500).
"""

from __future__ import annotations

import copy
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


def admin_kubeconfig(env: dict[str, str]) -> dict[str, Any]:
    """The stack's admin context as a self-contained kubeconfig (credentials inlined)."""
    out = subprocess.run(
        ["kubectl", "config", "view", "--raw", "--minify", "--flatten", "--context", "deploybook-admin", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def write_kubeconfig(
    path: Path,
    base: dict[str, Any],
    *,
    server: str | None = None,
    user: dict[str, Any] | None = None,
    ca_data: str | None = None,
    insecure: bool = False,
) -> Path:
    """A copy of ``base`` with its server, user credentials or CA replaced."""
    data = copy.deepcopy(base)
    cluster = data["clusters"][0]["cluster"]
    if server:
        cluster["server"] = server
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    if insecure:
        cluster.pop("certificate-authority-data", None)
        cluster["insecure-skip-tls-verify"] = True
    if user is not None:
        data["users"][0]["user"] = user
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _self_signed(directory: Path, stem: str, subject_cn: str, *extra: str) -> tuple[Path, Path]:
    """``(certificate, key)`` of a self-signed certificate made by openssl, valid for a day."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", f"/CN={subject_cn}", *extra, "-keyout", str(key), "-out", str(cert)),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert, key


def make_ca(directory: Path, name: str = "unrelated-ca") -> Path:
    """A self-signed CA certificate that nothing on this machine was signed by."""
    return _self_signed(directory, name, name)[0]


class _Answer500(BaseHTTPRequestHandler):
    """Every request gets HTTP 500, as a registry with a broken storage backend answers."""

    def _fail(self) -> None:
        body = b'{"errors":[{"code":"UNKNOWN","message":"storage backend unavailable"}]}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _fail

    def log_message(self, format: str, *args: Any) -> None:
        return


def make_server_cert(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate and key for ``ip`` (its own CA): trust the certificate to reach it."""
    return _self_signed(directory, "stub", ip, "-addext", f"subjectAltName=IP:{ip}")


@contextmanager
def registry_answering_500(directory: Path) -> Iterator[tuple[str, Path]]:
    """``(127.0.0.1:PORT, CA file)`` of an HTTPS stub that answers HTTP 500 to everything."""
    cert, key = make_server_cert(directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer500)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
