"""Progress bars written to a log (not a terminal) stay small: a line every ~10 s at most."""

from __future__ import annotations

import contextlib
import io

from imac.progress import progress_bar


def test_bars_off_a_terminal_do_not_flood_the_log() -> None:
    log = io.StringIO()  # not a tty, like CI's log or a captured subprocess
    with contextlib.redirect_stderr(log):
        with progress_bar(total=10_000, desc="work") as bar:
            for i in range(10_000):
                bar.update(1)
                bar.set_postfix(step=i, refresh=False)
        for _ in progress_bar(range(100), enabled=False):
            pass
    out = log.getvalue()
    assert out.count("\r") <= 3 and len(out) < 400, out[:400]
    assert "work" in out and "10000/10000" in out  # the start and the end are still there
