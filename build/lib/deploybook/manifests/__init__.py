"""Manifests: where they come from, loading them safely, rendering them, diff and apply.

May import ``deploybook.errors``, ``deploybook.config``, ``deploybook.cluster`` and
``deploybook.sources`` (manifests kept in git).
"""
