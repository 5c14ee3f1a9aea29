"""The deploybook pytest plugin's entry: what every pytest run loads where deploybook is installed.

Registered through the ``pytest11`` entry point ``deploybook``, so a team's own unit tests
load it too: it imports pytest, the hook specifications and the option declarations, nothing
more. A run that collects ``runbook/`` (a release: the stages, then the checks) or ``checks/``
(the checks alone, read-only) needs ``--env``; for it, ``pytest_configure`` loads and
registers the run's hooks and fixtures (``deploybook.plugin.run_hooks``). Any other run is
left alone, so a project's own tests never deploy anything.

    pytest_addoption    the options (deploybook.plugin.options)
    pytest_addhooks     the hooks a team implements (deploybook.plugin.hookspecs)
    pytest_configure    markers; for a runbook or checks run, deploybook.plugin.run_hooks
"""

from __future__ import annotations

import pytest

from deploybook.plugin import hookspecs
from deploybook.plugin.options import add_options, release_mode
from deploybook.release.names import CHECKS, STAGES


def pytest_addoption(parser: pytest.Parser) -> None:
    """All deploybook options, in one group."""
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The hooks a team can implement to extend a release."""
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Declare markers; for a runbook or checks run load the run's hooks, which make its context."""
    config.addinivalue_line("markers", "stage(name): the release stage a runbook test shows: " + ", ".join(STAGES))
    config.addinivalue_line("markers", "check(name): the built-in check a test shows: " + ", ".join(CHECKS))
    mode = release_mode(config)
    if mode is None:
        return
    # Imported here: the engine's modules (config, sources, evidence) are for these runs only.
    from deploybook.plugin import run_hooks

    config.pluginmanager.register(run_hooks, "deploybook-run")
    run_hooks.configure(config, mode)
