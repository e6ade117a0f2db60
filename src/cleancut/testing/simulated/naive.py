"""A naive backup, for contrast: copy file by file while the agent runs, no quiesce.

This is `cp -r` on a busy machine: each file is read whole at its own moment,
with a short pause between files, so the copy mixes moments. Files that vanish
between listing and reading (an acknowledged queue entry, a temp file renamed
away) are skipped, as `cp` would warn and go on.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def naive_copy(src: Path, dst: Path, pause: float = 0.002) -> int:
    """Copy the tree at `src` to `dst` file by file; the number of files copied."""
    copied = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        here = Path(dirpath)
        target = dst / here.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            try:
                shutil.copyfile(here / name, target / name)
            except FileNotFoundError:
                continue
            copied += 1
            if pause:
                time.sleep(pause)
    return copied
