"""Repair packs: replace the packs `check` found damaged, healing the snapshots that use them.

For each pack the damage registry (repository/damage.py) names and the index still
lists, every blob that has no intact copy elsewhere is stored afresh in a new
pack: from the damaged pack itself when that blob still decrypts and verifies
(salvage), else from the source directories given, read and chunked again with
the repository's chunker (a blob's ID is the keyed hash of its content, so a
chunk with the same ID is the same content). A pack whose every blob then has an
intact copy (or is a lost blob that no snapshot uses) is taken out of the
index (the segments that list it are replaced by ones that do not) and
deleted, and the registry forgets it. A pack with a blob a snapshot needs and
found nowhere stays, still reported by `check`.

Tree and delta blobs are not recovered from sources (a tree holds metadata a
new scan may not reproduce); a new backup of an unchanged source stores the
identical tree again, which heals it the same way.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cleancut.archiver.saver import BlobSaver
from cleancut.errors import CleancutError, ExitCode, ObjectNotFound
from cleancut.fsio.treewalk import walk
from cleancut.repository.chain import own_blobs
from cleancut.repository.chunker import chunk_fd
from cleancut.repository.compress import decompress
from cleancut.repository.damage import Damage
from cleancut.repository.index import IndexSegment, PackRecord
from cleancut.repository.pack import DATA, blob_aad, pack_sealer
from cleancut.repository.repository import Repository


@dataclass
class HealReport:
    replaced: list[str] = field(default_factory=list)  # damaged packs taken out and deleted
    remaining: list[str] = field(default_factory=list)  # damaged packs with a blob found nowhere
    salvaged: int = 0  # blobs copied out of damaged packs
    from_source: int = 0  # blobs stored again from the source directories
    lost: list[str] = field(default_factory=list)  # blob ids (hex) found nowhere
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """4 while a damaged pack remains (a blob it holds was found nowhere)."""
        return ExitCode.INTEGRITY if self.remaining else ExitCode.OK

    def to_json(self) -> dict[str, object]:
        return {
            "replaced_packs": self.replaced,
            "remaining_packs": self.remaining,
            "blobs_salvaged": self.salvaged,
            "blobs_from_source": self.from_source,
            "blobs_lost": self.lost,
        }


@dataclass
class _Index:
    segments: dict[str, IndexSegment] = field(default_factory=dict)
    packs: dict[str, PackRecord] = field(default_factory=dict)
    pack_segments: dict[str, list[str]] = field(default_factory=dict)
    locations: dict[bytes, list[str]] = field(default_factory=dict)  # blob -> packs


def _read_index(repo: Repository) -> _Index:
    index = _Index()
    for sid in repo.segment_ids():
        try:
            segment = repo.load_segment(sid)
        except CleancutError:
            continue  # `repair index` deals with damaged segments
        index.segments[sid] = segment
        for record in segment.packs:
            index.packs[record.pack_id] = record
            index.pack_segments.setdefault(record.pack_id, []).append(sid)
            for e in record.entries:
                index.locations.setdefault(e.id, []).append(record.pack_id)
    return index


def repair_packs(
    repo: Repository, sources: list[Path], check_lock: Callable[[], object] | None = None
) -> HealReport:
    """Replace every damaged pack that can be replaced; see the module docstring."""
    report = HealReport()
    damage = repo.load_damage()
    index = _read_index(repo)
    pairs = damage.pairs()
    targets = {p: b for p, b in damage.packs.items() if p in index.packs}

    def intact_elsewhere(blob: bytes, pack: str) -> bool:
        return any(q != pack and (q, blob) not in pairs for q in index.locations.get(blob, []))

    needed = {
        e.id for p in targets for e in index.packs[p].entries if not intact_elsewhere(e.id, p)
    }
    recovered: set[bytes] = set()
    saver = BlobSaver(repo)
    saver.store_again = set(needed)
    try:
        for pack_id, bad in sorted(targets.items()):
            report.salvaged += _salvage(repo, index.packs[pack_id], needed - bad, saver, recovered)
        for source in sources:
            report.from_source += _from_source(
                repo, source, needed - recovered, saver, recovered, report
            )
        saver.finish()
    finally:
        saver.close()
    used = _used_blobs(repo)
    lost = {b for b in needed - recovered if used is None or b in used}
    # Every other blob of a target pack has an intact copy now, or no snapshot needs it.
    healed = [p for p in sorted(targets) if not any(e.id in lost for e in index.packs[p].entries)]
    _drop_packs(repo, index, healed, check_lock)
    report.replaced = healed
    report.remaining = sorted(set(targets) - set(healed))
    report.lost = sorted(b.hex() for b in lost)
    stale = {p for p in damage.packs if p not in index.packs and not _exists(repo, p)}
    if healed or stale:
        keep = Damage({p: b for p, b in damage.packs.items() if p not in stale and p not in healed})
        repo.replace_damage(keep, damage)
    repo.rebuild_cache()
    return report


def _used_blobs(repo: Repository) -> set[bytes] | None:
    """Every blob a snapshot needs; None when a tree or delta cannot be read (then every
    lost blob counts as needed)."""
    used: set[bytes] = set()
    for snap in repo.snapshots():
        try:
            used |= own_blobs(repo, repo.load_snapshot(snap.id))
        except CleancutError:
            return None
    return used


def _exists(repo: Repository, pack_id: str) -> bool:
    return repo.has_pack(pack_id)


def _salvage(
    repo: Repository,
    record: PackRecord,
    wanted: set[bytes],
    saver: BlobSaver,
    recovered: set[bytes],
) -> int:
    """Store again each wanted blob of a damaged pack that still decrypts and verifies."""
    todo = [e for e in record.entries if e.id in wanted and e.id not in recovered]
    if not todo:
        return 0
    try:
        data = repo.read_pack(record.pack_id)
    except ObjectNotFound:
        return 0
    sealer = pack_sealer(repo.keys, record.salt)
    count = 0
    for e in todo:
        try:
            box = memoryview(data)[e.offset : e.offset + e.length]
            plain = decompress(sealer.open(box, blob_aad(e.type, e.id), "blob"), e.raw_length)
        except CleancutError:
            continue
        if len(plain) == e.raw_length and repo.keys.blob_id(plain) == e.id:
            saver.submit(e.type, plain, e.id)
            recovered.add(e.id)
            count += 1
    return count


def _from_source(
    repo: Repository,
    source: Path,
    wanted: set[bytes],
    saver: BlobSaver,
    recovered: set[bytes],
    report: HealReport,
) -> int:
    """Chunk every regular file under `source`; store again each chunk that is wanted."""
    count = 0
    if not wanted:
        return 0
    for level in walk(source, onerror=lambda e: report.warnings.append(str(e))):
        for name in level.files:
            path = os.path.join(source, level.rel, name)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=level.fd)
            except OSError as exc:
                report.warnings.append(f"{path}: {exc.strerror}")
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                for chunk in chunk_fd(fd, repo.config.chunker, st.st_size):
                    blob_id = repo.keys.blob_id(chunk)
                    if blob_id in wanted and blob_id not in recovered:
                        saver.submit(DATA, bytes(chunk), blob_id)
                        recovered.add(blob_id)
                        count += 1
            except OSError as exc:
                report.warnings.append(f"{path}: {exc.strerror}")
            finally:
                os.close(fd)
    return count


def _drop_packs(
    repo: Repository, index: _Index, healed: list[str], check_lock: Callable[[], object] | None
) -> None:
    """Replace the segments that list a healed pack by ones that do not; delete the packs.

    The fresh copies are indexed already (the saver wrote their segment first)."""
    if not healed:
        return
    gone = set(healed)
    affected = sorted({sid for p in healed for sid in index.pack_segments[p]})
    survivors = {
        r.pack_id: r for sid in affected for r in index.segments[sid].packs if r.pack_id not in gone
    }
    if survivors:
        repo.write_segment(
            IndexSegment([survivors[p] for p in sorted(survivors)], supersedes=affected)
        )
    for sid in affected:
        if check_lock is not None:
            check_lock()
        repo.delete_segment(sid)
    for pack_id in healed:
        with contextlib.suppress(ObjectNotFound):
            repo.delete_pack(pack_id)
