"""The ``executus`` command line (click + rich): the top floor, which composes everything below.

Nothing in ``executus``'s core or runtime, ``store`` or ``replay`` imports this package; the
layering contract in ``.importlinter`` holds that line in CI.
"""

from executus.cli._app import cli, main

__all__ = ["cli", "main"]
