"""The release engine: run state, policy, preflight, the stages per service, record, rollback.

Knows nothing of pytest. May import every subpackage below it: config, sources, cluster,
images, manifests, verify, evidence.
"""
