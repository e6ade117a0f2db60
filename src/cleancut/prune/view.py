"""Prune's read view: what the snapshots that exist now need, read so that blobs of
packs a mark took out of the index (or that no index lists) stay readable."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cleancut.errors import CleancutError, IntegrityError
from cleancut.repository.cache import BlobLocation
from cleancut.repository.chain import own_blobs
from cleancut.repository.index import PackRecord
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.walk import load_tree


class ReadView(Repository):
    """The repository as prune must read it: blobs of packs taken out of the index by
    a mark (and, if still missing, of any pack no index lists) stay readable, so a
    snapshot that needs one is found, not reported broken. Shares the cache read-only."""

    def __init__(
        self,
        repo: Repository,
        extra: dict[bytes, BlobLocation],
        load_more: Callable[[], dict[bytes, BlobLocation]],
    ) -> None:
        super().__init__(repo.backend, repo.config, repo.keys, repo.cache)
        self.extra = extra
        self._load_more: Callable[[], dict[bytes, BlobLocation]] | None = load_more

    def find(self, blob_id: bytes) -> BlobLocation | None:
        loc = self.extra.get(blob_id)
        if loc is None and self._load_more is not None:
            more, self._load_more = self._load_more, None
            self.extra.update(more())
            loc = self.extra.get(blob_id)
        return loc

    def locate(self, blob_id: bytes) -> BlobLocation:
        loc = self.find_blob(blob_id) or self.find(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} is in no pack (missing data)")
        return loc


def locations(records: Iterable[PackRecord]) -> dict[bytes, BlobLocation]:
    return {e.id: BlobLocation(r.pack_id, r.salt, e) for r in records for e in r.entries}


def used_blobs(
    view: Repository,
    snapshots: list[Snapshot],
    on_snapshot: Callable[[], None] | None = None,
) -> set[bytes]:
    """The union of `own_blobs` over the snapshots (kept ancestors are snapshots too).

    Fulls are walked here with one memo of trees across all of them: consecutive
    fulls share almost every tree, and own_blobs alone would walk each again.
    `on_snapshot` runs before each one (prune refreshes its lock there: a large
    repository takes a while).
    """
    used: set[bytes] = set()
    trees: set[str] = set()
    for snap in snapshots:
        if on_snapshot is not None:
            on_snapshot()
        try:
            if not snap.is_full:
                used |= own_blobs(view, snap)
                continue
            stack = [snap.tree]
            while stack:
                tree_id = stack.pop()
                if tree_id in trees:
                    continue
                trees.add(tree_id)
                used.add(bytes.fromhex(tree_id))
                for node in load_tree(view, tree_id):
                    if node.subtree:
                        stack.append(node.subtree)
                    used.update(bytes.fromhex(b) for b in node.content)
        except CleancutError as exc:
            raise IntegrityError(
                f"prune stopped before changing anything: snapshot {snap.id[:12]} "
                f"({snap.name}): {exc}; run 'cleancut check'"
            ) from exc
    return used
