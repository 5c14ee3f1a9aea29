"""Label selectors: a workload's ``spec.selector`` as a selector string, and matching labels.

Pure functions over API JSON, shared by the watches (which list by selector) and the rules
that decide which pods and Services belong to a workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["label_selector", "selector_matches"]


def label_selector(obj: Mapping[str, Any]) -> str:
    """Turn a workload's spec.selector into a label selector string."""
    sel = obj.get("spec", {}).get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or ():
        key, op, values = (
            expr["key"],
            expr["operator"],
            ",".join(expr.get("values") or ()),
        )
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[op]
        )
    return ",".join(terms)


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """True when `labels` satisfy a LabelSelector (matchLabels and matchExpressions).

    An empty selector matches nothing, as for a workload's pods (the API rejects it there).
    """
    match = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or ()
    if not match and not exprs:
        return False
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in exprs:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or ())
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True
