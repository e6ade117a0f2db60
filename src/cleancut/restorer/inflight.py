"""External actions a snapshot holds in flight, for the agent that is restored from it.

An action still in `intent`, `started` or `unknown` when the capture was taken
may or may not have reached the outside world. The restored agent must
reconcile each one by its idempotency key (ask the provider, or send once)
rather than repeat it, so restore hands them over as a JSON file beside the
restored directory (not inside it: the workspace stays exactly as captured).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from cleancut import jsonparse
from cleancut.errors import NotOurs
from cleancut.fsio.safeio import replace_file
from cleancut.repository.snapshot import Snapshot

_MAX_DOCUMENT = 64 << 20  # an in-flight list larger than this is not one we wrote


def inflight_of(snapshot: Snapshot) -> list[dict[str, Any]]:
    return list(snapshot.capture.get("inflight") or [])


def inflight_document(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot": snapshot.id,
        "name": snapshot.name,
        "time": snapshot.time,
        "consistency": snapshot.consistency,
        "inflight": inflight_of(snapshot),
    }


def inflight_path(target: Path) -> Path:
    target = target.absolute()
    return target.parent / f"{target.name}.inflight.json"


def write_inflight(snapshot: Snapshot, target: Path) -> Path | None:
    """Write the in-flight actions beside `target`; None when there are none (and a file
    left there by an earlier restore is removed: it would describe another snapshot)."""
    path = inflight_path(target)
    ours = _ours(path)
    if not inflight_of(snapshot):
        if ours:
            path.unlink(missing_ok=True)
        return None  # a file of someone else's there describes no snapshot: left alone
    if not ours:
        raise NotOurs(
            f"{path} exists and is not an in-flight list cleancut wrote: left untouched; "
            "move it away to get the snapshot's in-flight actions written there"
        )
    # A random temporary name created exclusively: the directory beside the target may be
    # writable by others (/tmp), and a name they can guess could hold their symlink.
    text = json.dumps(inflight_document(snapshot), indent=2, sort_keys=True) + "\n"
    replace_file(path, text.encode(), 0o644)
    return path


def _ours(path: Path) -> bool:
    """Whether `path` is missing or holds an in-flight list this module wrote."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_DOCUMENT:
        return False
    try:
        doc = jsonparse.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"snapshot", "consistency", "inflight"} <= doc.keys()
