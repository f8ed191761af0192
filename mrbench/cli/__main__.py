"""``python -m mrbench.cli``: the ``mrbench`` command without its installed script."""

import sys

from mrbench.cli import main

sys.exit(main())
