"""``python -m imac.cli``: the same as the ``imac`` command."""

from imac.cli.app import main

main()
