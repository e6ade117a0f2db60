"""`restore` as a run: which restore a request means, the restore itself, and the
in-flight file beside the target.

Which restore:

- a snapshot (an id, an id prefix or `latest`; or, with a time, the newest snapshot at
  or before it) restored into the target, optionally only some of its paths;
- a point: the last snapshot before journal record N (--seq) or before a time (--at,
  for a source that ships its journal), restored into an empty target, then the
  source's journal replayed up to that point (journal/repo/restore.py). The source is
  the one named, else the repository's only one.

Whatever was restored, the snapshot's in-flight actions are written beside the target
(inflight.py). The outcome's exit code: 4 when files were not restored because their
data is damaged, 5 when unsafe entries were refused, 1 when files could not be
written, 17 when the journal replay stopped on damage (3 when that loss was accepted).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cleancut.errors import ExitCode, UsageError
from cleancut.journal.repo.restore import PointRestore, has_journal, restore_to_point
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot, snapshot_at
from cleancut.repository.sourcedirs import recorded_dirs

from .inflight import inflight_of, write_inflight
from .restore import Restorer, RestoreResult

# (files, bytes, files_total, bytes_total), sampled while a snapshot is written
Sample = Callable[[], tuple[int, int, int, int]]
# How the caller shows progress while the snapshot is written (the command line: a line
# on a terminal); it is given the sampler and wraps the restore.
ProgressHook = Callable[[Sample], AbstractContextManager[Any]]


@dataclass
class RestoreRequest:
    snapshot: str | None = None  # an id, an id prefix or "latest"
    target: Path = field(default_factory=Path)
    includes: list[str] = field(default_factory=list)
    name: str | None = None  # the source, with "latest", a time or a journal record
    at: datetime | None = None
    seq: int | None = None  # a journal record
    accept_loss: bool = False  # keep what replays when the repository's journal is damaged
    only_dir: str | None = None  # one named directory of the snapshot (decision 0006)


@dataclass
class RestoreOutcome:
    snapshot: Snapshot
    target: Path
    result: RestoreResult
    point: PointRestore | None  # None: a snapshot restore, no journal replayed
    accept_loss: bool
    inflight: list[dict[str, Any]]
    inflight_file: Path | None

    @property
    def journal_stopped(self) -> bool:
        """The replay stopped at damage in the repository's journal, and the loss was not
        accepted: the target is at the last good record."""
        return (
            self.point is not None
            and self.point.replay.stopped_by is not None
            and not self.accept_loss
        )

    @property
    def loss_accepted(self) -> bool:
        """Journal records are missing from the target, and --accept-loss said keep it."""
        return self.point is not None and not self.journal_stopped and bool(
            self.point.replay.problems
        )

    @property
    def exit_code(self) -> int:
        if self.result.damaged:
            return ExitCode.INTEGRITY
        if self.result.refused:
            return ExitCode.UNSAFE_ENTRY
        if self.result.errors:
            return ExitCode.FATAL
        if self.journal_stopped:
            return ExitCode.JOURNAL_DAMAGED
        return ExitCode.WARNINGS if self.loss_accepted else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        result = self.result
        doc: dict[str, Any] = {
            "snapshot_id": self.snapshot.id,
            "target": str(self.target),
            "files": result.files,
            "dirs": result.dirs,
            "symlinks": result.symlinks,
            "bytes_written": result.bytes_written,
            "refused": result.refused,
            "damaged": result.damaged,
            "errors": result.errors,
            "inflight": self.inflight,
            "inflight_file": str(self.inflight_file) if self.inflight_file else None,
            "directories": recorded_dirs(self.snapshot.dirs),
        }
        if self.point is not None:
            doc["journal"] = {**self.point.replay.to_json(), "resumed": self.point.resumed}
        return doc


def restore(
    repo: Repository, request: RestoreRequest, progress: ProgressHook | None = None
) -> RestoreOutcome:
    """Run the restore the request means (see the module docstring)."""
    source, journal = _journal_source(repo, request)
    point: PointRestore | None = None
    if journal:
        assert source is not None
        if request.includes or request.only_dir:
            raise UsageError("--include and --dir cannot be combined with a journal replay")
        point = restore_to_point(
            repo, source, request.target, request.seq, request.at,
            accept_loss=request.accept_loss,
        )  # fmt: skip
        snap, result = point.snapshot, point.restore or RestoreResult()
    else:
        snap = _snapshot(repo, request)
        result = _restore_snapshot(repo, snap, request, progress)
    inflight = inflight_of(snap)
    inflight_file = write_inflight(snap, request.target)
    return RestoreOutcome(
        snap, request.target, result, point, request.accept_loss, inflight, inflight_file
    )


def _journal_source(repo: Repository, request: RestoreRequest) -> tuple[str | None, bool]:
    """The source, and whether its journal is replayed: always for a journal record,
    for a time only when the source has shipped its journal."""
    if request.seq is not None or request.at is not None:
        source = request.name or _single_source(repo.snapshots())
        if request.seq is not None and source is None:
            raise UsageError("--seq needs --name: the source whose journal to replay")
        journal = source is not None and (request.seq is not None or has_journal(repo, source))
    else:
        source, journal = request.name, False
    if request.accept_loss and not journal:
        raise UsageError(
            "--accept-loss applies to a journal replay (--seq, or --at for a source with a "
            "shipped journal)"
        )
    return source, journal


def _single_source(snapshots: list[Snapshot]) -> str | None:
    names = {s.name for s in snapshots}
    return next(iter(names)) if len(names) == 1 else None


def _snapshot(repo: Repository, request: RestoreRequest) -> Snapshot:
    if request.at is not None:
        return repo.load_snapshot(snapshot_at(repo.snapshots(), request.at, request.name).id)
    return repo.find_snapshot(request.snapshot or "latest", request.name)


def _restore_snapshot(
    repo: Repository, snap: Snapshot, request: RestoreRequest, progress: ProgressHook | None
) -> RestoreResult:
    total = int(snap.summary.get("bytes_total", 0))
    done = [0]

    def on_bytes(n: int) -> None:
        done[0] += n

    restorer = Restorer(
        repo, snap, request.target, list(request.includes), on_bytes, request.only_dir
    )
    shown = (
        progress(lambda: (restorer.result.files, done[0], 0, total))
        if progress is not None
        else nullcontext()
    )
    with shown:
        return restorer.run()
