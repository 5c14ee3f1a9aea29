"""Cluster access: connecting the way kubectl does, list and watch streams, the release lock.

Owns every call to the Kubernetes API that is not about one manifest or one check. May import
``deploybook.errors`` only; everything above it (manifests, verify, evidence, release) reaches
the cluster through here.
"""
