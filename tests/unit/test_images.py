"""Unit tests of deploybook.images.build with a fake engine API (the docker SDK's low-level seam)."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from deploybook.errors import BuildError, PushError, RegistryError
from deploybook.images import push as images_module
from deploybook.images.build import build_image, oci_labels
from deploybook.images.build_inputs import BUILD_INPUT_LABEL, base_images
from deploybook.images.credentials import RegistryAuth
from deploybook.images.push import push_image
from deploybook.images.references import split_repository

DIGEST = "sha256:" + "cd" * 32
OTHER = "sha256:" + "ef" * 32
IMAGE_ID = "sha256:" + "12" * 32


class FakeAPI:
    """Stands in for ``docker.APIClient``: replays scripted streams, records every call.

    Its API version is older than BuildKit's build with the context in the request body, so
    builds go to the classic builder; `BuildKitAPI` is an engine that has it.
    """

    api_version = "1.38"

    def __init__(self, build: list[Any] | None = None, pushes: list[list[Any] | Exception] | None = None) -> None:
        self.build_stream = build or []
        self.pushes = list(pushes or [])
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.held: dict[str, tuple[str, str]] = {}  # tag -> (image id, its build-input label)
        self.sent: list[bytes] = []  # the build contexts sent

    def build(self, **kwargs: Any) -> Iterator[Mapping[str, Any]]:
        self.calls.append(("build", kwargs))
        self.sent.append(kwargs["fileobj"].read())
        for item in self.build_stream:
            if isinstance(item, Exception):
                raise item
            yield item

    def inspect_image(self, ref: str) -> dict[str, Any]:
        self.calls.append(("inspect_image", {"ref": ref}))
        if ref in self.held:
            image_id, inputs = self.held[ref]
            return {"Id": image_id, "Config": {"Labels": {BUILD_INPUT_LABEL: inputs}}}
        return {"Id": IMAGE_ID, "Config": {"Labels": None}}

    def called(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]

    def sent_files(self, build: int = 0) -> dict[str, str]:
        """Name -> text of every file in the context sent with a build."""
        with tarfile.open(fileobj=io.BytesIO(self.sent[build])) as sent:
            return {m.name: sent.extractfile(m).read().decode() for m in sent if m.isfile()}  # type: ignore[union-attr]

    def sent_labels(self, build: int = 0) -> dict[str, str]:
        """The labels of a build: beside it, or in the last line of the Dockerfile it sent."""
        kwargs = self.called("build")[build]
        if kwargs["labels"] is not None:
            return dict(kwargs["labels"])
        last = self.sent_files(build)[kwargs["dockerfile"]].splitlines()[-1]
        assert last.startswith("LABEL "), last
        words = re.findall(r'"((?:[^"\\]|\\.)*)"="((?:[^"\\]|\\.)*)"', last)
        return {_unquoted(key): _unquoted(value) for key, value in words}

    def tag(self, source: str, repository: str, tag: str) -> bool:
        self.calls.append(("tag", {"source": source, "repository": repository, "tag": tag}))
        return True

    def push(self, repository: str, **kwargs: Any) -> Iterator[Mapping[str, Any]]:
        self.calls.append(("push", {"repository": repository, **kwargs}))
        script = self.pushes.pop(0)
        if isinstance(script, Exception):
            raise script
        return iter(script)


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api


def _unquoted(word: str) -> str:
    """A double-quoted Dockerfile word's text: each backslash keeps the character after it."""
    return re.sub(r"\\(.)", r"\1", word)


class FakeRegistry:
    """The part of RegistryClient that push_image uses."""

    base_url = "https://localhost:5000"

    def __init__(self, answer: str | Exception, ping: Exception | None = None) -> None:
        self.answer = answer
        self.ping_answer = ping
        self.asked: list[tuple[str, str]] = []
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.ping_answer is not None:
            raise self.ping_answer

    def manifest_digest(self, repository: str, reference: str) -> str:
        self.asked.append((repository, reference))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_module.time, "sleep", lambda s: None)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


LABELS = oci_labels(
    revision="abc123", source="https://git.example/dx29", version="1.2.0", created="2026-01-02T03:04:05Z"
)
GOOD_PUSH = [
    {"status": "The push refers to repository [localhost:5000/dx29/gateway]"},
    {"status": "Pushing", "progressDetail": {"current": 1, "total": 2}, "id": "aaa"},
    {"status": "Pushed", "progressDetail": {}, "id": "aaa"},
    {"status": f"v1: digest: {DIGEST} size: 735"},
    {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": DIGEST, "Size": 735}},
]


# --- oci_labels ---------------------------------------------------------------------------


def test_oci_labels_keys_and_values() -> None:
    assert LABELS == {
        "org.opencontainers.image.revision": "abc123",
        "org.opencontainers.image.source": "https://git.example/dx29",
        "org.opencontainers.image.version": "1.2.0",
        "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
    }


def test_oci_created_from_datetime_is_utc() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    labels = oci_labels(revision="r", source="s", version="v", created=local)
    assert labels["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"


def test_oci_created_defaults_to_now() -> None:
    created = oci_labels(revision="r", source="s", version="v")["org.opencontainers.image.created"]
    parsed = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


# --- build_image --------------------------------------------------------------------------


def test_build_streams_lines_and_passes_labels_and_args(context: Path) -> None:
    api = FakeAPI(
        build=[
            {"stream": "Step 1/1 : FROM scratch\n"},
            {"stream": "\n"},
            {"aux": {"ID": IMAGE_ID}},
            {"stream": "Successfully tagged dx29/gateway:v1\n"},
        ]
    )
    seen: list[str] = []
    result = build_image(
        FakeClient(api),
        context=context,
        dockerfile="Dockerfile",
        tag="dx29/gateway:v1",
        labels=LABELS,
        on_line=seen.append,
    )
    assert seen == ["Step 1/1 : FROM scratch", "Successfully tagged dx29/gateway:v1"]
    assert result.log == "\n".join(seen) and result.image_id == IMAGE_ID and result.tag == "dx29/gateway:v1"
    (kwargs,) = api.called("build")
    sent_labels = api.sent_labels()
    inputs = sent_labels.pop(BUILD_INPUT_LABEL)
    assert inputs.startswith("sha256:") and result.labels[BUILD_INPUT_LABEL] == inputs
    assert sent_labels == LABELS and kwargs["rm"] is True and kwargs["decode"] is True
    assert kwargs["buildargs"] == {"VERSION": "1.2.0", "REVISION": "abc123"}
    assert kwargs["custom_context"] is True and kwargs["labels"] is None
    # The labels are one instruction at the end of a copy of the Dockerfile the engine ignores.
    files = api.sent_files()
    assert files["Dockerfile"] == "FROM scratch\n"
    copy = files[kwargs["dockerfile"]]
    assert copy.startswith("FROM scratch\nLABEL ") and copy.count("\n") == 2
    assert files[".dockerignore"].splitlines() == [".dockerignore", kwargs["dockerfile"]]
    assert sorted(files) == sorted(["Dockerfile", ".dockerignore", kwargs["dockerfile"]])


def test_build_args_can_be_added_and_override(context: Path) -> None:
    api = FakeAPI()
    build_image(
        FakeClient(api),
        context=context,
        dockerfile="Dockerfile",
        tag="t",
        labels=LABELS,
        build_args={"VERSION": "9", "EXTRA": "x"},
    )
    assert api.called("build")[0]["buildargs"] == {"VERSION": "9", "REVISION": "abc123", "EXTRA": "x"}


def test_absolute_dockerfile_inside_context_is_made_relative(context: Path) -> None:
    (context / "sub").mkdir()
    (context / "sub" / "Dockerfile.prod").write_text("FROM scratch\n# prod\n")
    api = FakeAPI()
    build_image(FakeClient(api), context=context, dockerfile=context / "sub" / "Dockerfile.prod", tag="t", labels={})
    # Inside the context, so its inputs are known (a Dockerfile from outside has none).
    assert BUILD_INPUT_LABEL in api.sent_labels()
    files = api.sent_files()
    assert files["sub/Dockerfile.prod"] == "FROM scratch\n# prod\n"
    assert files[api.called("build")[0]["dockerfile"]].startswith("FROM scratch\n# prod\nLABEL ")


def test_labels_are_quoted_for_the_dockerfile_parser(context: Path) -> None:
    api = FakeAPI()
    odd = {"team.note": 'say "hi" to $USER \\ there', "empty": ""}
    build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels=odd)
    last = api.sent_files()[api.called("build")[0]["dockerfile"]].splitlines()[-1]
    assert '"team.note"="say \\"hi\\" to \\$USER \\\\ there"' in last and '"empty"=""' in last
    assert {k: v for k, v in api.sent_labels().items() if k != BUILD_INPUT_LABEL} == odd


@pytest.mark.parametrize(
    ("dockerfile", "ignore", "labels"),
    [
        ("# escape=`\nFROM scratch\n", None, LABELS),  # another escape character
        ("FROM scratch\nCOPY a \\\n", None, LABELS),  # ends inside a continuation
        ("FROM scratch\n", "notes.txt\n", LABELS),  # a .dockerignore a COPY . would carry
        ("FROM scratch\n", None, {"note": "two\nlines"}),
    ],
    ids=["escape-directive", "continuation", "dockerignore-kept", "line-break"],
)
def test_labels_stay_beside_the_build_where_a_line_could_change_it(
    context: Path, dockerfile: str, ignore: str | None, labels: dict[str, str]
) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    if ignore is not None:
        (context / ".dockerignore").write_text(ignore)
    api = FakeAPI()
    build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels=labels)
    (kwargs,) = api.called("build")
    assert kwargs["dockerfile"] == "Dockerfile" and {**labels}.items() <= dict(kwargs["labels"]).items()
    assert api.sent_files()["Dockerfile"] == dockerfile
    if ignore is not None:
        assert api.sent_files()[".dockerignore"] == ignore


def test_a_dockerignore_that_ignores_itself_still_ignores_what_it_lists(context: Path) -> None:
    (context / ".dockerignore").write_text(".dockerignore\nnotes.txt\n")
    (context / "notes.txt").write_text("not sent\n")
    (context / "app.sh").write_text("echo hi\n")
    api = FakeAPI()
    build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels=LABELS)
    files = api.sent_files()
    name = api.called("build")[0]["dockerfile"]
    assert sorted(files) == sorted(["Dockerfile", "app.sh", ".dockerignore", name])
    assert files[".dockerignore"].splitlines() == [".dockerignore", "notes.txt", name]


def test_a_tag_already_built_from_the_same_inputs_is_not_built_again(context: Path) -> None:
    (context / ".dockerignore").write_text("# scratch files\nnotes.txt\n")
    (context / "app.sh").write_text("echo hi\n")
    first = FakeAPI()
    build_image(FakeClient(first), context=context, dockerfile="Dockerfile", tag="reg/dx29/web:v1", labels=LABELS)
    inputs = first.sent_labels()[BUILD_INPUT_LABEL]

    (context / "notes.txt").write_text("ignored by .dockerignore, so not an input\n")
    again = FakeAPI()
    again.held["reg/dx29/web:v1"] = (OTHER, inputs)
    seen: list[str] = []
    result = build_image(
        FakeClient(again),
        context=context,
        dockerfile="Dockerfile",
        tag="reg/dx29/web:v1",
        labels=LABELS,
        on_line=seen.append,
    )
    assert again.called("build") == [] and again.called("tag") == [] and result.image_id == OTHER
    assert "not built: reg/dx29/web:v1 is" in seen[0] and inputs in result.log

    elsewhere = FakeAPI()  # the same inputs under another tag: the engine's own cache decides
    elsewhere.held["reg/dx29/web:v1"] = (OTHER, inputs)
    build_image(FakeClient(elsewhere), context=context, dockerfile="Dockerfile", tag="reg/dx29/web:v2", labels=LABELS)
    assert len(elsewhere.called("build")) == 1

    (context / "app.sh").write_text("echo changed\n")
    changed = FakeAPI()
    changed.held["reg/dx29/web:v1"] = (OTHER, inputs)
    build_image(FakeClient(changed), context=context, dockerfile="Dockerfile", tag="reg/dx29/web:v1", labels=LABELS)
    assert changed.sent_labels()[BUILD_INPUT_LABEL] != inputs


def test_a_fresh_checkout_of_the_same_files_is_the_same_input(context: Path) -> None:
    (context / "app.sh").write_text("echo hi\n")

    def inputs() -> str:
        api = FakeAPI()
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels=LABELS)
        return api.sent_labels()[BUILD_INPUT_LABEL]

    before = inputs()
    os.utime(context / "app.sh", (1_000_000, 1_000_000))
    assert inputs() == before
    (context / "app.sh").chmod(0o755)
    assert inputs() != before


def test_other_labels_or_args_are_other_inputs(context: Path) -> None:
    def inputs(**kwargs: Any) -> str:
        api = FakeAPI()
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", **kwargs)
        return api.sent_labels()[BUILD_INPUT_LABEL]

    plain = inputs(labels=LABELS)
    assert plain == inputs(labels=LABELS)
    assert plain != inputs(labels={**LABELS, "org.opencontainers.image.revision": "def456"})
    assert plain != inputs(labels=LABELS, build_args={"MODE": "debug"})


class PullingAPI(FakeAPI):
    """An engine that does not hold the base image yet."""

    def inspect_image(self, ref: str) -> dict[str, Any]:
        if ref == "registry.example/base:1":
            raise docker.errors.ImageNotFound(ref)
        return super().inspect_image(ref)


def test_a_base_the_engine_must_pull_means_a_build(context: Path) -> None:
    (context / "Dockerfile").write_text("FROM registry.example/base:1\nCOPY . /\n")
    api = PullingAPI()
    result = build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels={})
    assert len(api.called("build")) == 1 and BUILD_INPUT_LABEL not in result.labels


class BuildKitAPI(FakeAPI):
    """An engine whose API takes ``POST /build?version=2`` (the SDK's request path is the seam)."""

    api_version = "1.41"

    def __init__(self, trace: list[Mapping[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trace = trace or []

    def _url(self, path: str) -> str:
        return f"http+docker://engine{path}"

    def _post(self, url: str, **kwargs: Any) -> object:
        self.calls.append(("post", {"url": url, **kwargs}))
        self.sent.append(kwargs["data"].read())
        return object()

    def _stream_helper(self, response: object, decode: bool = False) -> Iterator[Mapping[str, Any]]:
        assert decode
        yield from self.trace


def test_buildkit_builds_when_the_engine_holds_every_base(context: Path) -> None:
    (context / "Dockerfile").write_text("FROM base:1\nCOPY app.sh /\n")
    (context / "app.sh").write_text("echo hi\n")
    os.utime(context / "app.sh", (1_000_000.25, 1_000_000.25))  # a fractional time: no PAX header for it
    done = {"id": "moby.buildkit.trace", "aux": "CgsKCXNoYTI1NjphYQ=="}  # one vertex, digest only: no line
    api = BuildKitAPI(trace=[done, {"id": "moby.image.id", "aux": {"ID": IMAGE_ID}}])
    seen: list[str] = []
    result = build_image(
        FakeClient(api), context=context, dockerfile="Dockerfile", tag="dx29/web:v1", labels=LABELS, on_line=seen.append
    )
    assert api.called("build") == [] and result.image_id == IMAGE_ID
    (post,) = api.called("post")
    params = post["params"]
    assert post["url"].endswith("/build") and params["version"] == "2" and params["t"] == "dx29/web:v1"
    assert params["dockerfile"] == "Dockerfile"
    assert json.loads(params["labels"]) == {**LABELS, BUILD_INPUT_LABEL: result.labels[BUILD_INPUT_LABEL]}
    assert json.loads(params["buildargs"]) == {"VERSION": "1.2.0", "REVISION": "abc123"}
    assert seen == ["BuildKit builds it: the engine holds every image it builds on"]
    # The context as sent: the Dockerfile untouched (the labels go beside), GNU tar, whole seconds.
    with tarfile.open(fileobj=io.BytesIO(api.sent[0])) as sent:
        members = sent.getmembers()
        assert sent.pax_headers == {} and all(m.pax_headers == {} for m in members)
        assert {m.name: m.mtime for m in members if m.name == "app.sh"} == {"app.sh": 1_000_000}
        assert sent.extractfile("Dockerfile").read() == b"FROM base:1\nCOPY app.sh /\n"  # type: ignore[union-attr]
    assert api.sent[0][257:265] == b"ustar  \x00"  # the GNU format's magic, not POSIX's "ustar\x0000"


# --- bases kept in the release's registry -------------------------------------------------

RELEASE_REGISTRY = ("registry.example", RegistryAuth("ci", "s3cret-pw"))


class PullableAPI(BuildKitAPI):
    """A BuildKit engine that lacks ``registry.example/base:1`` until it is pulled."""

    def __init__(self, pull: list[Mapping[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pulled: set[str] = set()
        self.pull_stream = pull if pull is not None else [{"status": "Pulling from base"}, {"status": "Pull complete"}]

    def inspect_image(self, ref: str) -> dict[str, Any]:
        if ref.startswith("registry.example/") and ref not in self.pulled:
            raise docker.errors.ImageNotFound(ref)
        return super().inspect_image(ref)

    def pull(self, repository: str, **kwargs: Any) -> Iterator[Mapping[str, Any]]:
        self.calls.append(("pull", {"repository": repository, **kwargs}))
        yield from self.pull_stream
        self.pulled.add(repository)


def test_a_base_in_the_release_registry_is_pulled_with_its_credentials_then_built_by_buildkit(context: Path) -> None:
    (context / "Dockerfile").write_text("FROM registry.example/base:1 AS tools\nFROM scratch\nCOPY --from=tools / /\n")
    api = PullableAPI()
    seen: list[str] = []
    result = build_image(
        FakeClient(api),
        context=context,
        dockerfile="Dockerfile",
        tag="t:1",
        labels={},
        on_line=seen.append,
        registry=RELEASE_REGISTRY,
    )
    (pull,) = api.called("pull")
    assert pull["repository"] == "registry.example/base:1"
    assert pull["auth_config"] == {"username": "ci", "password": "s3cret-pw"}
    assert seen[0] == "pulling base image registry.example/base:1 with the release's credentials for registry.example"
    assert "Pull complete" in seen and not any("s3cret-pw" in line for line in seen)
    # Held now, the base is a known input: BuildKit builds, and the build-input digest is labelled.
    assert api.called("build") == [] and len(api.called("post")) == 1 and BUILD_INPUT_LABEL in result.labels


def test_bases_of_other_registries_are_left_to_the_builder(context: Path) -> None:
    (context / "Dockerfile").write_text("FROM registry.example/base:1\n")
    api = PullableAPI()
    build_image(
        FakeClient(api),
        context=context,
        dockerfile="Dockerfile",
        tag="t:1",
        labels={},
        registry=("other.example:5000", RegistryAuth("ci", "pw")),
    )
    assert api.called("pull") == [] and len(api.called("build")) == 1  # the classic builder pulls it


def test_a_refused_base_pull_is_one_build_error_naming_base_and_registry(context: Path) -> None:
    (context / "Dockerfile").write_text("FROM registry.example/base:1\n")
    api = PullableAPI(
        pull=[{"error": "unauthorized", "errorDetail": {"message": "unauthorized: authentication required"}}]
    )
    with pytest.raises(BuildError) as info:
        build_image(
            FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels={}, registry=RELEASE_REGISTRY
        )
    assert "pulling base image registry.example/base:1 from registry.example failed" in str(info.value)
    assert "authentication required" in str(info.value) and "credentials may pull it" in info.value.one_line()
    assert api.called("build") == [] and api.called("post") == []  # nothing built


@pytest.mark.parametrize(
    ("dockerfile", "first_file"),
    [
        ("# syntax=docker/dockerfile:1\nFROM scratch\n", None),  # BuildKit would pull the frontend
        ("FROM registry.example/base:1\n", None),  # a base to pull, with credentials BuildKit has not
        ("FROM scratch\nCOPY . /\n", "A" * 120),  # a first entry whose header is more than 1024 bytes
    ],
    ids=["syntax-directive", "base-to-pull", "long-first-name"],
)
def test_the_classic_builder_builds_what_buildkit_without_a_session_cannot(
    context: Path, dockerfile: str, first_file: str | None
) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    if first_file:
        (context / first_file).write_text("x\n")

    class Engine(BuildKitAPI):
        def inspect_image(self, ref: str) -> dict[str, Any]:
            if ref == "registry.example/base:1":
                raise docker.errors.ImageNotFound(ref)
            return super().inspect_image(ref)

    api = Engine()
    build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels=LABELS)
    assert len(api.called("build")) == 1 and api.called("post") == []


def test_a_dockerignore_that_lists_itself_is_not_sent_to_buildkit_and_one_listing_the_dockerfile_goes_classic(
    context: Path,
) -> None:
    (context / "notes.txt").write_text("not sent\n")
    (context / ".dockerignore").write_text(".dockerignore\nnotes.txt\n")
    api = BuildKitAPI()
    build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels=LABELS)
    assert len(api.called("post")) == 1 and sorted(api.sent_files()) == ["Dockerfile"]

    (context / ".dockerignore").write_text(".dockerignore\nnotes.txt\nDockerfile\n")
    api = BuildKitAPI()
    build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels={})
    # The classic builder reads the Dockerfile, then drops what the .dockerignore it is sent lists.
    assert api.called("post") == [] and len(api.called("build")) == 1
    assert {".dockerignore", "Dockerfile"} <= set(api.sent_files()[".dockerignore"].splitlines())


def test_buildkit_error_carries_the_progress_before_it(context: Path) -> None:
    failed = {"errorDetail": {"message": 'failed to compute cache key: "/missing" not found'}, "error": "x"}
    api = BuildKitAPI(trace=[failed])
    with pytest.raises(BuildError) as info:
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t:1", labels={})
    text = str(info.value)
    assert "docker build of t:1 failed" in text and '"/missing" not found' in text and "BuildKit builds it" in text


def test_an_unreadable_context_file_is_named(context: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = context / "locked.txt"
    locked.write_text("x\n")
    opened = Path.open

    def open_but_locked(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == locked:  # as a file root cannot read either (these tests may run as root)
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_but_locked)
    api = FakeAPI()
    with pytest.raises(BuildError, match=r"cannot read .*locked\.txt of the build context: Permission denied") as info:
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels={})
    assert info.value.source == str(locked) and api.called("build") == []


@pytest.mark.parametrize(
    ("dockerfile", "bases"),
    [
        ("FROM scratch\nCOPY a /", []),
        (
            "FROM golang:1.23 AS build\nRUN go build\nFROM gcr.io/distroless/static\nCOPY --from=build /x /",
            ["golang:1.23", "gcr.io/distroless/static"],
        ),
        (
            "FROM --platform=linux/amd64 alpine:3.20\nCOPY --from=busybox:1.36 /bin/sh /bin/",
            ["alpine:3.20", "busybox:1.36"],
        ),
        ("FROM base AS one\nFROM one\nCOPY --from=0 /a /", ["base"]),
        ("ARG BASE=alpine\nFROM ${BASE}", ["alpine"]),
        ("ARG TAG=3.20\nARG REG\nFROM $REG/alpine:${TAG}", None),  # REG has no value
        ("ARG V='1.23'\nFROM golang:${V:-1.22} AS b\nARG V=9\nFROM ${OS:-alpine}:$V", ["golang:1.23", "alpine:1.23"]),
        ("FROM scratch\nARG B=alpine\nFROM $B", None),  # an ARG of a stage is not for FROM lines
        ("ARG B=alpine\nFROM ${B:+x}", None),  # a form not read here
        ("FROM alpine\nCOPY --from=$X /a /", None),
        ("FROM alpine\nADD https://example.com/tool.tgz /", None),
        ("FROM alpine\nRUN apk add \\\n  curl\n# FROM nothing", ["alpine"]),
    ],
)
def test_base_images_of_a_dockerfile(dockerfile: str, bases: list[str] | None) -> None:
    assert base_images(dockerfile) == bases


def test_build_args_of_the_build_name_the_base() -> None:
    dockerfile = "ARG NODE=20\nFROM registry.example/node:${NODE}-slim\n"
    assert base_images(dockerfile, {"NODE": "22"}) == ["registry.example/node:22-slim"]
    assert base_images(dockerfile, {"OTHER": "1"}) == ["registry.example/node:20-slim"]


def test_missing_context_fails_before_the_engine(tmp_path: Path) -> None:
    api = FakeAPI()
    with pytest.raises(BuildError, match=r"build context .*nope does not exist") as info:
        build_image(FakeClient(api), context=tmp_path / "nope", dockerfile="Dockerfile", tag="t", labels={})
    assert api.calls == [] and info.value.source == str(tmp_path / "nope")


def test_an_unreadable_dockerfile_is_one_build_error_before_the_engine(
    context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Path.read_text

    def locked(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "Dockerfile":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", locked)
    api = FakeAPI()
    with pytest.raises(BuildError, match=r"cannot read .*Dockerfile: Permission denied"):
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels={})
    assert api.calls == []


def test_missing_dockerfile_names_the_path(tmp_path: Path) -> None:
    api = FakeAPI()
    with pytest.raises(BuildError) as info:
        build_image(FakeClient(api), context=tmp_path, dockerfile="Dockerfile.missing", tag="t", labels={})
    assert str(tmp_path / "Dockerfile.missing") in str(info.value) and api.calls == []


def test_failed_step_carries_the_last_log_lines(context: Path) -> None:
    lines = [{"stream": f"line {n}\n"} for n in range(30)]
    api = FakeAPI(build=[*lines, {"errorDetail": {"message": "COPY failed: stat x"}, "error": "COPY failed: stat x"}])
    seen: list[str] = []
    with pytest.raises(BuildError) as info:
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels={}, on_line=seen.append)
    text = str(info.value)
    assert "COPY failed: stat x" in text and "line 29" in text and "line 10" not in text
    assert "last 20 lines" in text and info.value.source == str(context)
    assert seen[-1] == "ERROR: COPY failed: stat x"


def test_unreachable_engine_is_a_build_error(context: Path) -> None:
    api = FakeAPI(build=[requests.exceptions.ConnectionError("docker.sock: connection refused")])
    with pytest.raises(BuildError, match="connection refused"):
        build_image(FakeClient(api), context=context, dockerfile="Dockerfile", tag="t", labels={})


# --- push_image ---------------------------------------------------------------------------


def test_push_tags_pushes_and_confirms() -> None:
    api = FakeAPI(pushes=[GOOD_PUSH])
    registry = FakeRegistry(DIGEST)
    seen: list[str] = []
    result = push_image(
        FakeClient(api),
        repository="localhost:5000/dx29/gateway",
        tag="v1",
        auth=RegistryAuth("u", "pw"),
        on_line=seen.append,
        source=IMAGE_ID,
        registry=registry,  # type: ignore[arg-type]
    )
    assert result.digest == DIGEST and result.ref == f"localhost:5000/dx29/gateway@{DIGEST}"
    assert registry.pings == 1 and registry.asked == [("dx29/gateway", "v1")]
    assert api.calls[0] == ("tag", {"source": IMAGE_ID, "repository": "localhost:5000/dx29/gateway", "tag": "v1"})
    assert api.calls[1][1]["auth_config"] == {"username": "u", "password": "pw"}
    assert "aaa: Pushed" in seen and not any("Pushing" in line for line in seen)
    assert "pw" not in result.log


def test_digest_from_status_line_when_no_aux() -> None:
    api = FakeAPI(pushes=[GOOD_PUSH[:4]])
    result = push_image(
        FakeClient(api),
        repository="localhost:5000/dx29/a",
        tag="v1",
        auth=None,
        registry=FakeRegistry(DIGEST),  # type: ignore[arg-type]
    )
    assert result.digest == DIGEST


def test_push_without_digest_is_an_error() -> None:
    api = FakeAPI(pushes=[GOOD_PUSH[:3]])
    with pytest.raises(PushError, match="reported no digest"):
        push_image(
            FakeClient(api), repository="localhost:5000/dx29/a", tag="v1", auth=None, registry=FakeRegistry(DIGEST)
        )  # type: ignore[arg-type]


def test_registry_disagreeing_is_a_digest_mismatch() -> None:
    api = FakeAPI(pushes=[GOOD_PUSH])
    with pytest.raises(PushError, match="digest mismatch") as info:
        push_image(
            FakeClient(api), repository="localhost:5000/dx29/a", tag="v1", auth=None, registry=FakeRegistry(OTHER)
        )  # type: ignore[arg-type]
    assert DIGEST in str(info.value) and OTHER in str(info.value)


def test_registry_failing_to_confirm_is_a_push_error() -> None:
    api = FakeAPI(pushes=[GOOD_PUSH])
    failure = RegistryError("manifest dx29/a:v1 not found", source="https://localhost:5000", hint="push again")
    with pytest.raises(PushError, match="could not confirm") as info:
        push_image(
            FakeClient(api), repository="localhost:5000/dx29/a", tag="v1", auth=None, registry=FakeRegistry(failure)
        )  # type: ignore[arg-type]
    assert info.value.source == "https://localhost:5000"


def test_refused_credentials_are_not_retried() -> None:
    refused = [{"errorDetail": {"message": "unauthorized: authentication required"}, "error": "unauthorized"}]
    api = FakeAPI(pushes=[refused, GOOD_PUSH])
    with pytest.raises(PushError) as info:
        push_image(
            FakeClient(api),
            repository="localhost:5000/dx29/a",
            tag="v1",
            auth=RegistryAuth("u", "bad", "env PW"),
            registry=FakeRegistry(DIGEST),
        )  # type: ignore[arg-type]
    text = str(info.value)
    assert "registry localhost:5000 refused the credentials of u (password from env PW)" in text
    assert "bad" not in text.replace("unauthorized", "")
    assert [name for name, _ in api.calls] == ["push"]


def test_unreachable_registry_retried_then_named() -> None:
    down = [
        {"errorDetail": {"message": "Get https://localhost:1/v2/: dial tcp 127.0.0.1:1: connect: connection refused"}}
    ]
    api = FakeAPI(pushes=[down, down, down])
    with pytest.raises(PushError, match=r"registry localhost:1 unreachable .*tried 3 times") as info:
        push_image(FakeClient(api), repository="localhost:1/dx29/a", tag="v1", auth=None, registry=FakeRegistry(DIGEST))  # type: ignore[arg-type]
    assert info.value.source == "https://localhost:1" and len(api.calls) == 3


def test_unreachable_then_reachable_succeeds() -> None:
    down = [{"errorDetail": {"message": "dial tcp 127.0.0.1:5000: connect: connection refused"}}]
    api = FakeAPI(pushes=[down, GOOD_PUSH])
    result = push_image(
        FakeClient(api), repository="localhost:5000/dx29/a", tag="v1", auth=None, registry=FakeRegistry(DIGEST)
    )  # type: ignore[arg-type]
    assert result.digest == DIGEST and len(api.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [
        RegistryError(
            "GET https://localhost:5000/v2/ answered HTTP 500: storage down", source="https://localhost:5000"
        ),
        RegistryError(
            "TLS verification of https://localhost:5000/v2/ failed: certificate verify failed",
            source="https://localhost:5000",
            hint="trust the registry's CA",
        ),
    ],
    ids=["http-500", "wrong-ca"],
)
def test_a_failing_ping_stops_the_push_before_the_engine_is_asked(failure: RegistryError) -> None:
    api = FakeAPI(pushes=[GOOD_PUSH])
    registry = FakeRegistry(DIGEST, ping=failure)
    with pytest.raises(PushError, match="not pushing localhost:5000/dx29/a:v1") as info:
        push_image(
            FakeClient(api), repository="localhost:5000/dx29/a", tag="v1", auth=None, source=IMAGE_ID, registry=registry
        )  # type: ignore[arg-type]
    assert info.value.source == "https://localhost:5000" and failure.message in str(info.value)
    assert api.calls == [] and registry.asked == []


def test_ping_through_the_registry_client_answering_500_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests
    from requests.adapters import BaseAdapter

    from deploybook.images import registry as registry_module
    from deploybook.images.registry import RegistryClient

    class Answer500(BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            response = requests.Response()
            response.status_code, response._content, response.url = 500, b"storage down", request.url
            return response

        def close(self) -> None:
            return None

    monkeypatch.setattr(registry_module.time, "sleep", lambda s: None)
    api = FakeAPI(pushes=[GOOD_PUSH])
    client = RegistryClient("localhost:5000", None, transport=Answer500())
    with pytest.raises(PushError, match="HTTP 500") as info:
        push_image(FakeClient(api), repository="localhost:5000/dx29/a", tag="v1", auth=None, registry=client)
    assert info.value.source == "https://localhost:5000" and api.calls == []


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("localhost:5000/dx29/gateway", ("localhost:5000", "dx29/gateway")),
        ("x.azurecr.io/dx29/a", ("x.azurecr.io", "dx29/a")),
    ],
)
def test_split_repository(repository: str, expected: tuple[str, str]) -> None:
    assert split_repository(repository) == expected


def test_repository_without_registry_is_refused() -> None:
    with pytest.raises(PushError, match="names no registry"):
        split_repository("dx29/gateway")


def test_an_unreachable_registry_at_the_ping_is_named_as_unreachable() -> None:
    import requests

    try:
        try:
            raise requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='localhost', port=1): Max retries "
                "exceeded (Caused by NewConnectionError(... Connection refused))"
            )
        except requests.exceptions.ConnectionError as e:
            raise RegistryError("registry unreachable after 3 tries", source="https://localhost:1") from e
    except RegistryError as e:
        down = e
    api = FakeAPI(pushes=[GOOD_PUSH])
    with pytest.raises(PushError) as info:
        push_image(
            FakeClient(api),
            repository="localhost:1/dx29/a",
            tag="v1",
            auth=None,
            registry=FakeRegistry(DIGEST, ping=down),
        )  # type: ignore[arg-type]
    text = str(info.value)
    assert (
        "registry localhost:1 unreachable when pushing localhost:1/dx29/a:v1 (tried 3 times): connection refused"
        in text
        and "HTTPSConnectionPool" not in text
    )
    assert info.value.source == "https://localhost:1" and api.calls == []
