"""``python -m service.cli``: the same as the ``robustlab`` entry point."""

import sys

from service.cli.app import main

sys.exit(main())
