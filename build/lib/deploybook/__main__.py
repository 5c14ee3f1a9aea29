"""``python -m deploybook``: the ``deploybook`` command (see :mod:`deploybook.cli`)."""

import sys

from deploybook.cli import main

sys.exit(main())
