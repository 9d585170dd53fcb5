"""The command line (``imac``): the only package with typer code, one module per command group
(:mod:`.runs`, :mod:`.nn`, :mod:`.hardware`, :mod:`.system`, :mod:`.design`, :mod:`.bench`), the
shared options in :mod:`.options`, the application and entry point in :mod:`.app`."""

from imac.cli.app import app, main

__all__ = ["app", "main"]
