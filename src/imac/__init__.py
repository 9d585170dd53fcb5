"""imac: simulate in-memory analog computing with SOT-MRAM, from devices to a CPU-IMAC system.

``import imac`` stays light: torch, matplotlib and ngspice wrappers load where they are used.
"""

from imac.errors import ConfigError, DataError, ImacError, ShapeError, SpiceError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "ImacError", "ShapeError", "SpiceError", "__version__"]
