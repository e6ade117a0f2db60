"""One backup of one source, recorded: the unit both `backup` and `tick` run.

Every attempt, successful or not, leaves a BACKUP_ATTEMPT record in the
repository, so `status` can report success rates and the last failure from
the repository alone.
"""

from __future__ import annotations

import contextlib
import time

from cleancut.archiver.backup import Archiver, BackupOptions, BackupResult, Progress
from cleancut.backend.access import is_remote
from cleancut.backend.throttle import set_upload_cap
from cleancut.errors import CleancutError
from cleancut.repository.attempts import record_backup_attempt
from cleancut.repository.repository import Repository
from cleancut.repository.sourcedirs import Source, default_name


def cap_uploads(repo: Repository, mbit: float | None) -> None:
    """Uploads to a remote repository go at most at the cap of the profile this backup
    settled on (--profile, --set, the source's); a local disk is not a shared link.
    Not called when the operator gave --limit-upload: that cap stands."""
    if is_remote(repo.backend):
        repo.backend = set_upload_cap(repo.backend, mbit)


def run_backup(
    repo: Repository,
    source: Source,
    options: BackupOptions,
    progress: Progress | None = None,
    quiesce_missed: bool = False,
) -> BackupResult:
    """quiesce_missed: this window's quiesce failed and the snapshot is a fallback."""
    archiver = Archiver(repo, source, options, progress)
    started = time.monotonic()
    name = options.name or default_name(source)
    try:
        result = archiver.run()
    except (CleancutError, OSError) as exc:
        # Recording must not hide the real error (the repository may be what failed).
        with contextlib.suppress(CleancutError, OSError):
            record_backup_attempt(
                repo,
                name=name,
                ok=False,
                kind=archiver.decision.kind if archiver.decision else None,
                snapshot_id=None,
                error=str(exc),
                duration_s=time.monotonic() - started,
                quiesce_missed=quiesce_missed,
                consistency=options.consistency,
            )
        raise
    with contextlib.suppress(CleancutError, OSError):
        record_backup_attempt(
            repo,
            name=name,
            ok=True,
            kind=result.snapshot.kind,
            snapshot_id=result.snapshot.id,
            error="; ".join(result.warnings) or None,
            duration_s=result.duration_s,
            quiesce_missed=quiesce_missed,
            consistency=result.snapshot.consistency,
        )
    return result
