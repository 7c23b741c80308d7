"""Entry point for ``python -m gptviz``."""

import sys

from .cli import main

sys.exit(main())
