"""``python -m m3lung.cli``: the same command line as ``m3lung``."""

import sys

from m3lung.cli import main

sys.exit(main())
