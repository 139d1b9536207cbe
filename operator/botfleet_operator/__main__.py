"""``python -m botfleet_operator``: the same as ``botfleet operator``."""

import sys

from botfleet_operator import main

sys.exit(main())
