"""Errors a user can meet, each with one clear line and a distinct exit code.

The command line turns any CleancutError into its message on stderr and its
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FATAL = 1
    USAGE = 2
    WARNINGS = 3  # the snapshot was written, but some files were skipped or changed
    INTEGRITY = 4  # check or restore found damaged data
    UNSAFE_ENTRY = 5  # restore refused entries that would escape the target
    NO_REPOSITORY = 10
    UNKNOWN_FORMAT = 11
    LOCKED = 12
    CHAIN_BROKEN = 6  # a chain link is missing or altered
    QUIESCE_MISSED = 7  # the agent did not confirm quiesce in time (or the lease lapsed)
    AGENT_UNREACHABLE = 8  # no agent answered on the control socket, or it spoke another protocol
    CAPTURE_FAILED = 9  # a pre/post hook failed or timed out, or a freeze could not be applied
    BACKEND_UNAVAILABLE = 14  # the storage endpoint could not be reached within the retry budget
    ACCESS_DENIED = 15  # the storage refused the credentials, or the bucket does not exist
    APPEND_ONLY = 16  # a deletion was refused: the repository is open append-only
    JOURNAL_DAMAGED = 17  # journal replay stopped at the last good record (corruption, gap)
    NOT_OURS = 18  # a path cleancut would write to or delete holds something it did not create
    AGENT_MISBEHAVED = 19  # the agent broke the protocol, or changed files while claiming quiesce
    MOUNT_FAILED = 20  # FUSE is unavailable, or the mountpoint is busy, not empty or stale
    PATH_NOT_FOUND = 21  # the path named is not in the snapshot
    WORKER_DIED = 22  # a backup worker process died (killed, out of memory): no snapshot written


class CleancutError(Exception):
    """An error with a message meant for the operator."""

    exit_code = ExitCode.FATAL


class UsageError(CleancutError):
    exit_code = ExitCode.USAGE


class WrongPassphrase(CleancutError):
    # The issue fixes this one at 1: scripts test "exit 1 = could not open".
    exit_code = ExitCode.FATAL


class NoPassphrase(CleancutError):
    exit_code = ExitCode.FATAL


class NotARepository(CleancutError):
    exit_code = ExitCode.NO_REPOSITORY


class UnknownFormat(CleancutError):
    exit_code = ExitCode.UNKNOWN_FORMAT


class IntegrityError(CleancutError):
    """Stored data failed authentication, hashing or structural checks."""

    exit_code = ExitCode.INTEGRITY


class NoSpace(CleancutError):
    # The issue fixes a full filesystem at exit 1 with a line that names it.
    exit_code = ExitCode.FATAL


class ObjectNotFound(CleancutError):
    """A backend object does not exist."""


class SnapshotNotFound(CleancutError):
    exit_code = ExitCode.USAGE


class PathNotFound(CleancutError):
    exit_code = ExitCode.USAGE


class NotInSnapshot(PathNotFound):
    """A path named on the command line (ls, dump, restore --include) is not in the snapshot."""

    exit_code = ExitCode.PATH_NOT_FOUND


class MountFailed(CleancutError):
    """The snapshots could not be mounted: no FUSE, or the mountpoint is busy or not empty."""

    exit_code = ExitCode.MOUNT_FAILED


class ChainBroken(CleancutError):
    """A chain's sequence or hash links do not hold."""

    exit_code = ExitCode.CHAIN_BROKEN


class RepositoryLocked(CleancutError):
    """Another process holds (or a crashed one left) the repository's prune lock."""

    exit_code = ExitCode.LOCKED


class QuiesceMissed(CleancutError):
    """The agent did not confirm quiesce within the timeout, or the lease lapsed during capture."""

    exit_code = ExitCode.QUIESCE_MISSED


class AgentUnreachable(CleancutError):
    """Nothing answered on the control socket, or it did not speak protocol v1."""

    exit_code = ExitCode.AGENT_UNREACHABLE


class CaptureFailed(CleancutError):
    """A hook failed or timed out, or the agent's processes could not be frozen."""

    exit_code = ExitCode.CAPTURE_FAILED


class BackendUnavailable(CleancutError):
    """The object store did not answer (or kept failing) within the retry budget."""

    exit_code = ExitCode.BACKEND_UNAVAILABLE


class AccessDenied(CleancutError):
    """The object store refused the credentials, or the bucket does not exist."""

    exit_code = ExitCode.ACCESS_DENIED


class AppendOnly(CleancutError):
    """A deletion or overwrite was refused because the repository is open append-only."""

    exit_code = ExitCode.APPEND_ONLY


class NotOurs(CleancutError):
    """A staging directory, socket path or other place cleancut manages holds something that
    cleancut did not create (no marker of ours): refused rather than deleted or overwritten."""

    exit_code = ExitCode.NOT_OURS


class AgentMisbehaved(CleancutError):
    """The agent's reply broke protocol v1, or files changed while it claimed to be quiesced."""

    exit_code = ExitCode.AGENT_MISBEHAVED


class WorkerDied(CleancutError):
    """A backup's worker process died before its files were done: nothing was committed."""

    exit_code = ExitCode.WORKER_DIED
