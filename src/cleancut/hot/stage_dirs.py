"""Staging a source of several named directories: one Stager per directory, one cut.

A hot backup of a source such as an OpenClaw state dir plus a workspace outside it
must capture both inside the SAME pause, or the snapshot could hold a transcript from
one moment and the workspace files of another. `DirsStager` has the Stager's
interface (lock, track, prepare, capture, finish, verify, changed_since_capture) and
runs each step on every directory in turn: `capture()` is called once inside the pause
and stages all of them there; `finish()`, after resume, completes what each deferred.
Each directory keeps its own mirror and manifest, under
`STAGING/dirs/NAME/`, so an unchanged directory costs a metadata scan and nothing more.

A one-directory source is the same object with one unnamed Stager, so the hot-backup
orchestrator has one code path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cleancut.errors import CleancutError
from cleancut.repository.sourcedirs import Source, SourceDir

from .stage import Stager, StageStats


class DirsStager:
    def __init__(self, source: Source, staging: Path, excludes: list[str]) -> None:
        self.named = isinstance(source, tuple)
        self.staging = Path(staging)
        if isinstance(source, tuple):
            _refuse_staging_inside(self.staging, source)
            self.stagers = {
                d.name: Stager(d.path, self.staging / "dirs" / d.name, excludes,
                               exclude_prefix=d.name + "/")
                for d in source
            }
            self.source: Source = source
        else:
            self.stagers = {"": Stager(source, self.staging, excludes)}
            self.source = source
        self._merged_capture: StageStats | None = None

    @property
    def first(self) -> Stager:
        return next(iter(self.stagers.values()))

    @property
    def trees(self) -> dict[str, Path]:
        """Each directory's staged mirror, by name ("" for a one-directory source)."""
        return {name: stager.tree for name, stager in self.stagers.items()}

    def staged(self) -> Source:
        """What the Archiver reads: the mirror, or each named mirror recorded with the
        path of the directory it stands for."""
        if not isinstance(self.source, tuple):
            return self.first.tree
        return tuple(
            SourceDir(d.name, self.stagers[d.name].tree, d.original) for d in self.source
        )

    def staged_path(self, rel: str) -> Path:
        """Where a snapshot path (`NAME/...` for a named source) is staged."""
        if not self.named:
            return self.first.tree / rel
        name, _, rest = rel.partition("/")
        return self.stagers[name].tree / rest

    @property
    def scratch(self) -> Path:
        """A place beside the mirrors for other work (the journal fallback's tree)."""
        return self.first.tree.parent

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for stager in self.stagers.values():
                stack.enter_context(stager.lock())
            yield

    def track(self) -> str | None:
        """Watch every directory for changes; None when all are watched, else why not."""
        reasons = [(n, s.track()) for n, s in self.stagers.items()]
        missing = [_named(n, why) if n else why for n, why in reasons if why is not None]
        return "; ".join(missing) if missing else None

    @contextlib.contextmanager
    def tracking_held(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for stager in self.stagers.values():
                stack.enter_context(stager.tracking_held())
            yield

    def prepare(self) -> StageStats:
        return _merged({n: s.prepare() for n, s in self.stagers.items()})

    def capture(self, *, defer: bool = False) -> StageStats:
        """Every directory, one after the other, inside the caller's one pause."""
        self._merged_capture = _merged({n: s.capture(defer=defer) for n, s in self.stagers.items()})
        return self._merged_capture

    def finish(self) -> StageStats:
        """After resume: each directory's deferred work (pinned databases, manifest).

        As a Stager's finish() updates the stats its capture() returned, this updates
        the merged stats capture() returned (the capture record reads them)."""
        finished = _merged({n: s.finish() for n, s in self.stagers.items()})
        if self._merged_capture is not None:
            vars(self._merged_capture).update(vars(finished))
            return self._merged_capture
        return finished

    def verify(self) -> list[str]:
        return [_named(n, p) for n, s in self.stagers.items() for p in s.verify()]

    def sqlite_results(self) -> dict[str, tuple[tuple[int, int, int, int], list[str]]]:
        """Every directory's verify() results, by staged path (Stager.sqlite_results)."""
        return {k: v for s in self.stagers.values() for k, v in s.sqlite_results().items()}

    def changed_since_capture(self) -> list[str]:
        return [_named(n, p) for n, s in self.stagers.items() for p in s.changed_since_capture()]


def _named(name: str, rel: str) -> str:
    return f"{name}/{rel}" if name else rel


def _merged(passes: dict[str, StageStats]) -> StageStats:
    """One pass's statistics over every directory; warnings name the directory."""
    total = StageStats()
    for name, stats in passes.items():
        total.files_scanned += stats.files_scanned
        total.files_copied += stats.files_copied
        total.bytes_copied += stats.bytes_copied
        total.files_deleted += stats.files_deleted
        total.sqlite_copied += stats.sqlite_copied
        total.reflinked += stats.reflinked
        total.sqlite_pinned += stats.sqlite_pinned
        total.sqlite_cloned += stats.sqlite_cloned
        total.tails += stats.tails
        total.duration_s += stats.duration_s
        total.finish_s += stats.finish_s
        total.bytes_after_resume += stats.bytes_after_resume
        total.dirs_scanned += stats.dirs_scanned
        total.warnings.extend(_named(name, w) for w in stats.warnings)
    # Tracked only when every directory's pass was; each reason names its directory.
    total.scan = "tracked" if passes and all(s.scan == "tracked" for s in passes.values()) else (
        "full")
    total.scan_reason = "; ".join(
        _named(name, s.scan_reason) for name, s in passes.items() if s.scan_reason
    )
    return total


def _refuse_staging_inside(staging: Path, dirs: tuple[SourceDir, ...]) -> None:
    """The mirror of one directory must not land inside another (it would be captured)."""
    real = os.path.realpath(staging)
    for d in dirs:
        src = os.path.realpath(d.path)
        if os.path.commonpath([real, src]) in (real, src):
            raise CleancutError(
                f"the staging directory {staging} and the source's directory {d.name} "
                f"({d.path}) must not contain each other: choose a staging directory outside"
            )
