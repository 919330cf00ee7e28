"""``python -m l2i_lab …`` = the ``l2i`` command (for an installed copy; in a checkout: ``python -m experiments.cli``)."""

import sys

from l2i_lab import main

sys.exit(main())
