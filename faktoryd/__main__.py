"""``python -m faktoryd``: the same as the ``faktoryd`` command."""

import sys

from .cli import main

sys.exit(main())
