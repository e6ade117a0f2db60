"""A compiled LangGraph graph made backup-ready: its runs are turns, cut at super-steps.

    server = ControlServer(sock, agent="mygraph", ledger=Ledger(path))
    graph = BackupReady(builder.compile(checkpointer=SqliteSaver(conn)), server)
    server.start()
    graph.invoke({"messages": [...]}, {"configurable": {"thread_id": "t1"}})

Every `invoke`, `stream`, `ainvoke` and `astream` is a turn, so a quiesce waits
for it; but a run of many steps (a model call, tools, a model call ...) does not
hold a backup for its whole length: the run gives its turn back at every
super-step boundary of the root graph, right after that step's checkpoint is in
the checkpointer, and takes a turn again before the next step starts. A backup
therefore captures each thread at a checkpoint, never inside a step, and
everything a step did outside the checkpointer (a vector index, a file) is
captured together with the checkpoint that records it.

How the boundary is found: the graph's checkpointer is wrapped, and its `put`
for the root namespace is the boundary. Runs are forced to `durability="sync"`
(LangGraph then waits for that `put` before starting the next step; with
"async" the next step would already run while the checkpoint is written, and
with "exit" there would be no boundary before the run ends). Subgraph
checkpoints (a non-empty checkpoint_ns) are mid-step for the parent: no
boundary there. `put_writes` (a task's writes, stored as it finishes) is a
*finishing* turn: admitted while a quiesce waits, never once it holds.

`flush` and the checkpointer: SqliteSaver and AsyncSqliteSaver commit every
`put` and `put_writes` at once, in WAL mode with synchronous=FULL (the WAL is
fsynced at each commit), so at a boundary nothing is buffered and everything is
durable; the WAL stays where it is, and cleancut pins the database with its WAL
in the pause (a read transaction) and copies it through SQLite's backup API.
Nothing to do in the pause, so by default `flush` does nothing to it. With
`truncate_wal=True`, `flush` also moves the WAL into the main file and truncates
it (`wal_checkpoint(TRUNCATE)`), for captures by tools that copy the database
file alone; it lengthens the pause (benchmarks/RESULTS.md).

LangGraph is imported only here: `import cleancut.sdk` does not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
    )
    from langgraph.config import get_config
    from langgraph.pregel import Pregel
except ImportError as exc:  # the extra is not installed: say which one
    raise ImportError(
        f"cleancut.sdk.langgraph needs LangGraph: pip install 'cleancut[langgraph]' ({exc})"
    ) from exc

from .server import ControlServer

ASYNC_WAIT_S = 0.05  # how long an async run waits in a worker thread before looking again
_PASSTHROUGH = (
    "get", "get_tuple", "list", "delete_thread", "delete_for_runs", "copy_thread", "prune",
    "aget", "aget_tuple", "alist", "adelete_thread", "adelete_for_runs", "acopy_thread",
    "aprune", "get_next_version", "get_delta_channel_history", "aget_delta_channel_history",
)


class _Run:
    """One invoke/stream: whether it holds its turn now.

    A run started inside another run's step (a node that invokes a backup-ready graph)
    is *nested*: it lives in the outer run's turn and step, so it neither takes a turn
    (which would wait for a quiesce that waits for the outer run) nor gives one back.
    """

    def __init__(self, server: ControlServer, nested: bool = False) -> None:
        self.server = server
        self.nested = nested
        self.held = False

    def enter(self) -> None:
        if not self.nested:
            self.server.enter_turn()
            self.held = True

    async def aenter(self) -> None:
        if not self.nested:
            await _aenter(self.server, finishing=False)
            self.held = True

    def leave(self) -> None:
        if self.held:
            self.held = False
            self.server.leave_turn()


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("cleancut_run", default=None)


async def _aenter(server: ControlServer, finishing: bool) -> None:
    """Take a turn without blocking the event loop: the wait runs in a worker thread,
    which never takes the turn itself, so a cancelled run leaves no turn behind."""
    while not server.try_enter_turn(finishing):
        await asyncio.to_thread(server.wait_admitted, ASYNC_WAIT_S, finishing)


def _root(config: RunnableConfig) -> bool:
    return not config.get("configurable", {}).get("checkpoint_ns", "")


class GatedCheckpointer(BaseCheckpointSaver[Any]):
    """Wraps a checkpointer: a root `put` is a super-step boundary, where a quiesce holds."""

    def __init__(self, inner: BaseCheckpointSaver[Any], server: ControlServer) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.server = server
        for name in _PASSTHROUGH:
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    @property
    def config_specs(self) -> list[Any]:
        return self.inner.config_specs

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        run = _RUN.get()
        if run is None:  # outside a run (update_state from the agent): a turn of its own
            with self.server.turn():
                return self.inner.put(config, checkpoint, metadata, new_versions)
        saved = self.inner.put(config, checkpoint, metadata, new_versions)
        if _root(config):  # the step's checkpoint is in: a quiesce may hold here
            run.leave()
            run.enter()
        return saved

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        run = _RUN.get()
        if run is None:
            await _aenter(self.server, finishing=False)
            try:
                return await self.inner.aput(config, checkpoint, metadata, new_versions)
            finally:
                self.server.leave_turn()
        saved = await self.inner.aput(config, checkpoint, metadata, new_versions)
        if _root(config):
            run.leave()
            await run.aenter()
        return saved

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.server.enter_turn(finishing=_RUN.get() is not None)
        try:
            self.inner.put_writes(config, writes, task_id, task_path)
        finally:
            self.server.leave_turn()

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await _aenter(self.server, finishing=_RUN.get() is not None)
        try:
            await self.inner.aput_writes(config, writes, task_id, task_path)
        finally:
            self.server.leave_turn()


class BackupReady:
    """A compiled graph whose runs are turns of `server`, cut at super-step boundaries."""

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        server: ControlServer,
        checkpoint_path: str | Path | None = None,
        truncate_wal: bool = False,
    ) -> None:
        inner = graph.checkpointer
        if not isinstance(inner, BaseCheckpointSaver):
            raise ValueError("compile the graph with a checkpointer to make it backup-ready")
        self.server = server
        self.checkpointer = GatedCheckpointer(inner, server)
        self.graph = graph.copy({"checkpointer": self.checkpointer})
        path = checkpoint_path if checkpoint_path is not None else _sqlite_path(inner)
        self.checkpoint_path = Path(path) if path else None
        self.truncate_wal = truncate_wal
        server.on_flush(self.flush)

    # --- runs -------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Any:
        with self._run():
            return self.graph.invoke(input, config, **_sync_durability(kw))

    def stream(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Iterator[Any]:
        """A turn while it runs: iterate it to the end (or close it) promptly, since a
        consumer that parks between chunks holds the turn and a backup waits for it."""
        with self._run():
            yield from self.graph.stream(input, config, **_sync_durability(kw))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Any:
        async with self._arun():
            return await self.graph.ainvoke(input, config, **_sync_durability(kw))

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kw: Any
    ) -> AsyncIterator[Any]:
        async with self._arun():
            async for chunk in self.graph.astream(input, config, **_sync_durability(kw)):
                yield chunk

    def __getattr__(self, name: str) -> Any:
        """Everything else (get_state, update_state, get_state_history ...) is the graph's;
        its checkpointer writes are turns of their own."""
        return getattr(self.graph, name)

    @contextlib.contextmanager
    def _run(self) -> Iterator[None]:
        run = _Run(self.server, nested=_RUN.get() is not None)
        run.enter()
        token = _RUN.set(run)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):  # a stream closed from another context
                _RUN.reset(token)
            run.leave()

    @contextlib.asynccontextmanager
    async def _arun(self) -> AsyncIterator[None]:
        run = _Run(self.server, nested=_RUN.get() is not None)
        await run.aenter()
        token = _RUN.set(run)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                _RUN.reset(token)
            run.leave()

    # --- flush ------------------------------------------------------------

    def flush(self) -> None:
        """Called at `flush`, turns held: every put is committed and fsynced already; with
        truncate_wal, the WAL is also moved into the database file (module docstring)."""
        if self.truncate_wal and self.checkpoint_path is not None:
            wal_checkpoint(self.checkpoint_path)


def effect_key(name: str, config: RunnableConfig | None = None) -> str:
    """An idempotency key for a side effect inside a node: the thread, the super-step,
    the task (its checkpoint namespace: the node and the task id LangGraph derives from
    the checkpoint, so two Send()s to one node differ) and `name` (say a tool call's
    index). A re-run of the task from the same checkpoint (after a crash, a restore, an
    interrupt) makes the same key; another step or task another one."""
    config = config if config is not None else get_config()
    thread = config.get("configurable", {}).get("thread_id", "")
    step = config.get("metadata", {}).get("langgraph_step")
    ns = config.get("configurable", {}).get("checkpoint_ns", "")
    return f"{thread}/{step}/{ns}/{name}"


def wal_checkpoint(path: str | Path) -> None:
    """Checkpoint a SQLite database's WAL into its main file (fsynced) and truncate it."""
    conn = sqlite3.connect(str(path), timeout=5)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


def _sync_durability(kw: dict[str, Any]) -> dict[str, Any]:
    durability = kw.get("durability", "sync")
    if durability != "sync":
        raise ValueError(
            f"durability={durability!r}: a backup-ready graph persists every step before the "
            "next starts (durability='sync'), or a backup could cut a step in half"
        )
    return {**kw, "durability": "sync"}


def _sqlite_path(saver: BaseCheckpointSaver[Any]) -> str | None:
    """The database file of a sync SqliteSaver; None for other checkpointers."""
    conn = getattr(saver, "conn", None)
    lock = getattr(saver, "lock", None)
    if not isinstance(conn, sqlite3.Connection) or lock is None:
        return None
    with lock:
        rows = conn.execute("PRAGMA database_list").fetchall()
    main = [row[2] for row in rows if row[1] == "main" and row[2]]
    return main[0] if main else None
