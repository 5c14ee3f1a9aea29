"""The release bundle: one archive to attach to a release, and its verification.

A bundle is a gzipped tar with one top folder ``deploybook-ENV-RUN_ID/`` holding

    index.html      the single-file Allure report
    summary.json    Allure's one-line summary (when present)
    release.json    the release record
    junit.xml       the JUnit XML of the run
    manifests/      the rendered manifests exactly as applied
    SHA256SUMS      sha256 of every other file, in ``sha256sum`` format

``python -m deploybook.evidence.bundle create RUN_DIR`` writes ``RUN_DIR/deploybook-ENV-RUN_ID.tar.gz``;
``python -m deploybook.evidence.bundle verify ARCHIVE`` checks every file against SHA256SUMS and
names each file that was changed, removed or slipped in. Creating a bundle refuses when a
known secret value (see :func:`deploybook.evidence.secrets.known_secret_values`) is in any file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deploybook.errors import EvidenceError
from deploybook.evidence.record import RECORD_FILE
from deploybook.evidence.report import HTML_FILENAME, JUNIT_FILENAME, RESULTS_DIRNAME
from deploybook.evidence.secrets import known_secret_values, secret_forms

SUMS_FILE = "SHA256SUMS"
MANIFESTS_DIR = "manifests"
REQUIRED = (HTML_FILENAME, RECORD_FILE, JUNIT_FILENAME)
OPTIONAL = ("summary.json",)
# The single-file report embeds each data file as d("NAME","BASE64"): a secret inside an
# attachment is invisible to a plain search of the HTML unless the payloads are decoded.
_EMBEDDED = re.compile(rb'd\("([^"]{1,500})","([A-Za-z0-9+/=]*)"\)')


@dataclass(frozen=True)
class VerifyProblem:
    """One file of a bundle that does not match its SHA256SUMS line."""

    path: str
    problem: str  # "modified", "missing" or "not listed"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


# --------------------------------------------------------------------------- create


def collect_files(run_dir: Path) -> dict[str, bytes]:
    """Bundle path -> content for the evidence of ``run_dir``; EvidenceError names what is missing."""
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise EvidenceError(
            f"no {', '.join(missing)} in the run folder",
            source=str(run_dir),
            hint="bundle a finished run: the report, release.json and junit.xml "
            "are written at the end of `pytest runbook --env ENV`",
        )
    files = {name: (run_dir / name).read_bytes() for name in (*REQUIRED, *OPTIONAL) if (run_dir / name).is_file()}
    files.update(rendered_manifests(run_dir))
    return files


def rendered_manifests(run_dir: Path) -> dict[str, bytes]:
    """The rendered manifests: ``RUN_DIR/manifests/**`` when the apply stage wrote files,
    else those named in release.json (service -> file -> sha256 of the rendered YAML), taken
    from the Allure attachment whose content has exactly that sha256."""
    folder = run_dir / MANIFESTS_DIR
    if folder.is_dir():
        return {
            f"{MANIFESTS_DIR}/{p.relative_to(folder).as_posix()}": p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
    record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
    attachments = _attachments_by_sha256(run_dir / RESULTS_DIRNAME)
    files: dict[str, bytes] = {}
    for service, data in (record.get("services") or {}).items():
        for name, recorded in ((data or {}).get("manifests") or {}).items():
            content = _manifest_bytes(run_dir, str(recorded), attachments)
            if content is None:
                raise EvidenceError(
                    f"rendered manifest {name} of {service} (sha256 {recorded}) is not in the run folder",
                    source=str(run_dir / RECORD_FILE),
                    hint="the apply stage must attach or write the exact YAML it applied",
                )
            files[f"{MANIFESTS_DIR}/{_safe_name(service)}/{_yaml_name(name)}"] = content
    return files


def _attachments_by_sha256(results_dir: Path) -> dict[str, bytes]:
    if not results_dir.is_dir():
        return {}
    found: dict[str, bytes] = {}
    for path in results_dir.glob("*-attachment*"):
        data = path.read_bytes()
        found[hashlib.sha256(data).hexdigest()] = data
    return found


def _manifest_bytes(run_dir: Path, recorded: str, attachments: Mapping[str, bytes]) -> bytes | None:
    """A record entry is the sha256 of the rendered YAML, a path in the run folder, or YAML."""
    if re.fullmatch(r"[0-9a-f]{64}", recorded):
        return attachments.get(recorded)
    candidate = run_dir / recorded
    if "\n" not in recorded and len(recorded) < 512 and candidate.is_file():
        return candidate.read_bytes()
    return recorded.encode("utf-8")


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"


def _yaml_name(name: str) -> str:
    safe = _safe_name(name)
    return safe if safe.endswith((".yaml", ".yml")) else f"{safe}.yaml"


def sha256sums(files: Mapping[str, bytes]) -> bytes:
    """``sha256sum`` format: ``HEX  PATH`` per line, sorted by path."""
    lines = [f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in sorted(files.items())]
    return "".join(lines).encode("utf-8")


def report_payloads(html: bytes) -> dict[str, bytes]:
    """The data files embedded in a single-file Allure report, decoded, by name."""
    payloads: dict[str, bytes] = {}
    for name, encoded in _EMBEDDED.findall(html):
        try:
            payloads[name.decode("utf-8", "replace")] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
    return payloads


def searchable_contents(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``files`` plus every payload embedded in HTML files, as ``FILE#NAME``."""
    expanded = dict(files)
    for path, data in files.items():
        if path.endswith(".html"):
            expanded.update({f"{path}#{name}": payload for name, payload in report_payloads(data).items()})
    return expanded


def find_secrets(files: Mapping[str, bytes], values: set[str]) -> list[str]:
    """Paths (``FILE#EMBEDDED`` inside the report) that contain any form of a secret value."""
    forms = secret_forms(values)
    return [path for path, data in sorted(searchable_contents(files).items()) if any(form in data for form in forms)]


def create_bundle(
    run_dir: Path,
    *,
    output: Path | None = None,
    environ: Mapping[str, str] | None = None,
    also: Iterable[str] = (),
) -> Path:
    """Pack the evidence of ``run_dir`` with its SHA256SUMS; returns the archive path.

    ``also`` are secret values the run knows besides those of ``environ`` (the ones its
    environment files reference: registry and git passwords).
    """
    run_dir = run_dir.resolve()
    files = collect_files(run_dir)
    leaked = find_secrets(files, known_secret_values(os.environ if environ is None else environ, also))
    if leaked:
        raise EvidenceError(
            f"secret value found in {', '.join(leaked)}; bundle not written",
            source=str(run_dir),
            hint="find what wrote the secret into that file and reference it by variable or file name instead",
        )
    files[SUMS_FILE] = sha256sums(files)
    top = bundle_name(run_dir)
    archive = output or run_dir / f"{top}.tar.gz"
    temporary = archive.with_name(f".{archive.name}.{os.getpid()}")
    with tarfile.open(temporary, "w:gz") as tar:
        for path, data in sorted(files.items()):
            _add_member(tar, f"{top}/{path}", data)
    os.replace(temporary, archive)
    return archive


def bundle_name(run_dir: Path) -> str:
    """``deploybook-ENV-RUN_ID`` from the release record (folder names as a fallback)."""
    record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
    env = record.get("environment") or run_dir.parent.name
    run_id = record.get("run_id") or run_dir.name
    return _safe_name(f"deploybook-{env}-{run_id}")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    # Fixed owner and time: the archive says what is in it, not who packed it when.
    info.mtime = 0
    info.uname = info.gname = "deploybook"
    tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------- verify


def read_bundle(archive: Path) -> dict[str, bytes]:
    """Every regular file of ``archive``, by path below the top folder, read in memory."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            return {_inner_path(m.name): _read_member(tar, m) for m in members}
    except (OSError, tarfile.TarError) as e:
        raise EvidenceError(f"cannot read the bundle: {e}", source=str(archive)) from e


def _inner_path(name: str) -> str:
    parts = PurePosixPath(name).parts
    return "/".join(parts[1:]) if len(parts) > 1 else name


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle else b""


def check_sums(files: Mapping[str, bytes]) -> list[VerifyProblem]:
    """Compare ``files`` with their SHA256SUMS; an empty list means the bundle is intact."""
    if SUMS_FILE not in files:
        return [VerifyProblem(SUMS_FILE, "missing")]
    listed: dict[str, str] = {}
    for line in files[SUMS_FILE].decode("utf-8", "replace").splitlines():
        digest, _, path = line.partition("  ")
        if path:
            listed[path] = digest
    problems = [VerifyProblem(path, "missing") for path in sorted(listed) if path not in files]
    problems += [
        VerifyProblem(path, "modified")
        for path, data in sorted(files.items())
        if path in listed and hashlib.sha256(data).hexdigest() != listed[path]
    ]
    problems += [
        VerifyProblem(path, "not listed in SHA256SUMS")
        for path in sorted(files)
        if path != SUMS_FILE and path not in listed
    ]
    return problems


def verify_bundle(archive: Path) -> int:
    """Check ``archive``; EvidenceError naming every bad file, else the number of files checked."""
    files = read_bundle(archive)
    problems = check_sums(files)
    if problems:
        raise EvidenceError(
            "bundle does not match its SHA256SUMS: " + "; ".join(map(str, problems)),
            source=str(archive),
            hint="do not use this bundle; take the one attached to the release",
        )
    return len(files) - 1
