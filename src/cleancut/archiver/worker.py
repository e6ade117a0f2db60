"""A chunking worker process: one file at a time, chunked, hashed, compressed and sealed.

Run by archiver/pool.py as `python -m cleancut.archiver.worker CTL_FD RESULT_FD`.
It gets the repository's keys and parameters once (INIT, archiver/wire.py),
then files as open descriptors the parent opened safely (the walk's rules:
relative to the directory, never through a link, regular files only). For each
file it reads from the given offset to the end, chunks with the repository's
parameters, hashes each chunk with the keyed BLAKE3, and compresses and seals
the chunks it has not seen (neither in this backup nor in the known IDs the
parent sent) under the AES key of its current pack salt. It sends the sealed
boxes back in file order and rotates its salt once it sealed a pack's worth,
so the parent assembles packs exactly as the in-process saver does: the
repository format does not change.

It holds one read window and one chunk's copies at a time. It never writes to
the repository, never decides what is stored (the parent's index does), and
exits when the parent says QUIT or its control socket closes. SIGINT is
ignored: the parent owns the interrupt and shuts the worker down.
"""

from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import sys
from collections import deque
from dataclasses import dataclass

from cleancut.repository.chunker import chunk_fd_into, window_buffer
from cleancut.repository.compress import compress
from cleancut.repository.config import ChunkerParams
from cleancut.repository.crypto import SALT_LEN, MasterKeys
from cleancut.repository.pack import DATA, blob_aad, pack_sealer

from . import wire

# How much of each queued file to ask the kernel to read ahead, and of all queued files
# together (the parent queues up to 64: asking for all of them at once would have the
# disk seek between files the worker reaches only seconds later).
READAHEAD_BYTES = 32 << 20
READAHEAD_BUDGET = 64 << 20
READ_WINDOW = 4 << 20  # bytes read per window (at least a largest chunk)


class ChunkWorker:
    def __init__(
        self, keys: MasterKeys, params: ChunkerParams, level: int, pack_size: int, out: int
    ) -> None:
        self.keys = keys
        self.params = params
        self.level = level
        self.pack_size = pack_size
        self.out = out
        self.sent: set[bytes] = set()  # blobs sealed by this worker in this backup
        self.salt = b""
        self.sealed = 0
        # Every window of every file is read into it; a window of one largest chunk
        # (8 MiB in all with the default 4 MiB chunks, not 12) costs only more reads.
        self.buf = window_buffer(params, READ_WINDOW)
        self._new_salt()

    def _new_salt(self) -> None:
        self.salt = os.urandom(SALT_LEN)
        self.sealer = pack_sealer(self.keys, self.salt)
        self.sealed = 0

    def retire(self) -> None:
        if self.sealed:
            wire.send(self.out, wire.RETIRE.pack(b"R", self.salt))

    def file(self, job: int, fd: int, offset: int, size: int, known: set[bytes]) -> None:
        read = 0
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            for chunk in chunk_fd_into(fd, self.params, self.buf):
                self._chunk(job, chunk, known)
                read += len(chunk)
            after = os.fstat(fd)  # the parent's change check (it closed its descriptor)
        except OSError as exc:
            text = (exc.strerror or str(exc)).encode()
            wire.send(self.out, wire.FAILED.pack(b"X", job, exc.errno or 0) + text)
            return
        finally:
            os.close(fd)
        wire.send(self.out, wire.DONE.pack(b"E", job, read, after.st_mtime_ns, after.st_size))

    def _chunk(self, job: int, chunk: memoryview, known: set[bytes]) -> None:
        blob_id = self.keys.blob_id(chunk)
        if blob_id in known or blob_id in self.sent:
            wire.send(self.out, wire.KNOWN.pack(b"K", job, blob_id, len(chunk)))
            return
        box = self.sealer.seal(compress(chunk, self.level), blob_aad(DATA, blob_id))
        wire.send(self.out, wire.BLOB.pack(b"B", job, self.salt, blob_id, len(chunk)), box)
        self.sent.add(blob_id)
        self.sealed += len(box)
        if self.sealed >= self.pack_size:
            self.retire()
            self._new_salt()


def _init(ctl: socket.socket, out: int) -> ChunkWorker:
    msg = ctl.recv(wire.INIT.size)
    if len(msg) != wire.INIT.size or msg[:1] != b"I":
        raise SystemExit(2)
    _, enc, id_key, lo, avg, hi, level, pack_size = wire.INIT.unpack(msg)
    keys = MasterKeys(enc, id_key)
    return ChunkWorker(keys, ChunkerParams(lo, avg, hi), level, pack_size, out)


@dataclass
class _File:
    job: int
    fd: int
    offset: int
    size: int
    known: set[bytes]
    advised: bool = False  # its readahead was asked for


def serve(ctl: socket.socket, out: int) -> None:
    worker = _init(ctl, out)
    queue: deque[_File | None] = deque()  # None: quit once the files before it are done
    while True:
        if not queue:
            queue.append(_receive(ctl, 0))
        _drain(ctl, queue)
        item = queue.popleft()
        if item is None:
            break
        _advise(queue)
        worker.file(item.job, item.fd, item.offset, item.size, item.known)
    for item in queue:
        if item is not None:
            os.close(item.fd)
    worker.retire()


def _drain(ctl: socket.socket, queue: deque[_File | None]) -> None:
    """Take every file already sent (the parent sends several)."""
    while queue[-1] is not None:
        try:
            item = _receive(ctl, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        queue.append(item)


def _advise(queue: deque[_File | None]) -> None:
    """Ask the kernel to read ahead of the next queued files, up to READAHEAD_BUDGET bytes
    in all: their first bytes are in memory when their turn comes."""
    budget = READAHEAD_BUDGET
    for item in queue:
        if item is None or budget <= 0:
            return
        length = min(item.size, READAHEAD_BYTES, budget)
        budget -= length
        if not item.advised:
            item.advised = True
            with contextlib.suppress(OSError):
                os.posix_fadvise(item.fd, item.offset, length, os.POSIX_FADV_WILLNEED)


def _receive(ctl: socket.socket, flags: int) -> _File | None:
    # socket.recv_fds drops `flags` (CPython 3.11): recvmsg itself, descriptors unpacked here.
    msg, ancdata, _flags, _addr = ctl.recvmsg(wire.MAX_DATAGRAM, socket.CMSG_SPACE(4), flags)
    fds = [
        fd
        for level, kind, data in ancdata
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
        for fd in array.array("i", data[: len(data) - len(data) % 4])
    ]
    if not msg or msg[:1] == wire.QUIT or not fds:
        for fd in fds:
            os.close(fd)
        return None
    _, job, offset, size, count = wire.FILE.unpack_from(msg)
    ids = msg[wire.FILE.size : wire.FILE.size + count * wire.ID_LEN]
    known = {ids[i : i + wire.ID_LEN] for i in range(0, len(ids), wire.ID_LEN)}
    return _File(job, fds[0], offset, size, known)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=int(argv[1]))
    out = int(argv[2])
    try:
        serve(ctl, out)
    except (BrokenPipeError, ConnectionResetError):
        return 1  # the parent is gone: nothing to report to
    finally:
        os.close(out)
        ctl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
