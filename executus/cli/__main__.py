"""``python -m executus.cli``: the same as the ``executus`` console script."""

from executus.cli import main

main()
