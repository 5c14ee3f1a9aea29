"""Configuration: the app definition and the environment files, loaded into frozen objects.

Every value is validated here, before anything touches a registry or a cluster, and a bad
one is reported with file, line and key. May import ``deploybook.errors`` only.
"""
