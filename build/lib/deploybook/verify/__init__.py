"""Verification: rollout, endpoints, running digests, inside the containers.

The rules that judge a workload or a pod are pure functions (``workload_status``); the rest
only reads the cluster (list, watch, get, the service proxy, exec). May import
``deploybook.errors``, ``deploybook.config``, ``deploybook.cluster`` and ``deploybook.images``.
"""
