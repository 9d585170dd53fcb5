"""One exception hierarchy for the whole package.

Every error that a user can cause (bad config, bad data, a missing tool) derives from
:class:`ImacError`, so the command line can print its message and exit non-zero without a
traceback, while programming errors still surface as ordinary exceptions.
"""

from __future__ import annotations


class ImacError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(ImacError, ValueError):
    """A spec or YAML file is malformed, has unknown keys or impossible values."""


class ShapeError(ImacError, ValueError):
    """Arrays whose shapes do not fit together (weights vs inputs, subarray vs layer)."""


class DataError(ImacError):
    """A data file, dataset or checkpoint is missing, truncated or corrupt."""


class SolverError(ImacError):
    """A circuit could not be solved (singular nodal matrix)."""


class SpiceError(ImacError):
    """ngspice failed, did not converge or printed something we could not parse."""

    def __init__(self, message: str, log_path: str | None = None) -> None:
        if log_path:
            message = f"{message} (ngspice log: {log_path})"
        super().__init__(message)
        self.log_path = log_path


class SpiceNotFoundError(SpiceError):
    """The ngspice executable is not on PATH."""


class ModelCardNotFoundError(ImacError, FileNotFoundError):
    """No transistor model card was found where we looked."""


class OutputError(ImacError):
    """An output location cannot be used: it is the working directory, below a file, locked by
    another run, not writable..."""


class OutputExistsError(OutputError, FileExistsError):
    """A result directory or file already exists and overwriting was not asked for (or it was
    not written by imac, so it is never replaced)."""
