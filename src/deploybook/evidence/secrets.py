"""Secret values a run can know, in every form they may take on disk, and their removal.

The stages never write a secret; this is the last line of defence behind them: the report's
results and the JUnit XML are scrubbed before the report is generated, and a bundle refuses
to be made when any known value is still in a file. What is known: the variables and files
the process environment names (``*_PASSWORD``, ``*_PASSWORD_FILE``, ...), and every secret
the run's environment files reference, resolved the way the run resolves them (the
registries' passwords, the git password file, what the git credential helper answers).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["REDACTED", "known_secret_values", "replace_forms", "scrub_secrets", "secret_forms"]

MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"

_SECRET_VALUE_SUFFIXES = ("_PASSWORD", "_TOKEN", "_SECRET", "_API_KEY")
_SECRET_FILE_SUFFIXES = ("_PASSWORD_FILE", "_TOKEN_FILE", "_SECRET_FILE")


def known_secret_values(environ: Mapping[str, str], also: Iterable[str] = ()) -> set[str]:
    """Secret values this process can know: ``*_PASSWORD``/``*_TOKEN``/``*_SECRET`` variables,
    the contents of files named by ``*_PASSWORD_FILE``-style variables, and ``also``.

    Short values are left out: blanking a three-letter word everywhere would ruin the report
    and protect nothing.
    """
    values: set[str] = {v.strip() for v in also if len(v.strip()) >= MIN_SECRET_LENGTH}
    for name, value in environ.items():
        upper = name.upper()
        if upper.endswith(_SECRET_FILE_SUFFIXES):
            value = _read_secret_file(value)
        elif not upper.endswith(_SECRET_VALUE_SUFFIXES):
            continue
        if len(value.strip()) >= MIN_SECRET_LENGTH:
            values.add(value.strip())
    return values


def _read_secret_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def secret_forms(values: Iterable[str]) -> list[bytes]:
    """Each secret as it may appear on disk: plain and base64 (Kubernetes Secret data)."""
    forms: set[bytes] = set()
    for value in values:
        raw = value.encode("utf-8")
        forms.update({raw, base64.b64encode(raw)})
    # Longest first so a value never leaves a tail of a longer one behind.
    return sorted(forms, key=len, reverse=True)


def scrub_secrets(folder: Path, values: Iterable[str]) -> list[Path]:
    """Replace known secret values in every file under ``folder``; return the files changed."""
    forms = secret_forms(values)
    changed: list[Path] = []
    if not forms:
        return changed
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if replace_forms(path, forms):
            changed.append(path)
    return changed


def replace_forms(path: Path, forms: list[bytes]) -> bool:
    data = path.read_bytes()
    cleaned = data
    for form in forms:
        cleaned = cleaned.replace(form, REDACTED.encode())
    if cleaned != data:
        path.write_bytes(cleaned)
    return cleaned != data
