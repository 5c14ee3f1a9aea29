"""The requests session of the release's HTTP clients (the registry, external endpoints).

A plain session reads ``os.environ`` on every request, which a thread must not do while pytest
changes it (see `deploybook.environ`); this one reads a copy taken when it was made. Its own
module so that what imports `deploybook.environ` at collection does not import requests.
"""

from __future__ import annotations

from typing import Any

import requests

from deploybook.environ import ca_bundle, proxies_for, snapshot

__all__ = ["SnapshotSession"]


class SnapshotSession(requests.Session):
    """A requests session that looks for proxies and the CA bundle in a copy of the environment
    taken when it was made, never in ``os.environ`` itself (nor in ``~/.netrc``)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.environ = snapshot()

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        """What requests does with the environment when it trusts it, from the copy."""
        proxies = {**proxies_for(str(url), self.environ), **(proxies or {})}
        if verify is True or verify is None:
            bundle = ca_bundle(self.environ)
            verify = verify if bundle is True else bundle
        return super().merge_environment_settings(url, proxies, stream, verify, cert)
