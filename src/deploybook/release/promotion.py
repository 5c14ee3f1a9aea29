"""What a deploy-only environment promotes, and the proof that it passed where it came from.

Production takes the digests of a release that passed on test: the one test's record in its
cluster names (no ``--release``), or the one a ``--release`` file names. Either way the
record is a claim until it is proven. The proof is test's own history of passed releases
(``passed-history.json`` of its ConfigMap), read with test's read-only context: only test's
deploying identity can write it, and neither the author of a release.json nor production's
identity can. Every digest promoted must be the very digest that release ran on test when it
passed; otherwise the run stops here, before the lock, the pull secret or any object.

A signature made by the test release would prove the same without the cluster, but needs a
key kept by test and a trust root in prod; the record in test's namespace is already
guarded by RBAC, and reading it is what the checks do anyway.
"""

from __future__ import annotations

import dataclasses

from deploybook.cluster.connect import KubeClients
from deploybook.config.model import Environment
from deploybook.errors import ClusterError, PolicyError
from deploybook.evidence.record import PassedRelease, ReleaseRecord
from deploybook.evidence.record_store import CONFIGMAP_NAME, load_from_cluster, load_passed_history
from deploybook.images.resolve import ResolvedImage
from deploybook.release import policy
from deploybook.release.clients import connect_environment
from deploybook.release.parts import ReleaseParts

__all__ = ["PromotedPins", "settle_promotion"]


def settle_promotion(release: ReleaseParts) -> None:
    """Read the source environment's record, check the claim, prove every digest; the run
    then builds on the proven record (with the sources the source environment recorded)."""
    ctx, env = release.context, release.env
    if not ctx.promoting:
        return
    source_env = release.clients.source_environment
    kube = _read_only(source_env)
    namespace = source_env.cluster.namespace
    where = f"{source_env.name}'s record in configmap {namespace}/{CONFIGMAP_NAME}, read with context {kube.context}"
    claim = ctx.source_record or load_from_cluster(kube, namespace)
    policy.check_promotion(env, claim, confirmed=ctx.options.confirm_prod)
    assert claim is not None  # check_promotion refuses None
    proof = policy.check_proven(env, claim, load_passed_history(kube, namespace), where=where)
    release.context = dataclasses.replace(ctx, source_record=_with_sources(claim, proof), promotion_proof=where)
    release.say(f"promoting release {claim.run_id} of {source_env.name}: every digest proven by {where}")


def _read_only(source_env: Environment) -> KubeClients:
    """The source environment's cluster through its read-only context (else its own)."""
    try:
        return connect_environment(source_env, source_env.cluster.read_only_context)
    except ClusterError as e:
        raise PolicyError(
            f"the promotion cannot be proven: {source_env.name}'s cluster did not answer ({e.message})",
            source=e.source,
            hint=f"{source_env.name}'s read-only context (cluster.read_only_context in {source_env.file}) must "
            "reach its cluster; nothing is promoted unproven",
        ) from e


def _with_sources(claim: ReleaseRecord, proof: PassedRelease) -> ReleaseRecord:
    """The claim, with each service's source and third-party images as the source environment
    recorded them (the claim's own pins are not trusted: a file's author could have written them)."""
    services = {
        name: dataclasses.replace(
            svc,
            source=dict(proof.sources.get(name) or svc.source),
            third_party=tuple(proof.third_party.get(name) or ()),
        )
        for name, svc in claim.services.items()
    }
    return dataclasses.replace(claim, services=services)


class PromotedPins:
    """Resolves an image no service builds to the digest the promoted release ran it at.

    A promotion runs what passed where it came from: a vendor tag is not asked of its registry
    again (it may have moved since), and an image that release did not run is refused.
    """

    def __init__(self, record: ReleaseRecord) -> None:
        self.run_id = record.run_id
        self.pins = {e["written"]: e for s in record.services.values() for e in s.third_party if e.get("written")}

    def resolve(self, image: str) -> ResolvedImage:
        """The image as the promoted release pinned it; PolicyError when it ran no such image."""
        entry = self.pins.get(image)
        if entry is None:
            raise PolicyError(
                f"release {self.run_id} being promoted ran no {image!r}: a promotion runs only the images "
                "that passed; release the manifests with this image where the promotion comes from first"
            )
        return ResolvedImage(
            written=image,
            reference=entry.get("reference", image),
            registry=entry.get("registry", ""),
            digest=entry["digest"],
            pinned=entry["pinned"],
            how=f"promoted from release {self.run_id}",
        )
