"""``python -m swapcore``: the same as the ``swapcore`` command."""

import sys

from swapcore.cli import main

sys.exit(main())
