"""The ``deploybook`` command: set up and upgrade a team's runbook project, verify a bundle.

    deploybook init DIR          write a runbook project: pytest.ini, conftest.py, app.yaml,
                                 runbook/, checks/, environments/local.yaml, an example service
    deploybook upgrade [DIR]     bring runbook/ and checks/ up to this version of deploybook
    deploybook upgrade --check   say what upgrade would change; exit 1 if anything would
    deploybook bundle verify ARCHIVE   check a release bundle against its SHA256SUMS
    deploybook bundle create RUN_DIR   pack a finished run folder (a release packs its own)
    deploybook status [--env NAME]... [--json]
                                 what runs where: environment by service, running and recorded
                                 digest, release, source commit, ready pods, drift, verdict
                                 (read-only; exit 1 when any verdict is not ok)

The project's files are the team's own: ``init`` writes them once, and ``upgrade`` replaces a
runbook or check module only while it is still as deploybook wrote it (``.deploybook.json``
keeps the sha256 of what was written). A module the team changed is kept, and the new
version is written beside it as ``NAME.new`` to merge by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from deploybook import __version__
from deploybook.errors import DeploybookError
from deploybook.evidence.bundle import create_bundle, verify_bundle

__all__ = ["MANAGED", "Change", "init_project", "main", "plan_upgrade"]

STATE_FILE = ".deploybook.json"
MANAGED = ("runbook", "checks")
"""What ``upgrade`` keeps in step with deploybook; every other file is written once by ``init``."""
_RENAMED = {"gitignore": ".gitignore"}  # package data cannot carry dotfiles everywhere


@dataclass(frozen=True)
class Change:
    """What upgrade does with one managed file: ``write`` (new or unchanged by the team),
    ``keep`` (the team changed it: the new version goes beside it) or ``same``."""

    path: PurePosixPath
    action: str


def _template_root() -> Traversable:
    return resources.files("deploybook") / "templates" / "project"


def template_files() -> Iterator[tuple[PurePosixPath, bytes]]:
    """(path in a project, content) of every template file."""

    def walk(node: Traversable, prefix: PurePosixPath) -> Iterator[tuple[PurePosixPath, bytes]]:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            path = prefix / _RENAMED.get(child.name, child.name)
            if child.is_dir():
                yield from walk(child, path)
            else:
                yield path, child.read_bytes()

    yield from walk(_template_root(), PurePosixPath())


def _managed(path: PurePosixPath) -> bool:
    return path.parts[0] in MANAGED


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def init_project(directory: Path) -> list[PurePosixPath]:
    """Write a new runbook project into ``directory`` (absent or empty); returns what was written."""
    if directory.exists() and any(directory.iterdir()):
        raise DeploybookError(
            f"{directory} is not empty", source=str(directory), hint="init into a new or empty directory"
        )
    written = []
    for path, data in template_files():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if path.name == "prepare":
            target.chmod(0o755)
        written.append(path)
    _save_state(directory, {str(p): _sha(d) for p, d in template_files() if _managed(p)})
    return written


def plan_upgrade(directory: Path) -> list[Change]:
    """What ``upgrade`` would do with each managed file of the project in ``directory``."""
    recorded = _load_state(directory)
    changes = []
    for path, data in template_files():
        if not _managed(path):
            continue
        target = directory / path
        if not target.exists():
            changes.append(Change(path, "write"))
            continue
        current = _sha(target.read_bytes())
        if current == _sha(data):
            changes.append(Change(path, "same"))
        elif current == recorded.get(str(path)):
            changes.append(Change(path, "write"))
        else:
            changes.append(Change(path, "keep"))
    return changes


def upgrade_project(directory: Path) -> list[Change]:
    """Apply :func:`plan_upgrade`; the state file then records what deploybook wrote."""
    templates = dict(template_files())
    state = _load_state(directory)
    changes = plan_upgrade(directory)
    for change in changes:
        data = templates[change.path]
        target = directory / change.path
        if change.action == "write":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            state[str(change.path)] = _sha(data)
        elif change.action == "keep":
            target.with_name(target.name + ".new").write_bytes(data)
    _save_state(directory, state)
    return changes


def _load_state(directory: Path) -> dict[str, str]:
    file = directory / STATE_FILE
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except ValueError as e:
        raise DeploybookError(f"cannot read {STATE_FILE}: {e}", source=str(file)) from e
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _save_state(directory: Path, files: dict[str, str]) -> None:
    text = json.dumps({"deploybook": __version__, "files": dict(sorted(files.items()))}, indent=2) + "\n"
    (directory / STATE_FILE).write_text(text)


def _git_init(directory: Path) -> str:
    """Make the new project a git checkout with a first commit (a release records its commit)."""
    identity = ["-c", "user.name=deploybook init", "-c", "user.email=init@deploybook.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-qm", "deploybook init"]):
        done = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"git {' '.join(args)} failed ({done.stderr.strip()}); make the project a git checkout yourself"
    return "a git checkout on branch main with a first commit"


def _init(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    written = init_project(directory)
    git = _git_init(directory) if not args.no_git else "not a git checkout (--no-git)"
    print(f"deploybook {__version__}: wrote {len(written)} files into {directory}: {git}")
    print(f"next: cd {directory} && npm ci && pytest runbook --env local")
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    changes = plan_upgrade(directory) if args.check else upgrade_project(directory)
    pending = [c for c in changes if c.action != "same"]
    for change in pending:
        if change.action == "write":
            print(f"{'would update' if args.check else 'updated'} {change.path}")
        else:
            print(
                f"{change.path} was changed here: kept; the new version is {'' if args.check else 'in '}"
                f"{change.path}.new"
            )
    if not pending:
        print(f"runbook/ and checks/ are as deploybook {__version__} writes them")
    return 1 if args.check and pending else 0


def _bundle_verify(args: argparse.Namespace) -> int:
    print(f"OK: {verify_bundle(Path(args.archive))} files match SHA256SUMS in {args.archive}")
    return 0


def _bundle_create(args: argparse.Namespace) -> int:
    print(create_bundle(Path(args.run_dir), output=Path(args.output) if args.output else None))
    return 0


def _status(args: argparse.Namespace) -> int:
    from deploybook.config.environment import ENVIRONMENTS_DIR, known_environments, load_environment
    from deploybook.release.status import format_status, gather

    directory = Path(args.project) / ENVIRONMENTS_DIR
    names = args.env or known_environments(directory)
    rows = gather([load_environment(name, directory) for name in names])
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        print("\n".join(format_status(rows)))
    return 0 if all(r.verdict == "ok" for r in rows) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploybook", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--version", action="version", version=f"deploybook {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="write a new runbook project into DIR")
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--no-git", action="store_true", help="do not make DIR a git checkout")
    init.set_defaults(run=_init)
    upgrade = commands.add_parser("upgrade", help="bring runbook/ and checks/ up to this version")
    upgrade.add_argument("directory", metavar="DIR", nargs="?", default=".")
    upgrade.add_argument("--check", action="store_true", help="only say what would change; exit 1 if anything")
    upgrade.set_defaults(run=_upgrade)
    bundle = commands.add_parser("bundle", help="release bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    verify = bundle_commands.add_parser("verify", help="check ARCHIVE against its SHA256SUMS")
    verify.add_argument("archive", metavar="ARCHIVE")
    verify.set_defaults(run=_bundle_verify)
    create = bundle_commands.add_parser("create", help="pack a finished run folder (reports/ENV/RUN_ID)")
    create.add_argument("run_dir", metavar="RUN_DIR")
    create.add_argument("-o", "--output", metavar="ARCHIVE", help="where to write the archive")
    create.set_defaults(run=_bundle_create)
    status = commands.add_parser("status", help="what runs in each environment, and whether it matches its record")
    status.add_argument("--env", action="append", metavar="NAME", help="an environment (repeat; default: every one)")
    status.add_argument("--json", action="store_true", help="one JSON object per service, for machines")
    status.add_argument("--project", metavar="DIR", default=".", help="the runbook project (default: here)")
    status.set_defaults(run=_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``deploybook`` command; a deploybook error is one line on stderr and exit 1."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except DeploybookError as e:
        print(f"deploybook: {e.one_line()}", file=sys.stderr)
        return 1
