"""Progress on stderr for terminals: files, bytes, rate, ETA. Silent otherwise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@contextmanager
def progress_line(enabled: bool, sample: Callable[[], tuple[int, int, int, int]]) -> Iterator[None]:
    """Redraw one status line from sample() -> (files, bytes, files_total, bytes_total)."""
    if not enabled:
        yield
        return
    from rich.console import Console  # only a terminal's progress line needs rich

    console = Console(stderr=True)
    stop = threading.Event()
    start = time.monotonic()

    def render() -> str:
        files, nbytes, files_total, bytes_total = sample()
        elapsed = max(time.monotonic() - start, 1e-6)
        rate = nbytes / elapsed
        line = f"{files} files, {_fmt_bytes(nbytes)}, {_fmt_bytes(rate)}/s"
        if bytes_total and rate > 0:
            pct = min(100.0, 100.0 * nbytes / bytes_total)
            eta = max(0.0, (bytes_total - nbytes) / rate)
            line += f", {pct:.0f}% of {_fmt_bytes(bytes_total)} ({files_total} files)"
            line += f", ETA {_fmt_eta(eta)}"
        return line

    with console.status(render()) as status:

        def loop() -> None:
            while not stop.wait(0.25):
                status.update(render())

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def format_bytes(n: float) -> str:
    return _fmt_bytes(n)
