"""``python -m botfleet.operator``: the same as ``botfleet operator``."""

import sys

from botfleet.operator import main

sys.exit(main())
