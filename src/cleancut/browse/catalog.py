"""The mount's top levels: one directory name per source, one per snapshot, and latest.

Source names are whatever backups recorded (by default the source's absolute path), so
each becomes one path component by escaping: '%' as %25, '/' as %2F, NUL as %00, and
'', '.', '..' spelled with %2E (an empty name is '%'). Snapshots are named by their
recorded time (ISO 8601 UTC, microseconds), escaped the same way; two snapshots of one
source recorded at the same instant are told apart by their id's first 8 digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cleancut.repository.snapshot import Snapshot, chain_order, newest_of_each

LATEST = "latest"


def escaped(name: str) -> str:
    """`name` as one path component, reversibly (see the module docstring)."""
    text = name.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")
    if text == "":
        return "%"
    if text in (".", ".."):
        return text.replace(".", "%2E")
    return text


def _unique(time_name: str, snapshot_id: str, taken: dict[str, Snapshot]) -> str:
    """The time's name, or with the shortest id prefix (8 digits and up) that is free."""
    name, digits = time_name, 8
    while name in taken or name == LATEST:
        # Past the whole id (two records of one id: a forged catalog), a counter.
        suffix = snapshot_id[:digits] if digits <= len(snapshot_id) else f"{snapshot_id}-{digits}"
        name = f"{time_name}-{escaped(suffix)}"
        digits += 4
    return name


@dataclass
class Source:
    """One source's snapshots by directory name, oldest first, and its newest's name."""

    name: str
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    latest: str = ""


@dataclass
class Catalog:
    """The sources and snapshots the mount shows (those in the repository when it was
    mounted), by directory name."""

    sources: dict[str, Source] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshots: list[Snapshot]) -> Catalog:
        catalog = cls()
        newest = newest_of_each(snapshots)
        by_name: dict[str, list[Snapshot]] = {}
        for snap in snapshots:
            by_name.setdefault(snap.name, []).append(snap)
        for name in sorted(by_name):
            dir_name = escaped(name)
            while dir_name in catalog.sources:  # two names that escape alike: never merged
                dir_name += "_"
            source = catalog.sources[dir_name] = Source(name)
            group = by_name[name]
            for snap in sorted(group, key=chain_order(group)):
                time_name = _unique(escaped(snap.time), snap.id, source.snapshots)
                source.snapshots[time_name] = snap
                if snap.id == newest[name].id:
                    source.latest = time_name
        return catalog

    def snapshot(self, source: str, time_name: str) -> Snapshot | None:
        found = self.sources.get(source)
        return found.snapshots.get(time_name) if found else None
