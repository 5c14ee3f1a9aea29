"""The pytest layer: options, hooks, hook specifications, fixtures, ordering, terminal output.

Registered through the ``pytest11`` entry point ``deploybook``. The only place that knows
pytest; it drives the release engine (``deploybook.release``) and shows what it did.
"""
