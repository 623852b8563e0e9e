"""``python -m semi_usb.report RUN_DIR ... --out DIR``: the same as ``semilearn report``."""
import sys

from . import main

sys.exit(main())
