"""One verdict for any kind a release holds: the one place that chooses whose rules judge it.

- Deployment, DaemonSet, Job: ``deploybook.verify.workload_status`` (``kubectl rollout status``);
- StatefulSet: the kstatus rule, which knows RollingUpdate with a partition (only ordinals
  >= partition must be updated) and OnDelete (the controller replaces no pod: done once the
  spec is observed and every pod is ready, the message counting the pods on old revisions);
- CronJob: accepted once stored and not being deleted; no run is waited for;
- any other kind (custom resources included): the kstatus generic rules
  (observedGeneration, Reconciling, Stalled, Ready), see ``deploybook.verify.kstatus``.

Pure: API JSON in, a ``Verdict`` out. Listed items carry no ``kind``, so the kind is passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploybook.verify.kstatus import cronjob_verdict, generic_verdict, statefulset_verdict
from deploybook.verify.workload_status import WORKLOAD_RULES, Verdict, evaluate_workload

__all__ = ["judge"]


def judge(kind: str, obj: Mapping[str, Any]) -> Verdict:
    """The verdict on ``obj``, an object of ``kind`` as the API returns it: done, waiting, or failed."""
    if kind in WORKLOAD_RULES:
        return evaluate_workload(kind, obj)
    if kind == "StatefulSet":
        return statefulset_verdict(obj)
    if kind == "CronJob":
        return cronjob_verdict(obj)
    return generic_verdict({"kind": kind, **obj})
