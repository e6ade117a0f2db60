"""`mount`: the repository's snapshots as a read-only filesystem until it is unmounted.

Before mounting, the mountpoint must be an existing empty directory that nothing is
mounted on: a non-empty one, one already mounted, or the stale mount a killed
`cleancut mount` leaves ("Transport endpoint is not connected") is refused with one
line (MountFailed, exit 20), the last with the command that clears it
(`fusermount3 -u MOUNTPOINT`). FUSE itself missing (no /dev/fuse, no libfuse 3) is
exit 20 too.

The filesystem runs in this process, in the foreground, one request at a time. libfuse
handles SIGINT, SIGTERM and SIGHUP: the request loop ends, the mountpoint is unmounted,
and the outcome (what was read from the repository) is returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut.errors import MountFailed
from cleancut.pathtext import shown_path
from cleancut.repository.repository import Repository

from .catalog import Catalog
from .content import ReadStats

MOUNTINFO = Path("/proc/self/mountinfo")
LOOP_ENDED = 8  # fuse_main's status when its request loop ended
# Foreground, one request at a time, read-only. A snapshot never changes, so the kernel
# may keep file pages across opens and names and attributes for a minute.
MOUNT_OPTIONS: dict[str, Any] = {
    "foreground": True,
    "nothreads": True,
    "ro": True,
    "fsname": "cleancut",
    "kernel_cache": True,
    "attr_timeout": 60,
    "entry_timeout": 60,
}


def mounted_paths() -> set[str]:
    """The mount points of this process's mount namespace (octal escapes decoded)."""
    found = set()
    for line in MOUNTINFO.read_text(errors="surrogateescape").splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            found.add(_unescape(fields[4]))
    return found


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def check_mountpoint(mountpoint: Path) -> Path:
    """The mountpoint's absolute path, or MountFailed naming why it cannot be used."""
    shown = shown_path(str(mountpoint))
    where = Path(os.path.abspath(mountpoint))
    try:
        entries = os.listdir(where)
    except FileNotFoundError:
        raise MountFailed(f"mountpoint {shown} does not exist: create an empty directory") from None
    except NotADirectoryError:
        raise MountFailed(f"mountpoint {shown} is not a directory") from None
    except OSError as exc:
        if exc.errno == 107:  # ENOTCONN: a FUSE mount whose process died
            raise MountFailed(
                f"mountpoint {shown} is a stale mount (its process died): clear it with "
                f"'fusermount3 -u {shown}'"
            ) from None
        raise MountFailed(f"mountpoint {shown}: {exc.strerror}") from None
    real = os.path.realpath(where)
    if real in mounted_paths():
        raise MountFailed(f"mountpoint {shown} is busy: something is mounted there already")
    if entries:
        raise MountFailed(f"mountpoint {shown} is not empty: mount on an empty directory")
    return Path(real)


@dataclass
class MountOutcome:
    mountpoint: str
    snapshots: int
    replays: int  # snapshot states built (chains replayed) while mounted
    stats: ReadStats
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "mountpoint": self.mountpoint,
            "snapshots": self.snapshots,
            "replays": self.replays,
            "read": self.stats.to_json(),
            "problems": self.problems,
        }


def _load_fuse() -> Any:
    if not Path("/dev/fuse").exists():
        raise MountFailed("FUSE is not available: no /dev/fuse (load the fuse module)")
    try:
        from . import fusefs
    except (OSError, AttributeError) as exc:
        raise MountFailed(
            f"FUSE is not available: libfuse 3 cannot be loaded ({exc}); Debian: apt-get "
            "install fuse3"
        ) from None
    return fusefs


def mount(
    repo: Repository,
    mountpoint: Path,
    on_ready: Callable[[Path], None],
    on_problem: Callable[[str], None],
) -> MountOutcome:
    """Serve the snapshots at `mountpoint` until unmounted (a signal, or fusermount3 -u)."""
    where = check_mountpoint(mountpoint)
    fusefs = _load_fuse()
    catalog = Catalog.of(repo.snapshots())
    problems: list[str] = []

    def problem(line: str) -> None:
        problems.append(line)
        on_problem(line)

    served: list[bool] = []

    def ready() -> None:
        served.append(True)
        on_ready(where)

    fs = fusefs.SnapshotFS(repo, catalog, ready, problem)
    try:
        fusefs.mfusepy.FUSE(fs, str(where), **MOUNT_OPTIONS)
    except RuntimeError as exc:
        # libfuse 3 reports a loop ended by a signal as its "event loop" error (8): once
        # it served, that is the unmount asked for, not a failure.
        if not (served and exc.args == (LOOP_ENDED,)):
            raise MountFailed(
                f"could not mount at {shown_path(str(where))} (libfuse said {exc})"
            ) from None
    return MountOutcome(
        str(where),
        sum(len(s.snapshots) for s in catalog.sources.values()),
        fs.states.replays,
        fs.cache.stats,
        problems + fs.states.problems,
    )
