"""Worker processes for a backup's new file content (decision 0010).

One Python thread cannot chunk, hash, compress and seal a large backup at the
speed of the disk: the chunker holds the GIL. A `ChunkPool` runs one worker
process per core but one (archiver/worker.py, started with fork+exec of this Python:
no fork of a threaded parent) and hands each whole file to the worker with the
least outstanding bytes, as a descriptor the walk opened (SCM_RIGHTS). The
worker streams the file from the given offset and sends back its blobs sealed
under pack salts it chooses; one reader thread per worker here passes them to
the BlobSaver, which keeps every decision of the main process: deduplication
against the index, pack assembly, pack writes, index segments. The snapshot is
written by the caller only after `close()` saw every worker exit cleanly.

Memory is bounded: at most `max_files()` files per worker in flight (their
descriptors are the worker's: closed here once sent), each worker holds one read window, a
pipe holds at most one message in transit, and the saver holds one open pack
per worker salt plus the packs waiting for the disk.

A worker that dies (killed, out of memory) ends its pipe: the reader sees the
end, the pool is marked failed, and the backup stops with WorkerDied (exit 22)
before any snapshot is written. Blobs already received are whole (messages
are framed), so the saver may still store and index them for the next run.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

from cleancut.errors import CleancutError, WorkerDied
from cleancut.repository.repository import Repository

from . import wire
from .saver import BlobSaver

# Files in flight per worker. Many, so the walk goes on listing and handing over small
# files while a worker compresses a large one (with 8 the walk stalled behind the first
# large files and walked the rest of the tree after them, alone: decision 0019).
MAX_FILES = 64


class FileStatus(NamedTuple):
    """What the change check needs of a file's status after it was read (a worker's
    fstat of its descriptor, sent back with DONE)."""

    st_mtime_ns: int
    st_size: int


@dataclass(eq=False)
class FileJob:
    """One file handed to a worker; filled in by the worker's reader thread."""

    job: int
    size: int
    ids: list[bytes] = field(default_factory=list)
    read: int = 0
    after: FileStatus | None = None
    error: OSError | None = None
    done: bool = False


class _Worker:
    def __init__(self, proc: subprocess.Popen[bytes], ctl: socket.socket, res: int) -> None:
        self.proc = proc
        self.ctl = ctl
        self.res = res
        self.jobs: dict[int, FileJob] = {}
        self.outstanding = 0  # bytes of its unfinished files
        self.ended = False
        self.thread: threading.Thread | None = None


def core_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def max_files(workers: int) -> int:
    """Files in flight per worker: MAX_FILES, or fewer if the descriptor limit is low
    (each holds a descriptor in the worker, which has this process's limit; a quarter of
    it is theirs)."""
    try:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        limit = 1024
    if limit == resource.RLIM_INFINITY:
        return MAX_FILES
    return max(1, min(MAX_FILES, limit // 4 // max(1, workers)))


def worker_count() -> int:
    """One worker per core but one: the main process's walk, reader threads and pack
    writes keep a core busy (decision 0010: on two cores a second worker bought no
    wall time and cost 50 MiB)."""
    return max(1, core_count() - 1)


class ChunkPool:
    def __init__(self, repo: Repository, saver: BlobSaver, workers: int | None = None) -> None:
        self.repo = repo
        self.saver = saver
        self.cond = threading.Condition()
        self.workers: list[_Worker] = []
        self.next_job = 0
        self.failure: BaseException | None = None
        self.closing = False
        self.finished = False  # closed or aborted: workers reaped, descriptors closed
        count = workers or worker_count()
        self.max_files = max_files(count)
        try:
            for _ in range(count):
                self.workers.append(self._spawn())
        except BaseException:
            self.abort()
            raise

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    # --- start ------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        ctl_parent, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        res_read, res_write = os.pipe2(os.O_CLOEXEC)
        wire.widen_pipe(res_read)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cleancut.archiver.worker",
                    str(ctl_child.fileno()),
                    str(res_write),
                ],
                pass_fds=(ctl_child.fileno(), res_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except OSError:
            for end in (ctl_parent, ctl_child):
                end.close()
            os.close(res_read)
            os.close(res_write)
            raise
        ctl_child.close()
        os.close(res_write)
        worker = _Worker(proc, ctl_parent, res_read)
        config = self.repo.config
        params = config.chunker
        keys = self.repo.keys
        ctl_parent.sendall(
            wire.INIT.pack(
                b"I",
                keys.encryption,
                keys.id_key,
                params.min_size,
                params.avg_size,
                params.max_size,
                config.compression_level,
                config.pack_size,
            )
        )
        worker.thread = threading.Thread(
            target=self._read, args=(worker,), name=f"worker-{proc.pid}", daemon=True
        )
        worker.thread.start()
        return worker

    # --- the walk's side --------------------------------------------------------

    def submit(self, fd: int, offset: int, size: int, known: list[bytes]) -> FileJob:
        """Hand an open file to a worker (the pool owns `fd` from here on: it is closed
        once sent, the worker holding its own)."""
        try:
            worker = self._free_worker()
        except BaseException:
            os.close(fd)
            raise
        with self.cond:
            self.next_job += 1
            job = FileJob(self.next_job, size)
            worker.jobs[job.job] = job
            worker.outstanding += size
        ids = b"".join(known[: wire.MAX_KNOWN])
        msg = wire.FILE.pack(b"F", job.job, offset, size, len(ids) // wire.ID_LEN) + ids
        try:
            socket.send_fds(worker.ctl, [msg], [fd])
        except OSError:
            os.close(fd)
            # A dead worker's socket: wait for its reader to say how it died.
            with self.cond:
                while not worker.ended:
                    self.cond.wait()
                self._check_locked()
            raise
        os.close(fd)
        return job

    def has_room(self) -> bool:
        """Whether a file submitted now would be taken without waiting."""
        with self.cond:
            return any(len(w.jobs) < self.max_files for w in self.workers)

    def _free_worker(self) -> _Worker:
        with self.cond:
            while True:
                self._check_locked()
                free = [w for w in self.workers if len(w.jobs) < self.max_files]
                if free:
                    return min(free, key=lambda w: w.outstanding)
                self.cond.wait()

    def wait(self, job: FileJob) -> None:
        """Until the job is done; WorkerDied (or the saver's error) if it never will be."""
        with self.cond:
            while not job.done:
                self._check_locked()
                self.cond.wait()

    def _check(self) -> None:
        with self.cond:
            self._check_locked()

    def _check_locked(self) -> None:
        if self.failure is not None:
            raise self.failure

    # --- reader threads ---------------------------------------------------------

    def _read(self, worker: _Worker) -> None:
        scratch = memoryview(bytearray(1 << 20))
        try:
            while self._next(worker, scratch):
                pass
        except OSError:
            pass  # the pipe failed: the worker is gone, _ended says how
        except BaseException as exc:  # the saver failed (a pack write): stop the backup
            with self.cond:
                if self.failure is None:
                    self.failure = exc
                self.cond.notify_all()
        finally:
            self._ended(worker)

    def _next(self, worker: _Worker, scratch: memoryview) -> bool:
        """Read one message and act on it; False at the pipe's end. A sealed blob is read
        straight into its pack (or dropped, if the repository has it)."""
        head = wire.read_exact(worker.res, wire.LENGTH.size + 1)
        if head is None:
            return False
        length = wire.LENGTH.unpack_from(head)[0]
        kind = bytes(head[wire.LENGTH.size :])
        if kind != b"B":
            body = wire.read_exact(worker.res, length - 1)
            if body is None:
                return False
            self._handle(worker, kind + bytes(body))
            return True
        rest = wire.read_exact(worker.res, wire.BLOB.size - 1)
        if rest is None:
            return False
        _, job_id, salt, blob_id, raw = wire.BLOB.unpack(kind + bytes(rest))
        size = length - wire.BLOB.size
        room = self.saver.reserve_sealed(salt, blob_id, size)
        if room is None:
            if not wire.skip(worker.res, size, scratch):
                return False
        else:
            filled = wire.read_into(worker.res, room)
            room.release()
            if not filled:
                return False  # a partial blob is never committed to its pack
            self.saver.commit_sealed(salt, blob_id, size, raw)
        worker.jobs[job_id].ids.append(blob_id)
        return True

    def _handle(self, worker: _Worker, msg: bytes) -> None:
        kind = msg[:1]
        if kind == b"K":
            _, job_id, blob_id, raw = wire.KNOWN.unpack_from(msg)
            worker.jobs[job_id].ids.append(blob_id)
        elif kind == b"R":
            self.saver.retire_salt(wire.RETIRE.unpack_from(msg)[1])
        elif kind == b"E":
            _, job_id, read, mtime_ns, size = wire.DONE.unpack_from(msg)
            self._finished(worker, job_id, read, FileStatus(mtime_ns, size), None)
        elif kind == b"X":
            _, job_id, err = wire.FAILED.unpack_from(msg)
            text = msg[wire.FAILED.size :].decode(errors="replace")
            self._finished(worker, job_id, 0, None, OSError(err, text))
        else:
            raise CleancutError(f"backup worker {worker.proc.pid} sent an unknown message")

    def _finished(
        self,
        worker: _Worker,
        job_id: int,
        read: int,
        after: FileStatus | None,
        error: OSError | None,
    ) -> None:
        job = worker.jobs[job_id]
        with self.cond:
            job.read, job.after, job.error, job.done = read, after, error, True
            del worker.jobs[job_id]
            worker.outstanding -= job.size
            self.cond.notify_all()

    def _ended(self, worker: _Worker) -> None:
        """The worker's pipe ended: a clean exit once told to quit, else a death."""
        code = worker.proc.wait()
        with self.cond:
            worker.ended = True
            if (code != 0 or worker.jobs or not self.closing) and self.failure is None:
                self.failure = WorkerDied(_death(worker.proc.pid, code))
            self.cond.notify_all()

    # --- shutdown ---------------------------------------------------------------

    def close(self) -> None:
        """Tell every worker to quit, wait for each, and raise if one did not exit cleanly
        (every file must be done before: the caller waited on its jobs)."""
        with self.cond:
            self.closing = True
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.ctl.send(wire.QUIT)
        self._join()
        self.finished = True
        self._check()

    def abort(self) -> None:
        """Stop at once (the backup failed): workers are killed and reaped."""
        if self.finished:
            return
        with self.cond:
            self.closing = True
            if self.failure is None:
                self.failure = CleancutError("backup aborted")
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.proc.kill()
        self._join()
        for worker in self.workers:
            worker.jobs.clear()
        self.finished = True

    def _join(self) -> None:
        for worker in self.workers:
            if worker.thread is not None:
                worker.thread.join()
            worker.ctl.close()
            if worker.res >= 0:
                os.close(worker.res)
                worker.res = -1


def _death(pid: int, code: int) -> str:
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    return (
        f"backup worker process {pid} {how}; no snapshot was written "
        "(what it stored is kept for the next run): run the backup again"
    )
