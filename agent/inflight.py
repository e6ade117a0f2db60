"""External actions a snapshot holds in flight, for the agent that is restored from it.

An action still in `intent`, `started` or `unknown` when the capture was taken
may or may not have reached the outside world. The restored agent must
reconcile each one by its idempotency key (ask the provider, or send once)
rather than repeat it, so restore hands them over as a JSON file beside the
restored directory (not inside it: the workspace stays exactly as captured).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..store.safeio import replace_file
from ..store.snapshot import Snapshot


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
    if not inflight_of(snapshot):
        path.unlink(missing_ok=True)
        return None
    # A random temporary name created exclusively: the directory beside the target may be
    # writable by others (/tmp), and a name they can guess could hold their symlink.
    text = json.dumps(inflight_document(snapshot), indent=2, sort_keys=True) + "\n"
    replace_file(path, text.encode(), 0o644)
    return path
