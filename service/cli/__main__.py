"""``python -m service.cli``: the same as the ``robustlab`` entry point."""

from service.entry import main

main()
