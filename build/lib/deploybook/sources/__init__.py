"""Sources: what git says about a checkout, and repositories fetched at a ref.

May import ``deploybook.errors`` and ``deploybook.config``.
"""
