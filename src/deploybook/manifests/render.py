"""Manifests rendered for one release: images pinned to digests, namespace, labels, pull secret.

Rendering is pure: it takes the documents as written in the repository and
returns new dictionaries in which

* every container and initContainer image written as a bare name (``dx29/gateway``,
  maybe with a tag) is pinned to the digest the push stage recorded
  (``registry/dx29/gateway@sha256:...``); every other image (a sidecar, a vendor image) to
  the digest its registry served when the preflight resolved it (``pins``, see
  ``deploybook.images.resolve``),
* the release stays in its namespace: a cluster-scoped object, or an object naming another
  namespace, is refused unless the environment's ``confinement`` names it; namespaced objects
  carry the environment's namespace (or the allowed one they name),
* objects carry the release labels and annotations; pod templates carry the
  labels (never touching selector keys) and the annotations,
* pod specs name the image pull secret,
* per-workload replica overrides are applied,
* the metadata only the API server sets (``uid``, ``resourceVersion``, ``managedFields`` ...,
  in a manifest saved with ``kubectl get -o yaml``) is left out; ``status`` stays (the API
  server ignores it where a kind has a status subresource, and it is the object's own where a
  custom kind has none).

Every problem raises :class:`~deploybook.errors.RenderError` naming the file,
the document and what to do, before anything reaches a cluster.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import yaml

from deploybook.config.model import Confinement, Environment, Service
from deploybook.errors import RenderError
from deploybook.images.references import image_name
from deploybook.manifests.load import Manifest
from deploybook.manifests.redact import redact_objects

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "deploybook"
ENVIRONMENT_LABEL = "deploybook.io/environment"
RELEASE_LABEL = "deploybook.io/release"
RELEASE_ID_ANNOTATION = "deploybook.io/release-id"
GIT_SHA_ANNOTATION = "deploybook.io/git-sha"

# Kinds without a namespace; everything else gets the environment's namespace.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CSIDriver",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)
_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})  # kinds with spec.replicas
STRICT = Confinement()  # nothing outside the namespace
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def render_manifests(
    manifests: Iterable[Manifest],
    *,
    images: Mapping[str, str],
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    pull_secret: str | None,
    replicas: Mapping[str, int],
    confinement: Confinement = STRICT,
    pins: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Render manifests for one release; the inputs are left untouched.

    ``images`` maps an image name as written in the manifests (``dx29/gateway``)
    to its pinned reference (``localhost:5000/dx29/gateway@sha256:...``); ``pins`` maps
    any other image exactly as written (``redis:7``) to its pinned reference.
    ``labels`` and ``annotations`` are added to every object and pod template,
    together with ``app.kubernetes.io/managed-by: deploybook``. ``replicas`` maps a
    workload to a replica count; the key is its ``metadata.name``, its
    ``app.kubernetes.io/name`` label, or the stem of its manifest file (``gateway``
    for ``gateway.yaml``, so a service name works when the file is named after it).
    The environment decides where a release goes: a manifest naming another namespace, or
    holding a cluster-scoped object, is refused unless ``confinement`` allows it by name.
    """
    all_labels = {**labels, MANAGED_BY_LABEL: MANAGED_BY}
    _check_labels(all_labels)
    _check_annotations(annotations)
    _check_pinned(images)
    _check_pinned(pins or {})
    manifests = list(manifests)
    _check_replica_keys(manifests, replicas)
    rendered = []
    seen: dict[tuple[str, str | None, str], Manifest] = {}
    for manifest in manifests:
        obj = copy.deepcopy(manifest.doc)
        _drop_server_fields(obj)
        target = _confined_namespace(manifest, namespace, confinement)
        key = (str(obj["kind"]), target, str(obj["metadata"]["name"]))
        if (first := seen.setdefault(key, manifest)) is not manifest:
            raise RenderError(
                f"{manifest.title} is in the manifests twice: {first.where} and here; applied in turn, the "
                "second would overwrite the first",
                source=manifest.where,
                hint="keep one of them",
            )
        _set_metadata(obj, target, all_labels, annotations)
        for pod_spec in _pod_specs(obj):
            _pin_images(pod_spec, images, pins or {}, manifest)
            if pull_secret:
                _add_pull_secret(pod_spec, pull_secret)
        _label_pod_template(obj, all_labels, annotations)
        _set_replicas(obj, manifest, replicas)
        rendered.append(obj)
    return rendered


# The metadata the API server sets on a stored object; a manifest saved with `kubectl get -o
# yaml` has it. None is desired state, and sent back it fails an apply (managedFields must be
# nil, a stale resourceVersion conflicts), so it is left out of what is applied.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def _drop_server_fields(obj: dict[str, Any]) -> None:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in _SERVER_METADATA:
            metadata.pop(key, None)


def _check_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise RenderError(
                f"label {key}={value!r} is not a valid Kubernetes label value "
                "(at most 63 characters: letters, digits, '-', '_', '.'; alphanumeric at both ends)"
            )


def _check_annotations(annotations: Mapping[str, str]) -> None:
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise RenderError(f"annotation {key}={value!r} must be a string")


def _check_pinned(images: Mapping[str, str]) -> None:
    for name, ref in images.items():
        if "@sha256:" not in ref:
            raise RenderError(
                f"image {name!r} maps to {ref!r}, which is not pinned to a digest "
                "(expected registry/repository@sha256:...)",
                hint="render with the digests the push stage recorded",
            )


def _check_replica_keys(manifests: list[Manifest], replicas: Mapping[str, int]) -> None:
    known = {key for m in manifests if m.doc["kind"] in SCALABLE_KINDS for key in _workload_keys(m)}
    for key, count in replicas.items():
        if key not in known:
            raise RenderError(
                f"replicas override {key!r} matches no Deployment or StatefulSet "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise RenderError(f"replicas override {key!r}: {count!r} is not a non-negative integer")


def _workload_keys(manifest: Manifest) -> set[str]:
    """Names a replicas override may use: workload name, app name label, manifest file stem."""
    metadata = manifest.doc["metadata"]
    keys = {metadata["name"], manifest.source.stem}
    app_name = (metadata.get("labels") or {}).get("app.kubernetes.io/name")
    if app_name:
        keys.add(app_name)
    return keys


def _confined_namespace(manifest: Manifest, namespace: str, confinement: Confinement) -> str | None:
    """The namespace the object goes to (None: cluster-scoped), or RenderError if it may not."""
    kind, metadata = manifest.doc["kind"], manifest.doc["metadata"]
    name = f"{kind}/{metadata['name']}"
    if name in confinement.cluster_scoped or (kind == "Namespace" and metadata["name"] == namespace):
        return None
    if kind in CLUSTER_SCOPED_KINDS:
        raise RenderError(
            f"{name} is cluster-scoped: a release of this environment stays in namespace {namespace}",
            source=manifest.where,
            hint=f"remove it from the manifests, or allow it by name: confinement: {{cluster_scoped: [{name}]}} "
            "in the environment file",
        )
    own = metadata.get("namespace")
    if own in (None, "", namespace):
        return namespace
    if own in confinement.namespaces:
        return str(own)
    raise RenderError(
        f"{name} names namespace {own!r}: a release of this environment stays in namespace {namespace}",
        source=manifest.where,
        hint=f"remove metadata.namespace, or allow it by name: confinement: {{namespaces: [{own}]}} "
        "in the environment file",
    )


def _set_metadata(
    obj: dict[str, Any], namespace: str | None, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> None:
    metadata = obj["metadata"]
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    if annotations:
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}


def _pod_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj["kind"] in _TEMPLATE_KINDS:
        template = spec.get("template")
    elif obj["kind"] == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    else:
        return None
    return template if isinstance(template, dict) else None


def _pod_specs(obj: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec") if obj["kind"] == "Pod" else (_pod_template(obj) or {}).get("spec")
    if isinstance(spec, dict):
        yield spec


def containers_of(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every container and initContainer of an object's pod spec (none for other kinds)."""
    return [
        c
        for spec in _pod_specs(obj)
        for field in ("initContainers", "containers")
        for c in spec.get(field) or []
        if isinstance(c, dict)
    ]


def unbuilt_images(manifest: Manifest, built: Iterable[str]) -> list[tuple[str, str]]:
    """``(container, image)`` of every container whose image no service builds (``built``
    holds the service images' names): what the preflight resolves to a digest."""
    names = set(built)
    found = []
    for spec in _pod_specs(manifest.doc):
        for field in ("initContainers", "containers"):
            for container in spec.get(field) or []:
                image = container.get("image") if isinstance(container, dict) else None
                if isinstance(image, str) and image and image_name(image) not in names:
                    found.append((str(container.get("name", "?")), image))
    return found


def _pin_images(
    pod_spec: dict[str, Any], images: Mapping[str, str], pins: Mapping[str, str], manifest: Manifest
) -> None:
    for field in ("initContainers", "containers"):
        for container in pod_spec.get(field) or []:
            image = container.get("image")
            if not isinstance(image, str) or not image:
                raise RenderError(
                    f"{manifest.title} {field[:-1]} {container.get('name', '?')!r} has no image",
                    source=manifest.where,
                )
            name = image_name(image)
            if name in images:
                container["image"] = images[name]
            elif image in pins:
                container["image"] = pins[image]
            else:
                raise RenderError(
                    f"{manifest.title} {field[:-1]} {container.get('name', '?')!r} uses image "
                    f"{image!r}, which no service of this environment builds and which was not resolved "
                    f"to a digest (built: {', '.join(sorted(images)) or 'none'})",
                    source=manifest.where,
                    hint="fix the image in the manifest, or add a service that builds it",
                )


def _add_pull_secret(pod_spec: dict[str, Any], name: str) -> None:
    secrets = list(pod_spec.get("imagePullSecrets") or [])
    if not any(s.get("name") == name for s in secrets):
        secrets.append({"name": name})
    pod_spec["imagePullSecrets"] = secrets


def _label_pod_template(obj: dict[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    template = _pod_template(obj)
    if template is None:
        return
    metadata = template.setdefault("metadata", {})
    template_labels = dict(metadata.get("labels") or {})
    # A selector key keeps the manifest's value: changing it would orphan the
    # running pods (and a Deployment's selector is immutable).
    selector = _selector_labels(obj)
    for key, value in labels.items():
        if key not in selector:
            template_labels[key] = value
    metadata["labels"] = template_labels
    if annotations:
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}


def _selector_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    selector = (obj.get("spec") or {}).get("selector") or {}
    match_labels = selector.get("matchLabels") or {}
    keys = dict(match_labels)
    for expression in selector.get("matchExpressions") or []:
        keys.setdefault(expression.get("key", ""), "")
    return keys


def _set_replicas(obj: dict[str, Any], manifest: Manifest, replicas: Mapping[str, int]) -> None:
    if obj["kind"] not in SCALABLE_KINDS:
        return
    # The most specific name wins: workload name, then app name label, then file stem.
    metadata = manifest.doc["metadata"]
    candidates = [metadata["name"], (metadata.get("labels") or {}).get("app.kubernetes.io/name"), manifest.source.stem]
    for key in candidates:
        if key in replicas:
            obj.setdefault("spec", {})["replicas"] = replicas[key]
            return


def render_service(
    service: Service,
    environment: Environment,
    manifests: list[Manifest],
    *,
    refs: Mapping[str, str],
    pull_secret: str | None,
    release_id: str,
    git_sha: str,
    pins: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Render one service's manifests for a release: ``refs`` maps service image -> pinned ref,
    ``pins`` an image no service builds, as written, -> the pinned ref it was resolved to.

    The apply stage, the preflight and a rollback all render through here, so a rollback
    reproduces exactly what an apply of the restored release did.
    """
    replicas = {}
    if service.replicas is not None:
        replicas = {m.doc["metadata"]["name"]: service.replicas for m in manifests if m.doc["kind"] in SCALABLE_KINDS}
    # A service's image written with the environment's registry is the service's image too.
    images = dict(refs)
    for svc in environment.services:
        if svc.image in refs:
            images.update(dict.fromkeys(environment.written_names(svc), refs[svc.image]))
    return render_manifests(
        manifests,
        images=images,
        namespace=environment.cluster.namespace,
        labels={ENVIRONMENT_LABEL: environment.name},
        annotations={RELEASE_ID_ANNOTATION: release_id, GIT_SHA_ANNOTATION: git_sha},
        pull_secret=pull_secret,
        replicas=replicas,
        confinement=environment.confinement,
        pins=pins,
    )


def rendered_text(objs: list[dict[str, Any]]) -> str:
    """The YAML text the evidence keeps, and whose sha256 the release record keeps per manifest.

    A Secret's values are markers with their sha256 (``deploybook.manifests.redact``): the
    text shows that the Secret was applied and which values changed, never a value.
    """
    return yaml.safe_dump_all(redact_objects(objs), sort_keys=True)
