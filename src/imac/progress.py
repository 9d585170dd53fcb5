"""Progress bars for long work, on stderr: live on a terminal, a line every ~10 s in a log.

tqdm redraws its bar up to ten times a second; written to a file or a pipe (CI, a captured
subprocess, ``2> log``) that is megabytes of carriage-return updates.  Off a terminal the bars here
update at most every :data:`LOG_INTERVAL_S` seconds, so a log still says where a long stage is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

LOG_INTERVAL_S = 10.0


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar on stderr (``kwargs`` go to tqdm); ``enabled=False``: a silent one."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", tty)
    if not tty:
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", 10 * LOG_INTERVAL_S)
    disable = kwargs.pop("disable", False)
    return tqdm(iterable, disable=(not enabled) or disable, **kwargs)
