"""This repository's own conftest: deploybook's plugin loads through its ``pytest11`` entry
point once the package is installed (``make venv`` installs it in editable mode)."""
