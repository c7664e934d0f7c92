"""``python -m rtreplay``: the same as the ``rtreplay`` command."""

import sys

from .cli import main

sys.exit(main())
