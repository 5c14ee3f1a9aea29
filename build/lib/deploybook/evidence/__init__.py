"""Release evidence: the release record (file and ConfigMap), the Allure report, the bundle.

May import ``deploybook.errors``, ``deploybook.config`` and ``deploybook.cluster`` (the
record is kept in the cluster); never the release engine or the pytest layer.
"""
