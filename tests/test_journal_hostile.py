"""A journal directory whose files were swapped for a FIFO, a device or a symlink.

Segments, a replay marker and the `shipped` file are only ever written as regular
files. Whatever stands in their place after the directory was listed (a FIFO with
no writer, /dev/zero, a symlink to a file outside) must not block the reader, be
read without end, or be followed: it is one JournalError line (exit 17), since
it is the journal's own files that are wrong.

Each probe runs in a child process with a hang guard and a memory cap: the old
readers blocked on the FIFO forever and read /dev/zero until memory ran out.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from test_journal import build

from cleancut.journal.frame import list_segments

GUARD_S = 120  # a hang guard, not a timing assertion
MEMORY_CAP = 1 << 30

READERS = {
    "read_journal": """
from cleancut.journal.scan import read_journal
from cleancut.journal.frame import list_segments
import os, stat, sys
scan = read_journal(sys.argv[1])
it = iter(scan)
next(it)  # the directory is listed and the first segment read: now swap a later one
plant(list_segments(sys.argv[1])[2][1])
records = list(it)
print("stopped:", scan.error())
""",
    "read_tail": """
from cleancut.journal import scan as journal
import sys
listed = journal.list_segments
def list_then_swap(directory):
    segments = listed(directory)  # listed as regular files; swapped before they are read
    plant(segments[-1][1])
    return segments
journal.list_segments = list_then_swap
journal.read_tail(sys.argv[1])
""",
    "first_record": """
from cleancut.journal.frame import first_record, list_segments
import sys
path = list_segments(sys.argv[1])[0][1]
plant(path)
first_record(path)
""",
    "read_marker": """
from cleancut.journal.replay import read_marker
import sys, pathlib
marker = pathlib.Path(sys.argv[1]) / "applied"
marker.write_bytes(b"")
plant(marker)
read_marker(marker)
""",
    "replayer_marker": """
from cleancut.journal.replay import Replayer
import sys, pathlib
target = pathlib.Path(sys.argv[1]).parent / "target"
target.mkdir()
marker = pathlib.Path(sys.argv[1]) / "applied"
marker.write_bytes(b"")
plant(marker)
Replayer(target, marker)
""",
    "read_shipped": """
from cleancut.journal.repo.shipped import read_shipped, write_shipped
import sys, pathlib
write_shipped(pathlib.Path(sys.argv[1]), 3)
plant(pathlib.Path(sys.argv[1]) / "shipped")
read_shipped(sys.argv[1])
""",
}

PLANT = """
import os, stat, sys
KIND, OUTSIDE = sys.argv[2], sys.argv[3]
def plant(path):
    os.unlink(path)
    if KIND == "fifo":
        os.mkfifo(path)
    elif KIND == "zero":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    else:
        os.symlink(OUTSIDE, path)
from cleancut.errors import CleancutError
try:
    exec(compile(sys.argv[4], "probe", "exec"))
    print("no error")
except CleancutError as exc:
    print(type(exc).__name__, exc.exit_code, exc)
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("kind", ["fifo", "zero", "symlink"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_journal_file_that_is_not_a_regular_file_is_one_line_exit_17(
    tmp_path: Path, reader: str, kind: str
):
    jdir, _, _, _ = build(tmp_path, n=30, segment_bytes=600)
    assert len(list_segments(jdir)) >= 4
    outside = tmp_path / "outside"
    outside.write_bytes(b"x" * 100)  # a regular file outside: never to be read through a link
    done = subprocess.run(
        [sys.executable, "-c", PLANT, str(jdir), kind, str(outside), READERS[reader]],
        capture_output=True, text=True, timeout=GUARD_S, preexec_fn=_cap_memory,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    words = {"fifo": "is a fifo", "zero": "is a character device", "symlink": "is a symlink"}
    assert words[kind] in line, line
    assert line.startswith(("JournalError 17", "stopped: ")), line
