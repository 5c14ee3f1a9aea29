"""The three release stages for one service: build, push, apply.

Each stage is a function of the release and one service that returns what it produced
(:class:`Built`, :class:`Pushed`, :class:`Applied`) or :class:`~deploybook.release.pipeline.Skipped`
with the reason it does not apply; a failure raises a DeploybookError. They run in the
pipeline's thread of that service; the runbook's stage tests show their outcomes.

- build: the service's prepare command (it fills the build context with what git does not
  hold), then ``docker build`` with the OCI labels revision (the commit), source, version
  (the release tag) and created (the commit time, so an unchanged commit gives the same
  image and a rerun is a no-op). A deploy-only environment builds nothing.
- push: ``docker push`` of the release tag; the digest from the push must be the one the
  registry's v2 API gives for the tag. When the registry already holds the very image under
  the tag (its config digest is the image id just built), nothing is pushed. A deploy-only
  environment pushes nothing: it checks that the registry still serves each promoted digest.
  A dry run reads the digest the registry has for the tag, or the recorded one.
- apply: render the service's manifests with every image pinned to ``repo@sha256:`` (an image
  no service builds to the digest the preflight resolved), then
  server-side apply them (the preflight already dry-ran every object). The release-id
  annotation names the release that introduced what runs: an unchanged service keeps the
  id it had, so applying the same release again changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploybook.config.model import Service
from deploybook.errors import BuildError, RegistryError
from deploybook.images.build import build_image, oci_labels
from deploybook.images.copy import copy_image
from deploybook.images.credentials import RegistryAuth
from deploybook.images.push import push_image, push_refused
from deploybook.images.references import image_name, split_repository
from deploybook.manifests.apply import AppliedObject, apply_objects
from deploybook.manifests.load import load_manifests
from deploybook.manifests.render import containers_of, render_service, rendered_text
from deploybook.release.parts import ReleaseParts
from deploybook.release.pipeline import Skipped
from deploybook.sources.git import source_url
from deploybook.verify.workloads import Workload, workloads_in

__all__ = ["Applied", "Built", "Pushed", "apply", "build", "push"]

Say = Callable[[object], None]


@dataclass(frozen=True)
class Built:
    """A built image: its tag, id, labels, the command and the whole log."""

    repository: str
    tag: str
    image_id: str
    labels: Mapping[str, str]
    command: str
    log: str = field(repr=False)
    prepare: str = field(default="", repr=False)  # what the prepare command printed


@dataclass(frozen=True)
class Pushed:
    """The digest a service deploys, and where it came from (``source``)."""

    repository: str
    digest: str
    source: str  # push, registry had it, promoted, registry tag, recorded release
    tag: str | None = None
    question: str = ""  # what the registry was asked on its own
    answer: str = ""  # what it answered
    log: str = field(default="", repr=False)

    @property
    def ref(self) -> str:
        """``repository@sha256:...``: what the manifests are pinned to."""
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Applied:
    """One service's manifests as rendered and applied (or dry-run)."""

    manifest: str
    release_id: str
    rendered: str = field(repr=False)  # the exact YAML applied
    sha256: str = ""
    objects: tuple[AppliedObject, ...] = ()
    workloads: tuple[Workload, ...] = ()
    dry_run: bool = False


# --------------------------------------------------------------------------- build


def build(release: ReleaseParts, service: Service, say: Say) -> Built | Skipped:
    """Prepare the build context, then docker build it with the release's OCI labels."""
    ctx = release.context
    if ctx.promoting:
        return Skipped(f"{ctx.env.name} is deploy-only: it promotes the digests of {ctx.env.promote_from}")
    if ctx.skips_stage("build"):
        return Skipped(release.resumed_note("build"))
    assert ctx.git is not None, "a release that builds has the project's git state"
    code = _code_of(release, service)
    prepared = _prepare(service, code, release, say) if code.prepare else ""
    repository = ctx.env.image_repository(service)
    version = release.tag_of(service.name)
    tag = f"{repository}:{version}"
    labels = oci_labels(revision=code.revision, source=code.url, version=version, created=code.created)
    args = dict(service.build_args)
    command = " ".join(
        [
            f"docker build {code.context} -f {code.dockerfile} -t {tag}",
            *(shlex.quote(f"--build-arg={name}={value}") for name, value in args.items()),
            *([f"--target={shlex.quote(service.target)}"] if service.target else []),
        ]
    )
    result = build_image(
        release.clients.docker,
        context=code.context,
        dockerfile=code.dockerfile,
        tag=tag,
        labels=labels,
        build_args=args,
        target=service.target,
        on_line=say,
        registry=_registry_for_bases(release),
    )
    say(f"built {tag} ({result.image_id[:19]})")
    return Built(repository, version, result.image_id, labels, command, result.log, prepared)


def _registry_for_bases(release: ReleaseParts) -> tuple[str, RegistryAuth] | None:
    """The release's registry and credentials, for the bases a Dockerfile takes from it."""
    auth = release.clients.registry_auth
    return (release.context.env.registry.address, auth) if auth is not None else None


@dataclass(frozen=True)
class _Code:
    """Where a service's code is for its build, and what the image's labels say about it."""

    context: Path
    dockerfile: Path
    prepare: tuple[str, ...]
    cwd: Path  # where the prepare command runs
    revision: str
    url: str
    created: str


def _code_of(release: ReleaseParts, service: Service) -> _Code:
    """The service's git source as fetched for this run, else its folder of the project."""
    checkout, source = release.sources.get(service.name), service.source
    if checkout is not None and source is not None:
        context = checkout.directory / source.path
        return _Code(
            context,
            context / source.dockerfile,
            source.prepare,
            checkout.directory,
            checkout.commit,
            checkout.url,
            checkout.commit_time,
        )
    env, git = release.context.env, release.context.git
    assert git is not None
    return _Code(
        service.context,
        service.dockerfile,
        service.prepare,
        env.root,
        git.commit,
        source_url(env.root),
        git.commit_time,
    )


def _prepare(service: Service, code: _Code, release: ReleaseParts, say: Say) -> str:
    """Run the service's prepare command where its code is; its output is evidence."""
    env = release.context.env
    command = " ".join(code.prepare)
    say(command)
    try:
        done = subprocess.run(
            code.prepare, cwd=code.cwd, capture_output=True, text=True, timeout=env.timeouts.build, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(
            f"prepare command {command!r} could not run in {code.cwd}: {e}",
            stage="build",
            service=service.name,
            source=str(env.file),
        ) from e
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-10:])
        raise BuildError(
            f"prepare command {command!r} exited {done.returncode}:\n{tail}",
            stage="build",
            service=service.name,
            source=str(env.file),
            hint=f"run it by hand in {code.cwd} and fix what it reports",
        )
    return f"$ {command}\n{output}"


# --------------------------------------------------------------------------- push


def push(release: ReleaseParts, service: Service, say: Say) -> Pushed | Skipped:
    """Push the built image; the registry's own answer must give the push's digest."""
    ctx = release.context
    if ctx.promoting:
        return _confirm_promoted(release, service, say)
    if ctx.skips_stage("push"):
        return Skipped(release.resumed_note("push"))
    if ctx.options.dry_run:
        return _digest_without_push(release, service, say)
    built = release.outcome(service.name, "build")
    image_id = built.image_id if isinstance(built, Built) else _recorded_image_id(release, service)
    tag = built.tag if isinstance(built, Built) else release.tag_of(service.name)
    repository = ctx.env.image_repository(service)
    registry = release.clients.registry
    path = split_repository(repository)[1]
    try:
        held = registry.image_config(path, tag)
    except RegistryError as e:
        raise push_refused(e, repository, tag) from e
    if held is not None and held[1] == image_id:  # the registry has this very image under the tag
        say(f"{repository}:{tag} already holds image {image_id[:19]}: nothing to push")
        question = f"GET /v2/{path}/manifests/{tag} (config digest {image_id[:19]}...)"
        return Pushed(repository, held[0], "registry had it", tag, question=question, answer=held[0])
    pushed = push_image(
        release.clients.docker,
        repository=repository,
        tag=tag,
        auth=release.clients.registry_auth,
        on_line=say,
        source=image_id,
        registry=registry,
    )
    confirmed = registry.manifest_digest(path, tag)
    if confirmed != pushed.digest:
        raise RegistryError(
            f"push said {pushed.digest}, the registry says {confirmed} for {repository}:{tag}",
            stage="push",
            service=service.name,
            source=registry.address,
        )
    say(f"pushed {pushed.ref}")
    return Pushed(
        repository,
        pushed.digest,
        "push",
        tag,
        question=f"HEAD /v2/{path}/manifests/{tag}",
        answer=confirmed,
        log=pushed.log,
    )


def _recorded_image_id(release: ReleaseParts, service: Service) -> str:
    recorded = release.context.recorded(service.name)
    if recorded is None or not recorded.image_id:
        raise BuildError(
            f"no built image of {service.name} to push: the build stage did not run in this release",
            stage="push",
            service=service.name,
            hint="run the build stage too, or resume with --release of a release that built it",
        )
    return recorded.image_id


def _confirm_promoted(release: ReleaseParts, service: Service, say: Say) -> Pushed:
    """The promoted digest in this environment's registry: copied there by digest when the
    source environment keeps its images elsewhere, and confirmed by the registry's answer."""
    recorded = release.context.recorded(service.name)
    assert recorded is not None and recorded.digest, f"no promoted digest for {service.name}"
    repository = release.context.env.image_repository(service)
    path = split_repository(repository)[1]
    copied, origin = "", release.clients.promoted_repository(service.name)
    if origin != repository:
        source_path = split_repository(origin)[1]
        tags = (recorded.tag,) if recorded.tag else ()
        result = copy_image(
            release.clients.source_registry, source_path, release.clients.registry, path, recorded.digest, tags=tags
        )
        copied = result.summary()
        say(f"copied {copied}")
    served = release.clients.registry.manifest_digest(path, recorded.digest)
    if served != recorded.digest:
        raise RegistryError(
            f"registry serves {served} for {repository}@{recorded.digest}",
            stage="push",
            service=service.name,
            source=release.clients.registry.address,
        )
    say(f"promoting {repository}@{recorded.digest}")
    return Pushed(
        repository,
        recorded.digest,
        f"copied by digest from {origin}" if copied else "promoted",
        recorded.tag,
        question=f"HEAD /v2/{path}/manifests/{recorded.digest}",
        answer=served,
        log=copied,
    )


def _digest_without_push(release: ReleaseParts, service: Service, say: Say) -> Pushed | Skipped:
    ctx = release.context
    repository, tag = ctx.env.image_repository(service), release.tag_of(service.name)
    path = split_repository(repository)[1]
    digest: str | None
    try:
        digest, source = release.clients.registry.manifest_digest(path, tag), "registry tag"
    except RegistryError:
        recorded = ctx.recorded(service.name) or release.previous_service(service.name)
        digest, source = (recorded.digest if recorded else None), "recorded release"
    if not digest:
        return Skipped(
            f"dry-run: {repository}:{tag} is not in the registry and no release records "
            f"{service.name}; nothing to render"
        )
    say(f"dry-run: would deploy {repository}@{digest} (from the {source})")
    return Pushed(repository, digest, source, tag)


# --------------------------------------------------------------------------- apply


def apply(release: ReleaseParts, service: Service, say: Say) -> Applied:
    """Render with every image pinned, then server-side apply (or dry-run)."""
    ctx = release.context
    manifests = load_manifests(release.manifest_dir / service.manifest)
    images = {image_name(str(c.get("image", ""))) for m in manifests for c in containers_of(m.doc)}
    refs = release.refs_for(images)
    pins = {p.image.written: p.image.pinned for p in release.pinned_images.get(service.name, ())}
    release_id, objs, text = _render_keeping_release_id(release, service, manifests, refs, pins)
    release.ensure_pull_secret()
    applied = apply_objects(release.clients.kube, objs, dry_run=ctx.options.dry_run, validated=True)
    for obj in applied:
        say(f"{obj.kind}/{obj.name}: {obj.action}")
    return Applied(
        service.manifest,
        release_id,
        text,
        hashlib.sha256(text.encode()).hexdigest(),
        tuple(applied),
        tuple(_with_generations(workloads_in(objs), applied)),
        ctx.options.dry_run,
    )


def _with_generations(workloads: list[Workload], applied: list[AppliedObject]) -> list[Workload]:
    """The workloads with the generation and uid the apply returned (a wait ignores older objects)."""
    found = {(a.kind, a.name): a for a in applied}
    return [
        dataclasses.replace(w, generation=a.generation, uid=a.uid or "") if (a := found.get((w.kind, w.name))) else w
        for w in workloads
    ]


def _render_keeping_release_id(
    release: ReleaseParts, service: Service, manifests: list[Any], refs: Mapping[str, str], pins: Mapping[str, str]
) -> tuple[str, list[dict[str, Any]], str]:
    """Render with the previous release id when that gives the very same objects, else this run's."""
    ctx = release.context
    before = release.previous_service(service.name)
    candidates = [ctx.run_id]
    if before and before.deployed_by and f"{before.image}@{before.digest}" == refs.get(service.image):
        candidates.insert(0, before.deployed_by)
    for release_id in candidates:
        objs = render_service(
            service,
            ctx.env,
            manifests,
            refs=refs,
            pull_secret=release.pull_secret,
            release_id=release_id,
            git_sha=release.source_commit(service.name),
            pins=pins,
        )
        text = rendered_text(objs)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if release_id == ctx.run_id or (before and before.manifests.get(service.manifest) == digest):
            return release_id, objs, text
    raise AssertionError("unreachable: the run id is always a candidate")
