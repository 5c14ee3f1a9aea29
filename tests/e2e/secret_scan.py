"""Where a secret value would show in a run's outputs: plain, base64 at any alignment, or
inside a base64 (and gzip/zlib) blob of a report, in the streams, the report folder's files
and the bundle's members. Used by test_secrets.py (a local release) and test_pipeline.py
(dev, test and prod with the git server's and both registries' credentials in play).
"""

from __future__ import annotations

import base64
import gzip
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

_BLOB = re.compile(rb"[A-Za-z0-9+/]{64,}={0,2}")


def base64_forms(value: bytes) -> list[bytes]:
    """The value as it shows inside base64 text, at each of the three byte alignments."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + value)
        start = -(-offset * 4 // 3)  # characters that mix in the bytes before the value
        forms.append(encoded[start:-4])  # the last group mixes in what follows
    return forms


def decoded_blobs(data: bytes) -> Iterator[bytes]:
    """Long base64 runs of ``data`` decoded, and gunzipped/inflated when they are compressed."""
    for match in _BLOB.finditer(data):
        blob = match.group(0)
        try:
            raw = base64.b64decode(blob + b"=" * (-len(blob) % 4))
        except ValueError:
            continue
        yield raw
        for inflate in (gzip.decompress, zlib.decompress):
            try:  # noqa: SIM105  (suppress() around a yield would swallow the consumer's errors)
                yield inflate(raw)
            except (OSError, zlib.error, EOFError):
                pass


def report_outputs(reports: Path) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of every file under ``reports`` and every member of a bundle there."""
    for path in sorted(p for p in reports.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path.relative_to(reports)), data
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as bundle:
                for member in bundle.getmembers():
                    extracted = bundle.extractfile(member) if member.isfile() else None
                    if extracted is not None:
                        yield f"{path.name}:{member.name}", extracted.read()


def leaks(outputs: Iterable[tuple[str, bytes]], values: Mapping[str, str]) -> tuple[list[str], int]:
    """Where a value shows (plain, base64, or inside a decoded blob), and how many outputs were searched."""
    found: list[str] = []
    searched = 0
    needles = {name: [value.encode(), *base64_forms(value.encode())] for name, value in values.items()}
    for where, data in outputs:
        searched += 1
        layers = [data, *decoded_blobs(data)] if where.endswith((".html", ".json", ".txt")) or ":" in where else [data]
        for name, forms in needles.items():
            if any(form in layer for layer in layers for form in forms):
                found.append(f"{name} in {where}")
    return found, searched
