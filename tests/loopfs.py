"""Loop-mounted filesystems that tests make for themselves (btrfs, ext4, XFS).

A sparse image file, mkfs, `mount -o loop` at a short path under /tmp (agent
sockets live on some of them), and on the way out a lazy unmount and the image
gone. The mkfs tools come from scripts/test-tools, run by `make test`; a missing
tool or a refused mount fails the test with the reason, never skips it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}
IMAGE_BYTES = {"xfs": 320 << 20, "btrfs": 400 << 20, "ext4": 64 << 20}  # sparse: nearly free


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True)


@contextmanager
def loop_mounted(kind: str, prefix: str = "cc-") -> Iterator[Path]:
    """A freshly made `kind` filesystem, mounted; its mountpoint."""
    tool = MKFS[kind][0]
    assert shutil.which(tool), f"{tool} is missing: `make test` installs it (scripts/test-tools)"
    base = Path(tempfile.mkdtemp(prefix=f"{prefix}{kind}-", dir="/tmp"))
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir()
    try:
        with open(image, "wb") as f:
            f.truncate(IMAGE_BYTES[kind])
        made = run(*MKFS[kind], str(image))
        assert made.returncode == 0, made.stderr
        mounted = run("mount", "-o", "loop", str(image), str(mnt))
        if mounted.returncode != 0:
            run("modprobe", kind)
            mounted = run("mount", "-o", "loop", str(image), str(mnt))
        assert mounted.returncode == 0, f"root cannot loop-mount a {kind} image: {mounted.stderr}"
        try:
            yield mnt
        finally:
            run("umount", "-l", str(mnt))
    finally:
        shutil.rmtree(base, ignore_errors=True)
