"""Where a backup's new file content is chunked: in this process, or in worker processes.

Starting the pool costs a Python interpreter and the crypto, zstd and chunking
imports per worker: about 0.1 s of CPU each (decision 0010 has the
measurement). A backup that reads little never pays it: the first
`POOL_THRESHOLD` bytes of files to read are chunked here, in the owner thread,
and the pool starts only when a file would take the total past it. From then
on every file goes to the pool, but for a small one (below the chunker's minimum
size: one blob) while every worker has its fill of files queued: the walk
chunks that one here instead of waiting, so it keeps going through a tree of
small files while the workers compress the large ones before them (decision
0019). A machine with one core keeps everything here.
"""

from __future__ import annotations

from cleancut.repository.repository import Repository

from .pool import ChunkPool, FileJob, core_count, worker_count
from .saver import BlobSaver

POOL_THRESHOLD = 64 << 20


class NewContent:
    def __init__(
        self,
        repo: Repository,
        saver: BlobSaver,
        threshold: int = POOL_THRESHOLD,
        workers: int | None = None,
    ) -> None:
        self.repo = repo
        self.saver = saver
        self.threshold = threshold
        self.cores = core_count()
        self.workers = workers or worker_count()
        self.small = repo.config.chunker.min_size  # a file below it is one blob
        self.in_process = 0  # bytes chunked here so far
        self.pool: ChunkPool | None = None
        self.closed = False

    def use_pool(self, size: int) -> bool:
        """Whether a file of `size` bytes still to read goes to the pool (which starts now
        if this file takes the backup past the threshold)."""
        if self.pool is not None:
            if size < self.small and not self.pool.has_room():
                self.in_process += size
                return False
            return True
        if self.cores < 2 or self.in_process + size <= self.threshold:
            self.in_process += size
            return False
        self.pool = ChunkPool(self.repo, self.saver, self.workers)
        return True

    def submit(self, fd: int, offset: int, size: int, known: list[bytes]) -> FileJob:
        assert self.pool is not None
        self.saver.reap()
        return self.pool.submit(fd, offset, size, known)

    def wait(self, job: FileJob) -> None:
        assert self.pool is not None
        self.pool.wait(job)

    def close(self) -> None:
        """Every file is done: the workers exit; WorkerDied if one did not exit cleanly."""
        self.closed = True
        if self.pool is not None:
            self.pool.close()

    def abort(self) -> None:
        if self.pool is not None and not self.pool.finished:
            self.pool.abort()
