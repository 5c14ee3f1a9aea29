"""Image build through the Docker engine, with OCI labels and a captured log.

`build_image` streams every log line to a callback (the terminal's progress) and keeps the
whole log (the report's evidence). A missing context or Dockerfile is reported before the
engine is called; a failed build carries the last lines of its log. When the tag already
names an image built from the same inputs (`deploybook.images.build_inputs`), nothing is built.

Which builder: BuildKit (`deploybook.images.buildkit`) when the engine holds every base image
the Dockerfile names, so that nothing has to be pulled; otherwise the classic builder through
the SDK, which pulls a missing base with the Docker configuration's credentials. Bases kept in
the release's own registry are pulled first with the release's credentials
(`deploybook.images.bases`), so they never reach the classic builder missing. The context
archive is made once (`_tar`), hashed for the build inputs and sent to either.

For the classic builder the labels go to the engine as one ``LABEL`` instruction appended to a
copy of the Dockerfile (`_dockerfile_with_labels`): it makes an image step of every label
passed beside a build, about 0.08 s each, and one instruction is one step. BuildKit takes
them beside the build at no cost.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import secrets
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import docker
import docker.errors
import requests
from docker.api.build import process_dockerfile
from docker.utils.build import Pattern, PatternMatcher, exclude_paths

from deploybook.errors import BuildError
from deploybook.images import buildkit
from deploybook.images.bases import pull_missing_bases
from deploybook.images.build_inputs import BUILD_INPUT_LABEL, build_inputs, image_built_from
from deploybook.images.buildkit import StepFailed
from deploybook.images.credentials import RegistryAuth

__all__ = ["BuildResult", "LineCallback", "build_image", "emit_line", "oci_labels"]

LineCallback = Callable[[str], None]
_TAIL_LINES = 20


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the image id, the tag it carries, its labels and full log."""

    image_id: str
    tag: str
    labels: Mapping[str, str]
    log: str = field(repr=False)
    seconds: float


def oci_labels(*, revision: str, source: str, version: str, created: str | datetime | None = None) -> dict[str, str]:
    """The OCI annotations (``org.opencontainers.image.*``) for an image of this release.

    ``created`` defaults to now; pass the commit time instead to keep rebuilds of the same
    commit byte-identical (same labels, so the build cache holds and the digest stays).
    """
    if created is None:
        created = datetime.now(UTC)
    if isinstance(created, datetime):
        created = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
    }


def _build_args(labels: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """VERSION and REVISION from the labels (so the image can report them), then ``extra``."""
    args = {
        name: labels[key]
        for name, key in (
            ("VERSION", "org.opencontainers.image.version"),
            ("REVISION", "org.opencontainers.image.revision"),
        )
        if key in labels
    }
    args.update(extra or {})
    return args


def _dockerfile_in_context(context: Path, dockerfile: str | Path) -> str:
    """The Dockerfile as the engine wants it (relative to the context), checked to exist."""
    if not context.is_dir():
        raise BuildError(
            f"build context {context} does not exist or is not a directory",
            source=str(context),
            hint="fix the service's context path in the environment file",
        )
    path = Path(dockerfile)
    path = path if path.is_absolute() else context / path
    if not path.is_file():
        raise BuildError(
            f"Dockerfile {path} does not exist",
            source=str(path),
            hint="fix the service's dockerfile in the environment file or add the file",
        )
    try:
        return str(path.resolve().relative_to(context.resolve()))
    except ValueError:
        return str(path.resolve())  # outside the context: docker-py sends it along


def build_image(
    client: docker.DockerClient,
    *,
    context: str | Path,
    dockerfile: str | Path,
    tag: str,
    labels: Mapping[str, str],
    on_line: LineCallback | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    registry: tuple[str, RegistryAuth] | None = None,
) -> BuildResult:
    """Build ``context`` with ``dockerfile`` into ``tag``, labelled with ``labels``.

    Every log line goes to ``on_line`` as it arrives and into the result's ``log``. The OCI
    version and revision labels are also passed as build args ``VERSION`` and ``REVISION``
    (``build_args`` adds or overrides). ``target`` is the Dockerfile stage the image ends at
    (``--target``; None: the last). ``registry`` is the release's registry and credentials:
    bases kept there that the engine lacks are pulled with them first
    (`deploybook.images.bases`). Raises `BuildError` for a missing context or
    Dockerfile (before calling the engine), a failing step (with the log's last lines) or an
    unreachable engine.
    """
    context = Path(context)
    relative_dockerfile = _dockerfile_in_context(context, dockerfile)
    started = time.monotonic()
    args = _build_args(labels, build_args)
    lines: list[str] = []
    ignored = _ignore_patterns(context)
    say = functools.partial(emit_line, lines, on_line)
    text = _read_dockerfile(context / relative_dockerfile)  # outside the context: an absolute path
    try:
        if registry is not None:
            pull_missing_bases(client, text, *registry, say, args)
        with _context_archive(context, relative_dockerfile, ignored) as (archive, in_archive):
            inputs = None
            if in_archive == relative_dockerfile:  # a Dockerfile from outside gets a random name
                inputs = build_inputs(
                    client,
                    archive,
                    dockerfile=text,
                    dockerfile_in_archive=in_archive,
                    build_args=args,
                    labels=labels,
                    target=target,
                )
            held = image_built_from(client, inputs, tag) if inputs else None
            if inputs and held:
                say(f"not built: {tag} is {held[:19]}, built from the same inputs")
                say(f"({BUILD_INPUT_LABEL}={inputs}: context, Dockerfile, args, labels, bases)")
                return BuildResult(held, tag, {**labels, BUILD_INPUT_LABEL: inputs}, "\n".join(lines), 0.0)
            labels = {**labels, BUILD_INPUT_LABEL: inputs} if inputs else dict(labels)
            if inputs and _buildkit_can_build(client, text, in_archive, ignored, archive):
                say("BuildKit builds it: the engine holds every image it builds on")
                buildkit.build(
                    client,
                    archive,
                    dockerfile=in_archive,
                    tag=tag,
                    labels=labels,
                    build_args=args,
                    target=target,
                    on_line=say,
                )
            else:
                _classic_build(
                    client, context, relative_dockerfile, archive, in_archive, ignored, tag, labels, args, target, say
                )
        image_id = client.api.inspect_image(tag)["Id"]
    except StepFailed as e:
        raise _build_failed(f"docker build of {tag} failed: {e}", context, lines) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise _build_failed(f"docker build of {tag} failed: {e}", context, lines) from e
    return BuildResult(image_id, tag, labels, "\n".join(lines), time.monotonic() - started)


def _read_dockerfile(path: Path) -> str:
    """The Dockerfile's text, as the build's inputs and its bases are read from it."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror}", source=str(path)) from None


_DIRECTIVE = re.compile(r"^\s*#\s*([A-Za-z]+)\s*=")


def _buildkit_can_build(
    client: docker.DockerClient, dockerfile: str, in_archive: str, ignored: list[str] | None, archive: IO[bytes]
) -> bool:
    """Whether BuildKit, with no session, can build this: nothing to fetch, a context it reads.

    The caller knows every base image is in the engine. A ``# syntax=`` line would make BuildKit
    pull a frontend image. A Dockerfile the ``.dockerignore`` lists must be read and then left
    out of the context, which only the classic builder does with a tar. BuildKit tells a tar
    context from a single file by reading its first 1024 bytes as tar, so the first entry's
    header must fit in them.
    """
    if _names_a_frontend(dockerfile):
        return False
    if _lists(ignored or [], in_archive):
        return False
    head = archive.read(1024)
    archive.seek(0)
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tar:
            readable = tar.next() is not None
    except tarfile.TarError:
        readable = False
    return readable and buildkit.engine_builds_with_buildkit(client)


def _names_a_frontend(text: str) -> bool:
    """Whether the Dockerfile's parser directives (its first lines, before anything else) set ``syntax``."""
    for line in text.splitlines():
        directive = _DIRECTIVE.match(line)
        if directive is None:
            return False
        if directive.group(1).lower() == "syntax":
            return True
    return False


def _classic_build(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    archive: IO[bytes],
    in_archive: str,
    ignored: list[str] | None,
    tag: str,
    labels: Mapping[str, str],
    args: Mapping[str, str],
    target: str | None,
    say: LineCallback,
) -> None:
    """The classic builder through the SDK (it pulls a missing base with the engine's credentials)."""
    labelled = _dockerfile_with_labels(context / dockerfile, ignored, labels, target)
    sending: contextlib.AbstractContextManager[IO[bytes]]
    if labelled is None:
        sending, sent_dockerfile = contextlib.nullcontext(archive), in_archive
    else:  # the same context, and the Dockerfile's copy under a name of its own
        sent_dockerfile = f".dockerfile.{secrets.token_hex(20)}"
        sending = _tar(context, ignored, (sent_dockerfile, labelled))
    with sending as sent:
        stream = client.api.build(
            fileobj=sent,
            custom_context=True,
            dockerfile=sent_dockerfile,
            tag=tag,
            labels=labels if labelled is None else None,
            buildargs=dict(args),
            target=target,
            rm=True,
            forcerm=True,
            decode=True,
        )
        progress = buildkit.PlainProgress(say)
        for chunk in stream:
            progress.read(chunk)


def _ignore_patterns(context: Path) -> list[str] | None:
    """The patterns of the context's ``.dockerignore``, or None without one."""
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return None
    lines = (line.strip() for line in ignore.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@contextlib.contextmanager
def _context_archive(context: Path, dockerfile: str, ignored: list[str] | None) -> Iterator[tuple[IO[bytes], str]]:
    """The context as ``docker build`` sends it (``.dockerignore`` applied), and the Dockerfile's name in it.

    Made once here so the same bytes are hashed (`build_inputs`) and sent.
    """
    named = process_dockerfile(dockerfile, str(context))
    with _tar(context, ignored, named) as archive:
        yield archive, named[0] or dockerfile


@contextlib.contextmanager
def _tar(context: Path, ignored: list[str] | None, dockerfile: tuple[str | None, str | None]) -> Iterator[IO[bytes]]:
    """The context archive ``docker build`` sends; a Dockerfile given with its text is added and
    listed in the archive's ``.dockerignore``, so the engine drops it from the context.

    The files are those docker-py's ``exclude_paths`` keeps (the ``.dockerignore`` rules, the
    Dockerfile always), written in the GNU tar format with whole-second times: Python's default
    PAX format gives every file with a fractional time an extended header, and BuildKit, which
    reads the first 1024 bytes of a context to tell a tar from a single file, then sees no tar.
    """
    patterns = [] if ignored is None else list(ignored)
    name, text = dockerfile
    extra: list[tuple[str, str]] = []
    if name is not None and text is not None:
        extra = [(".dockerignore", "\n".join([*(patterns or [".dockerignore"]), name])), (name, text)]
    # docker-py keeps .dockerignore for the engine to read; when it lists itself, and not the
    # Dockerfile (which the classic builder then drops after reading), what it lists is already
    # out, so it stays out too: BuildKit, given a tar, applies no .dockerignore of its own.
    drop_ignore_file = text is None and _ignores_itself(patterns) and not _lists(patterns, name or "Dockerfile")
    files = sorted(exclude_paths(str(context), list(patterns), dockerfile=name))
    if drop_ignore_file:
        files.remove(".dockerignore")
    with tempfile.TemporaryFile() as archive:
        _write_archive(archive, context, files, extra)
        archive.seek(0)
        yield archive


def _write_archive(archive: IO[bytes], context: Path, files: list[str], extra: list[tuple[str, str]]) -> None:
    replaced = {name for name, _ in extra}
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in files:
            if path in replaced:
                continue
            full = context / path
            info = tar.gettarinfo(str(full), arcname=path)
            if info is None:  # a socket: docker build leaves it out too
                continue
            info.mtime = int(info.mtime)
            if not info.isfile():
                tar.addfile(info)
                continue
            try:
                with full.open("rb") as content:
                    tar.addfile(info, content)
            except OSError as e:
                raise BuildError(
                    f"cannot read {full} of the build context: {e.strerror or e}",
                    source=str(full),
                    hint="make the file readable, or list it in the context's .dockerignore",
                ) from e
        for name, text in extra:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


_ESCAPE_DIRECTIVE = re.compile(r"^\s*#\s*escape\s*=", re.IGNORECASE | re.MULTILINE)


def _dockerfile_with_labels(
    dockerfile: Path, ignored: list[str] | None, labels: Mapping[str, str], target: str | None
) -> str | None:
    """The Dockerfile's text with ``labels`` as one ``LABEL`` instruction at its end, or None.

    The instruction applies to the last stage, the image the build tags, as labels passed beside
    the build do. The copy travels as an extra file the context's ``.dockerignore`` lists, so
    the engine drops it from the context; docker-py writes that ``.dockerignore`` over the
    context's own, so a context whose ``.dockerignore`` keeps itself (a ``COPY .`` would carry it)
    keeps the labels beside the build. So does a Dockerfile that changes the escape character,
    ends inside a line continuation or is not UTF-8 text, and a label holding a line break; and
    a build with a ``target``, whose image is a stage that need not be the last.
    """
    if not labels or target or (ignored is not None and not _ignores_itself(ignored)):
        return None
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    pairs = [*labels, *labels.values()]
    if _ESCAPE_DIRECTIVE.search(text) or text.rstrip().endswith("\\") or any(("\n" in p or "\r" in p) for p in pairs):
        return None
    words = " ".join(f"{_quoted(key)}={_quoted(value)}" for key, value in labels.items())
    return f"{text.rstrip()}\nLABEL {words}\n"


def _lists(patterns: list[str], path: str) -> bool:
    """Whether ``.dockerignore`` patterns leave ``path`` out of the context."""
    return bool(patterns) and bool(PatternMatcher(patterns).matches(path))


def _ignores_itself(patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` patterns, read in order (the last match decides), list the file itself."""
    ignored = False
    for pattern in map(Pattern, patterns):
        if pattern.dirs and pattern.match(".dockerignore"):
            ignored = not pattern.exclusion
    return ignored


def _quoted(word: str) -> str:
    """``word`` in double quotes as the Dockerfile parser reads it back: ``\\``, ``"`` and ``$`` escaped."""
    return '"' + re.sub(r'([\\"$])', r"\\\1", word) + '"'


def emit_line(lines: list[str], on_line: LineCallback | None, line: str) -> None:
    """Keep ``line`` in the log and hand it to the progress callback."""
    lines.append(line)
    if on_line is not None:
        on_line(line)


def _build_failed(message: str, context: Path, lines: list[str]) -> BuildError:
    tail = "\n".join(lines[-_TAIL_LINES:])
    text = (
        f"{message}\n--- last {min(len(lines), _TAIL_LINES)} lines of the build log ---\n{tail}" if lines else message
    )
    return BuildError(
        text,
        source=str(context),
        hint="read the build log above; files the Dockerfile COPYs must exist in the context "
        "(a context made by a script needs the service's `prepare:` command in app.yaml)",
    )
