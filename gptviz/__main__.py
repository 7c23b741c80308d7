"""Entry point for ``python -m gptviz``."""

import sys

from gptviz.cli import main

sys.exit(main())
