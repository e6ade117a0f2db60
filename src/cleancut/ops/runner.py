"""One backup of one source, recorded: the unit both `backup` and `tick` run.

Every attempt, successful or not, leaves a BACKUP_ATTEMPT record in the
repository, so `status` can report success rates and the last failure from
the repository alone.
"""

from __future__ import annotations

import contextlib
import time

from cleancut.archiver.backup import Archiver, BackupOptions, BackupResult, Progress
from cleancut.errors import CleancutError
from cleancut.repository.attempts import record_backup_attempt
from cleancut.repository.repository import Repository
from cleancut.repository.sourcedirs import Source, default_name
from cleancut.settings.caps import settle_upload_cap


def cap_uploads(repo: Repository, explicit_upload: bool, mbit: float | None) -> None:
    """Uploads go at most at the cap of the profile this backup settled on (--profile,
    --set, the source's), under the one cap policy (settings/caps.py): an explicit
    --limit-upload stands, a local disk is not a shared link."""
    repo.use_backend(settle_upload_cap(repo.backend, explicit_upload, mbit))


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
