"""What the identity of a context may do in a namespace, asked of the API server itself.

A release writes in one namespace only. Before anything is written, the API server is asked
(``SelfSubjectAccessReview``, which every authenticated user may send) whether this identity
may create and change what a release writes there; a context pointed at another
environment's namespace is then refused with one error naming the context and the
namespace, before the lock, the pull secret or any object.
"""

from __future__ import annotations

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from deploybook.cluster.connect import KubeClients, api_errors
from deploybook.errors import ClusterError, PolicyError

__all__ = ["RELEASE_WRITES", "allowed", "require_write_access"]

RELEASE_WRITES: tuple[tuple[str, str, str], ...] = (
    ("create", "coordination.k8s.io", "leases"),  # the release lock
    ("patch", "apps", "deployments"),  # the workloads
    ("create", "", "configmaps"),  # the release record
)
"""(verb, API group, resource) a release must be allowed in its namespace."""


def allowed(kube: KubeClients, verb: str, group: str, resource: str, namespace: str) -> bool:
    """True when the context's identity may ``verb`` ``resource`` in ``namespace``."""
    review = k8s.V1SelfSubjectAccessReview(
        spec=k8s.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.V1ResourceAttributes(verb=verb, group=group, resource=resource, namespace=namespace)
        )
    )
    with api_errors(kube.where, f"asking whether the context may {verb} {resource} in {namespace}"):
        try:
            answer = k8s.AuthorizationV1Api(kube.api_client).create_self_subject_access_review(review)
        except ApiException as e:
            raise ClusterError(
                f"could not ask the API server what this context may do: {e.status} {e.reason}",
                source=kube.where,
            ) from e
    return bool(answer.status and answer.status.allowed)


def require_write_access(kube: KubeClients, namespace: str, *, environment: str) -> None:
    """PolicyError unless the context may write what a release writes in ``namespace``."""
    denied = [
        f"{verb} {resource}"
        for verb, group, resource in RELEASE_WRITES
        if not allowed(kube, verb, group, resource, namespace)
    ]
    if denied:
        raise PolicyError(
            f"context {kube.context or '(in-cluster)'} may not write in namespace {namespace} "
            f"(denied: {', '.join(denied)}); nothing was applied",
            source=kube.where,
            hint=f"release {environment} with the context made for namespace {namespace}, "
            "or fix cluster.context / cluster.namespace in the environment file",
        )
