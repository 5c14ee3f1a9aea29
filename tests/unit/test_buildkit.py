"""Unit tests of deploybook.images.buildkit: the protobuf reader and the plain progress lines.

The messages are written here with the protobuf wire format's rules (a key of field number
and wire type, varints, length-delimited bytes), in the shape of moby/buildkit's
``StatusResponse``; the integration tests read the engine's own.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from deploybook.images.buildkit import PlainProgress, StepFailed, fields


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def timestamp(seconds: float) -> bytes:
    whole = int(seconds)
    return field(1, whole) + field(2, round((seconds - whole) * 1e9))


def vertex(
    digest: str, name: str = "", *, started: float = 0, completed: float = 0, cached: bool = False, error: str = ""
) -> bytes:
    body = field(1, digest) + field(2, "sha256:input") + field(3, name)
    if cached:
        body += field(4, 1)
    if started:
        body += field(5, timestamp(started))
    if completed:
        body += field(6, timestamp(completed))
    if error:
        body += field(7, error)
    return field(1, body)


def log(digest: str, text: str) -> bytes:
    return field(3, field(1, digest) + field(2, timestamp(1.0)) + field(3, 1) + field(4, text))


def trace(*parts: bytes) -> dict[str, Any]:
    return {"id": "moby.buildkit.trace", "aux": base64.b64encode(b"".join(parts)).decode()}


def test_fields_reads_varints_bytes_and_fixed_widths() -> None:
    data = field(1, 300) + field(2, "hé") + varint(3 << 3 | 1) + b"12345678" + varint(4 << 3 | 5) + b"abcd"
    assert list(fields(data)) == [(1, 300), (2, "hé".encode()), (3, b"12345678"), (4, b"abcd")]


@pytest.mark.parametrize(
    "data",
    [varint(1 << 3) + b"\xff", field(2, "abc")[:-1], varint(1 << 3 | 3)],
    ids=["varint-cut", "bytes-cut", "group-wire-type"],
)
def test_fields_rejects_a_broken_message(data: bytes) -> None:
    with pytest.raises(ValueError, match="protobuf"):
        list(fields(data))


def test_steps_are_numbered_as_they_appear_with_their_end() -> None:
    seen: list[str] = []
    progress = PlainProgress(seen.append)
    progress.read(trace(vertex("sha256:a", "[internal] load remote build context", started=10.0)))
    progress.read(trace(vertex("sha256:a", "[internal] load remote build context", started=10.0, completed=10.04)))
    progress.read(trace(vertex("sha256:b", "[1/2] COPY rootfs/ /", started=11.0, completed=11.0, cached=True)))
    progress.read(trace(vertex("sha256:c", "[2/2] RUN make", started=12.0), log("sha256:c", "compiling\nlinked\n")))
    progress.read(trace(vertex("sha256:c", "[2/2] RUN make", started=12.0, completed=13.25)))
    progress.read(trace(vertex("sha256:c", "[2/2] RUN make", started=12.0, completed=13.25)))  # sent again
    progress.read({"id": "moby.image.id", "aux": {"ID": "sha256:" + "12" * 32}})
    assert seen == [
        "#1 [internal] load remote build context",
        "#1 DONE 0.0s",
        "#2 [1/2] COPY rootfs/ /",
        "#2 CACHED",
        "#3 [2/2] RUN make",
        "#3 compiling",
        "#3 linked",
        "#3 DONE 1.2s",
    ]


def test_a_failed_step_and_the_engines_error() -> None:
    seen: list[str] = []
    progress = PlainProgress(seen.append)
    progress.read(trace(vertex("sha256:a", "[1/1] COPY missing /", started=5.0, error="not found")))
    with pytest.raises(StepFailed, match="failed to compute cache key"):
        progress.read({"errorDetail": {"message": "failed to compute cache key: /missing: not found"}, "error": "x"})
    assert seen == [
        "#1 [1/1] COPY missing /",
        "#1 ERROR: not found",
        "ERROR: failed to compute cache key: /missing: not found",
    ]


@pytest.mark.parametrize("aux", ["not base64!", base64.b64encode(varint(1 << 3 | 2) + varint(50)).decode()])
def test_an_unreadable_progress_message_is_said_and_the_build_goes_on(aux: str) -> None:
    seen: list[str] = []
    PlainProgress(seen.append).read({"id": "moby.buildkit.trace", "aux": aux})
    assert len(seen) == 1 and seen[0].startswith("(a progress message of the engine could not be read")
