"""Registers the deploybook plugin for this repository (options, fixtures, stage ordering)."""

pytest_plugins = ["deploybook.plugin"]
