"""``python3 -m core.cli ...``: the same as the ``circuitboard`` console script."""

import sys

from core.cli import main

sys.exit(main())
