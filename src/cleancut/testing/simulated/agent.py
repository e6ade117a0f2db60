"""The simulated agent: an OpenClaw-style agent writing its state as fast as it can.

Each turn follows "One turn, in order" of docs/simulated-agent.md and uses
every way of writing from its table. Every unit of work that writes the
workspace (a turn, a cron run, a memory flush, the indexer) runs inside the
SDK's `server.turn()`, so a `quiesce` finds the state between units of work.

Every write is recorded in the oracle before it starts, with the writes it
depends on; the sequence number travels inside what is written (see
formats.py). Decisions come from one seeded RNG on the turn thread, so a run
is deterministic given the seed apart from timing and the other threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleancut.sdk.ledger import Ledger
from cleancut.sdk.server import ControlServer

from . import diskio
from .content import Corpus
from .formats import WSEQ, cron_key, delivery_key, json_file, json_line, marker, tool_key
from .journalio import JournalWrites
from .layout import BAK_RING, WORKSPACE_FILES, Layout
from .memindex import Indexer, MemoryIndex
from .oracle import OracleWriter
from .provider import MockProvider, Settler

RUN_LOG_MAX_BYTES = 2 << 20
RUN_LOG_KEEP_LINES = 2000
TOOL_COUNT_WEIGHTS = (20, 25, 20, 12, 8, 6, 4, 3, 2)  # 0–8 tool calls per turn
TOOL_KINDS = (("read", 30), ("edit", 35), ("send", 35))
SIDE_EFFECTS = {"edit": "workspace.edit", "send": "message.send"}
# How often (per turn) the occasional work of step 7 happens.
P_MEMORY_FLUSH = 1 / 6
P_COMPACTION = 1 / 25
P_CRON = 1 / 8
P_CREDENTIALS = 1 / 40
P_CONFIG = 1 / 30
P_APPROVALS = 1 / 50


@dataclass
class AgentOptions:
    root: Path
    socket: Path
    oracle: Path
    seed: int = 0
    flush_interval: float = 15.0
    turn_pause: float = 0.0
    async_fraction: float = 0.0
    stuck: int = 0
    hang: bool = False
    index_debounce: float = 0.2
    reindex_every: int = 25
    journal: Path | None = None  # journal mode: write the tree through the journal here
    journal_start_after: int | None = None  # a fresh journal on a restored tree (its seq)
    index: Path | None = None  # journal mode: the memory index, outside the tree


def now_ms() -> int:
    return int(time.time() * 1000)


def _at(j: int | None) -> dict[str, int]:
    """The oracle's `j` field: the journal record a write goes into (journal mode only)."""
    return {} if j is None else {"j": j}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass
class Session:
    """What sessions.json says about one session, kept in memory between rewrites."""

    key: str
    session_id: str
    channel: str
    path: Path
    turns: int = 0
    last_entry_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    compactions: int = 0
    memory_flushes: int = 0
    memory_flush_at: int | None = None
    delivered: int = 0
    last_delivered: str | None = None
    tool_calls: int = 0
    updated_at: int = 0
    wseq: int = 0

    def entry(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "updatedAt": self.updated_at,
            "channel": self.channel,
            "chatType": "direct",
            "turns": self.turns,
            "lastEntryId": self.last_entry_id,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens,
            "compactionCount": self.compactions,
            "memoryFlushCount": self.memory_flushes,
            "memoryFlushAt": self.memory_flush_at,
            "delivered": self.delivered,
            "lastDeliveredQueueId": self.last_delivered,
            WSEQ: self.wseq,
        }


@dataclass
class Note:
    """A daily note's running hash and size, so each append can record the note's version."""

    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0


class SimAgent:
    """The agent's state in memory and the units of work that write it to disk."""

    def __init__(self, opts: AgentOptions, server: ControlServer, ledger: Ledger,
                 oracle: OracleWriter, io: diskio.DirectWrites | JournalWrites | None = None,
                 rng_seed: str | None = None) -> None:
        self.opts = opts
        self.layout = Layout(opts.root)
        self.server = server
        self.ledger = ledger
        self.oracle = oracle
        # A restarted agent draws other numbers (fresh ids) than its first run did.
        self.rng = random.Random(opts.seed if rng_seed is None else rng_seed)
        self.corpus = Corpus(random.Random(opts.seed ^ 0x5EED if rng_seed is None
                                           else f"corpus:{rng_seed}"))
        self.provider = MockProvider(opts.seed, opts.async_fraction, opts.stuck)
        self.settler = Settler()
        self.io = io if io is not None else diskio.DirectWrites()
        self.files_lock = threading.Lock()  # workspace notes: tool edits vs the indexer's reads
        self.stop = threading.Event()
        self.index = MemoryIndex(self.layout, oracle, self.files_lock, db=opts.index)
        self.indexer = Indexer(self.index, server.turn, opts.index_debounce, opts.reindex_every,
                               self.stop)
        self.sessions: dict[str, Session] = {}
        self.sessions_deps: list[int] = []  # writes the next sessions.json version reflects
        self.jobs: list[dict[str, Any]] = []
        self.config: dict[str, Any] = {}
        self.config_bytes = b""
        self.token_id = 0
        self.notes: dict[str, Note] = {}
        self.threads: list[threading.Thread] = []
        self.turns_done = 0
        self.writes_done = 0

    # --- recorded writes ------------------------------------------------------
    # Each one notes the write in the oracle first, then performs it.

    def _rel(self, path: Path) -> str:
        return self.layout.rel(path)

    # In journal mode each runs inside io.step(), which fixes the record it goes into.

    def _line(self, path: Path, obj: dict[str, Any], deps: list[int]) -> int:
        with self.io.step() as j:
            seq = self.oracle.allocate()
            obj[WSEQ] = seq
            self.oracle.note(seq, "line", self._rel(path), deps, **_at(j))
            self.io.append(path, json_line(obj))
        self.writes_done += 1
        return seq

    def _replace(self, path: Path, obj: dict[str, Any], deps: list[int]) -> int:
        with self.io.step() as j:
            seq = self.oracle.allocate()
            obj[WSEQ] = seq
            self.oracle.note(seq, "file", self._rel(path), deps, **_at(j))
            self.io.replace(path, json_file(obj))
        self.writes_done += 1
        return seq

    def _ledger(self, key: str, state: str, deps: list[int], **detail: Any) -> int:
        with self.io.step() as j:
            if getattr(self.ledger, "held", False):
                j = None  # the SDK holds it (quiesced): it goes into a later record
            seq = self.oracle.add("ledger", self._rel(self.layout.ledger), deps, k=key,
                                  st=state, **_at(j))
            if state == "intent":
                if not self.ledger.intent(key, **detail):
                    raise RuntimeError(f"idempotency key {key} used twice")
            elif state == "started":
                self.ledger.started(key)
            elif state == "receipt":
                self.ledger.receipt(key, detail["receipt"])
            else:
                raise ValueError(state)
        self.writes_done += 1
        return seq

    def _rewrite_md(self, path: Path, body: str, deps: list[int]) -> int:
        with self.io.step() as j:
            seq = self.oracle.allocate()
            data = f"{body.rstrip()}\n\n{marker(seq)}\n".encode()
            self.oracle.note(seq, "file", self._rel(path), deps,
                             h=hashlib.sha256(data).hexdigest(), **_at(j))
            with self.files_lock:
                self.io.rewrite(path, data)
        self.writes_done += 1
        return seq

    def _note_line(self, path: Path, text: str, deps: list[int]) -> int:
        rel = self._rel(path)
        note = self.notes.setdefault(rel, Note())
        with self.io.step() as j:
            seq = self.oracle.allocate()
            data = f"{text} {marker(seq)}\n".encode()
            note.hasher.update(data)
            note.size += len(data)
            self.oracle.note(seq, "line", rel, deps, h=note.hasher.hexdigest(), n=note.size,
                             **_at(j))
            with self.files_lock:
                self.io.append(path, data)
        self.writes_done += 1
        return seq

    def _save_sessions(self, session: Session, deps: list[int]) -> int:
        with self.io.step() as j:
            seq = self.oracle.allocate()
            session.wseq = seq
            session.updated_at = now_ms()
            deps = deps + self.sessions_deps
            self.sessions_deps = []
            body = {s.key: s.entry() for s in self.sessions.values()}
            path = self.layout.sessions_index
            with self.io.lock(path):
                self.oracle.note(seq, "file", self._rel(path), deps, **_at(j))
                self.io.replace(path, json_file(body))
        self.writes_done += 1
        return seq

    def _save_jobs(self, deps: list[int]) -> int:
        return self._replace(self.layout.cron_jobs, {"version": 1, "jobs": self.jobs}, deps)

    # --- transcripts ------------------------------------------------------------

    def _entry_id(self) -> str:
        return f"{self.rng.getrandbits(48):012x}"

    def _entry(self, session: Session, obj: dict[str, Any], deps: list[int]) -> int:
        eid = self._entry_id()
        obj = {"id": eid, "parentId": session.last_entry_id or None, **obj}
        obj.setdefault("timestamp", iso(now_ms()))
        session.last_entry_id = eid
        return self._line(session.path, obj, deps)

    def _message(self, session: Session, message: dict[str, Any], deps: list[int]) -> int:
        return self._entry(session, {"type": "message", "message": message}, deps)

    def _new_session(self, key: str, channel: str) -> Session:
        sid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        session = Session(key, sid, channel, self.layout.transcript(sid))
        self.sessions[key] = session
        header = {"type": "session", "version": 3, "id": sid, "timestamp": iso(now_ms()),
                  "cwd": str(self.layout.workspace)}
        self._line(session.path, header, [])
        return session

    # --- setting up the tree ------------------------------------------------------

    def create_tree(self) -> None:
        """Write the initial state, every file through the recorded writers."""
        lay = self.layout
        self.io.make_dirs(lay)
        self.config = {
            "meta": {"lastTouchedVersion": "2026.1.1", "lastTouchedAt": iso(now_ms())},
            "agents": {"defaults": {"model": {"primary": "openai-codex/gpt-5"},
                                    "workspace": str(lay.workspace)},
                       "list": [{"id": "main", "default": True}]},
            "channels": {"telegram": {"enabled": True}, "discord": {"enabled": True}},
            "gateway": {"port": 18789, "mode": "local"},
            "notes": self.corpus.take(self.rng, 3000).splitlines(),
        }
        self._replace(lay.config, self.config, [])
        self.config_bytes = lay.config.read_bytes()
        self._edit_approvals()
        self._refresh_credentials()
        for name in WORKSPACE_FILES:
            self._rewrite_md(lay.workspace_file(name), self._md_body(name), [])
        self.jobs = [
            self._job("job-morning-brief", "Morning brief", 86_400_000),
            self._job("job-inbox-sweep", "Inbox sweep", 1_800_000),
        ]
        self._save_jobs([])
        channels = [("agent:main:main", "webchat"), ("agent:main:telegram:direct:4242", "telegram"),
                    ("agent:main:discord:direct:7777", "discord")]
        for key, channel in channels[: self.rng.choice((2, 3))]:
            self._new_session(key, channel)
        first = next(iter(self.sessions.values()))
        self._save_sessions(first, [])
        self._note_line(self._today_note(), f"# {self._day()}", [])
        self.index.create()

    def load_tree(self) -> None:
        """Journal mode, on an existing tree (a restart, or a restored copy): read the state
        back instead of creating it.

        Whatever sessions.json says, a session's counts come from its transcript (after a
        crash sessions.json may be behind it); what only sessions.json holds (deliveries,
        memory flushes) is taken from it. A transcript sessions.json does not list (a crash
        between its header and the first save) is left alone. The memory index, outside the
        tree, is rebuilt from the notes.
        """
        lay = self.layout
        self.io.make_dirs(lay)  # records only for what a restored tree lacks
        index = json.loads(lay.sessions_index.read_bytes())
        for key, entry in index.items():
            sid = entry["sessionId"]
            session = Session(key, sid, entry.get("channel", "webchat"), lay.transcript(sid))
            lines = [json.loads(raw) for raw in session.path.read_bytes().splitlines()]
            for obj in lines[1:]:
                session.last_entry_id = obj.get("id", session.last_entry_id)
                kind = obj.get("type")
                if kind == "turn":
                    session.turns += 1
                elif kind == "compaction":
                    session.compactions += 1
                msg = obj.get("message") if kind == "message" else None
                if not isinstance(msg, dict):
                    continue
                usage = msg.get("usage") or {}
                session.input_tokens += usage.get("input", 0)
                session.output_tokens += usage.get("output", 0)
                for item in msg.get("content") or []:
                    if isinstance(item, dict) and item.get("type") == "toolCall":
                        index_no = int(str(item.get("id", "call_-1")).rsplit("_", 1)[-1])
                        session.tool_calls = max(session.tool_calls, index_no + 1)
            session.memory_flushes = entry.get("memoryFlushCount", 0)
            session.memory_flush_at = entry.get("memoryFlushAt")
            session.delivered = entry.get("delivered", 0)
            session.last_delivered = entry.get("lastDeliveredQueueId")
            session.updated_at = entry.get("updatedAt", 0)
            session.wseq = entry.get(WSEQ, 0)
            self.sessions[key] = session
        self.jobs = json.loads(lay.cron_jobs.read_bytes())["jobs"]
        self.config_bytes = lay.config.read_bytes()
        self.config = json.loads(self.config_bytes)
        with contextlib.suppress(FileNotFoundError):
            self.token_id = json.loads(lay.creds.read_bytes()).get("tokenId", 0)
        for path in sorted(lay.notes_dir.glob("*.md")):
            data = path.read_bytes()
            note = self.notes.setdefault(self._rel(path), Note())
            note.hasher.update(data)
            note.size = len(data)
        self.index.create()

    def _job(self, job_id: str, name: str, every_ms: int) -> dict[str, Any]:
        start = now_ms()
        return {
            "id": job_id, "name": name, "enabled": True,
            "schedule": {"kind": "every", "everyMs": every_ms},
            "sessionTarget": "isolated",
            "payload": {"kind": "agentTurn", "message": f"Run the {name.lower()}."},
            "state": {"nextRunAtMs": start + every_ms, "lastRunAtMs": None,
                      "lastStatus": None, "runningAtMs": None, "lastDurationMs": None},
        }

    def _md_body(self, name: str) -> str:
        size = self.rng.randint(1024, 24 * 1024)
        return f"# {name[:-3]}\n\n{self.corpus.take(self.rng, size)}"

    def _day(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%d")

    def _today_note(self) -> Path:
        return self.layout.daily_note(self._day())

    # --- one turn -------------------------------------------------------------------

    def turn(self) -> None:
        """One user turn, in the order of docs/simulated-agent.md."""
        rng = self.rng
        main = [s for s in self.sessions.values() if not s.key.startswith("agent:main:cron:")]
        session = rng.choice(main)
        edited = False
        with self.io.lock(session.path):
            # 1. the user message
            user = self._message(session, {"role": "user", "content": [
                {"type": "text", "text": self.corpus.sentence(rng)}]}, [])
            # 2. sessions.json: updatedAt
            self._save_sessions(session, [user])
            # 3. tool calls
            for _ in range(rng.choices(range(9), TOOL_COUNT_WEIGHTS)[0]):
                kind = rng.choices([k for k, _ in TOOL_KINDS], [w for _, w in TOOL_KINDS])[0]
                edited |= self._tool_call(session, kind)
            # 4. the final assistant message and the turn marker
            reply_text = self.corpus.take(rng, rng.randint(80, 600))
            usage = {"input": rng.randint(200, 4000), "output": rng.randint(20, 800)}
            with self.io.step():  # journal mode: 4 and 5 are one record
                final = self._message(session, {"role": "assistant", "content": [
                    {"type": "text", "text": reply_text}], "usage": usage,
                    "stopReason": "stop"}, [])
                session.input_tokens += usage["input"]
                session.output_tokens += usage["output"]
                session.turns += 1
                mark = self._entry(session, {"type": "turn", "turn": session.turns}, [final])
                # 5. sessions.json: turn count, token totals, last entry id
                self._save_sessions(session, [mark])
            # 6. the outbound reply through the delivery queue
            self._deliver(session, reply_text, final)
            # 7. now and then
            if rng.random() < P_MEMORY_FLUSH:
                self._memory_flush(session, mark)
                edited = True
            if rng.random() < P_COMPACTION:
                self._compact(session)
        # 8. unlocked; the indexer hears of changed notes
        if edited:
            self.indexer.notify()
        self.turns_done += 1

    def _tool_call(self, session: Session, kind: str) -> bool:
        """One tool call: call line, ledger intent, the action, receipt, result line."""
        rng = self.rng
        index = session.tool_calls
        session.tool_calls += 1
        call_id = f"call_{index}"
        item: dict[str, Any] = {"type": "toolCall", "id": call_id}
        if kind == "read":
            item |= {"name": "read", "arguments": {"path": rng.choice(WORKSPACE_FILES)}}
        elif kind == "edit":
            target = rng.choice(WORKSPACE_FILES)
            item |= {"name": "edit", "arguments": {"path": target}}
        else:
            item |= {"name": "message", "arguments": {
                "to": f"user:{rng.randint(1, 99)}", "text": self.corpus.sentence(rng)}}
        key = tool_key(session.session_id, index) if kind in SIDE_EFFECTS else None
        if key:
            item["idempotencyKey"] = key
        call = self._message(session, {"role": "assistant", "content": [item]}, [])
        result: dict[str, Any] = {"role": "toolResult", "toolCallId": call_id,
                                  "toolName": item["name"], "isError": False}
        if key is None:
            result["content"] = [{"type": "text", "text": self.corpus.sentence(rng)}]
            self._message(session, result, [call])
            return False
        intent = self._ledger(key, "intent", [call], kind=SIDE_EFFECTS[kind],
                              session=session.key, call=call_id)
        started = self._ledger(key, "started", [intent])
        if kind == "edit":
            path = self.layout.workspace_file(item["arguments"]["path"])
            version = self._rewrite_md(path, self._md_body(path.name), [started])
            receipt_id = f"edit_{version}"
            receipt = self._ledger(key, "receipt", [version], receipt=receipt_id)
            result["details"] = {"status": "done", "receipt": receipt_id}
            self._message(session, result, [call, receipt])
            return True
        sent = self.provider.send(key, may_defer=True)
        if sent.receipt is not None:
            receipt = self._ledger(key, "receipt", [started], receipt=sent.receipt)
            result["details"] = {"status": "sent", "receipt": sent.receipt}
            self._message(session, result, [call, receipt])
            return False
        result["details"] = {"status": "accepted"}
        self._message(session, result, [call, started])
        if sent.delay is not None:
            rid = self.provider.receipt_id(key)
            self.settler.later(sent.delay, lambda: self._settle(key, started, rid))
        return False

    def _settle(self, key: str, started: int, receipt_id: str) -> None:
        """An accepted send's receipt, arriving outside any turn (the SDK holds it if quiesced)."""
        if self.stop.is_set():
            return
        self._ledger(key, "receipt", [started], receipt=receipt_id)

    def _deliver(self, session: Session, text: str, final: int) -> None:
        """Queue file, send, receipt, then the two-step acknowledge (rename, delete).

        Deliveries settle synchronously, inside the turn, as a channel API call
        does. An "accepted" delivery would need its acknowledge (a workspace
        write) when the receipt arrives; the SDK holds that receipt while
        quiesced but writes it on `flush`, so a capture would hold a queue file
        with a receipt. An agent that has such deliveries must apply receipt and
        acknowledge together, inside a turn.
        """
        rng = self.rng
        qid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        key = delivery_key(qid)
        path = self.layout.queue_file(qid)
        queued = self._replace(path, {
            "id": qid, "idempotencyKey": key, "sessionKey": session.key,
            "channel": session.channel, "to": session.key.rsplit(":", 1)[-1],
            "payload": {"text": text}, "createdAt": now_ms(), "attempts": 0}, [final])
        intent = self._ledger(key, "intent", [queued], kind="delivery", queueId=qid,
                              session=session.key)
        started = self._ledger(key, "started", [intent])
        sent = self.provider.send(key, may_defer=False)
        assert sent.receipt is not None
        with self.io.step() as j:  # journal mode: receipt and acknowledge are one record
            receipt = self._ledger(key, "receipt", [started], receipt=sent.receipt)
            delivered = path.with_suffix(".delivered")
            renamed = self.oracle.add("rename", self._rel(path), [receipt],
                                      to=self._rel(delivered), **_at(j))
            self.io.rename(path, delivered)
            removed = self.oracle.add("unlink", self._rel(delivered), [renamed], **_at(j))
            self.io.unlink(delivered)
        self.writes_done += 2
        session.delivered += 1
        session.last_delivered = qid
        self.sessions_deps.append(removed)

    def _memory_flush(self, session: Session, mark: int) -> None:
        path = self._today_note()
        if self._rel(path) not in self.notes:
            self._note_line(path, f"# {self._day()}", [])
        clock = datetime.now(UTC).strftime("%H:%M:%S")
        line = self._note_line(path, f"- {clock} {self.corpus.sentence(self.rng)}", [mark])
        session.memory_flushes += 1
        session.memory_flush_at = now_ms()
        self._save_sessions(session, [line])

    def _compact(self, session: Session) -> None:
        summary = self.corpus.take(self.rng, 300)
        entry = self._entry(session, {"type": "compaction", "summary": summary,
                                      "tokensBefore": session.input_tokens}, [])
        session.compactions += 1
        self._save_sessions(session, [entry])

    # --- the other units of work ------------------------------------------------------

    def cron_run(self) -> None:
        """Mark running, run an isolated session, append the run log, record last/next run."""
        rng = self.rng
        job = rng.choice(self.jobs)
        state = job["state"]
        start = now_ms()
        state["runningAtMs"] = start
        self._save_jobs([])
        key_name = f"agent:main:cron:{job['id']}"
        session = self.sessions.get(key_name) or self._new_session(key_name, "cron")
        slot = state["nextRunAtMs"]
        key = cron_key(job["id"], slot)
        with self.io.lock(session.path):
            self._message(session, {"role": "user", "content": [
                {"type": "text", "text": job["payload"]["message"]}]}, [])
            usage = {"input": rng.randint(200, 2000), "output": rng.randint(20, 400)}
            final = self._message(session, {"role": "assistant", "content": [
                {"type": "text", "text": self.corpus.take(rng, 200)}], "usage": usage,
                "stopReason": "stop"}, [])
            session.input_tokens += usage["input"]
            session.output_tokens += usage["output"]
            session.turns += 1
            mark = self._entry(session, {"type": "turn", "turn": session.turns}, [final])
            self._save_sessions(session, [mark])
        intent = self._ledger(key, "intent", [mark], kind="cron.run", jobId=job["id"], slot=slot)
        started = self._ledger(key, "started", [intent])
        sent = self.provider.send(key, may_defer=False)
        receipt = self._ledger(key, "receipt", [started], receipt=sent.receipt)
        end = now_ms()
        log = self.layout.cron_run_log(job["id"])
        line = self._line(log, {"ts": start, "jobId": job["id"], "action": "finished",
                                "status": "ok", "runAtMs": slot, "durationMs": end - start,
                                "sessionId": session.session_id, "sessionKey": session.key,
                                "key": key}, [receipt, mark])
        self._trim_run_log(log)
        state.update(lastRunAtMs=start, lastStatus="ok", runningAtMs=None,
                     lastDurationMs=end - start,
                     nextRunAtMs=max(start + job["schedule"]["everyMs"], slot + 1))
        self._save_jobs([line])

    def _trim_run_log(self, path: Path) -> None:
        """Past 2 MB, keep the last 2,000 lines (an atomic replace of the log)."""
        if path.stat().st_size <= RUN_LOG_MAX_BYTES:
            return
        lines = path.read_bytes().splitlines(keepends=True)[-RUN_LOG_KEEP_LINES:]
        with self.io.step() as j:
            self.io.forget(path)
            self.oracle.add("trim", self._rel(path), (), keep=len(lines), **_at(j))
            self.io.replace(path, b"".join(lines))

    def _refresh_credentials(self) -> None:
        """New token in creds.json, then auth-profiles.json (under its .lock) pointing at it."""
        self.token_id += 1
        expires = now_ms() + 3_600_000
        with self.io.step():  # journal mode: both files are one record
            creds = self._replace(self.layout.creds, {
                "provider": "openai-codex", "type": "oauth", "tokenId": self.token_id,
                "access": f"{self.rng.getrandbits(256):064x}",
                "refresh": f"{self.rng.getrandbits(256):064x}", "expiresAt": expires}, [])
            with self.io.lock(self.layout.auth_profiles):
                self._replace(self.layout.auth_profiles, {
                    "version": 1,
                    "profiles": {"openai-codex:default": {
                        "type": "oauth", "provider": "openai-codex", "tokenId": self.token_id,
                        "expiresAt": expires}},
                    "lastGood": {"openai-codex": "openai-codex:default"}}, [creds])

    def _edit_config(self) -> None:
        """Rewrite openclaw.json atomically, then rotate the .bak ring and copy the old one in."""
        old = self.config_bytes
        self.config["meta"]["lastTouchedAt"] = iso(now_ms())
        self.config["notes"] = self.corpus.take(self.rng, self.rng.randint(1500, 15000)).split(
            "\n")
        with self.io.step():  # journal mode: the edit and the whole ring are one record
            self._replace(self.layout.config, self.config, [])
            self.config_bytes = json_file(self.config)
            for n in range(BAK_RING - 2, -1, -1):
                with contextlib.suppress(FileNotFoundError):
                    self.io.rename(self.layout.config_bak(n), self.layout.config_bak(n + 1))
            self.io.copy(old, self.layout.config_bak(0))

    def _edit_approvals(self) -> None:
        allow = sorted({self.rng.choice(["ls", "git status", "rg", "cat", "python -V", "date",
                                         "uptime", "df -h"]) for _ in range(6)})
        self._replace(self.layout.approvals, {
            "version": 1, "defaults": {"security": "allowlist"},
            "agents": {"main": {"allowlist": [{"pattern": p} for p in allow]}}}, [])

    def occasional(self) -> None:
        """Step 7's other work, each its own unit: cron, credentials, config, approvals."""
        rng = self.rng
        for chance, work in ((P_CRON, self.cron_run), (P_CREDENTIALS, self._refresh_credentials),
                             (P_CONFIG, self._edit_config), (P_APPROVALS, self._edit_approvals)):
            if rng.random() < chance:
                with self.server.turn():
                    if self.stop.is_set():
                        return
                    work()

    # --- threads ---------------------------------------------------------------------

    def flush(self) -> None:
        """The control protocol's flush: make the appended (unsynced) files durable."""
        self.io.flush()

    def run_turns(self) -> None:
        while not self.stop.is_set():
            with self.server.turn():
                if self.stop.is_set():
                    return
                self.turn()
            self.occasional()
            if self.opts.turn_pause:
                self.stop.wait(self.opts.turn_pause)

    def hang(self) -> None:
        """Hold a turn open forever while writing: an agent that never goes idle."""
        path = self.layout.logs / "gateway.log"
        with self.server.turn():
            n = 0
            while not self.stop.is_set():
                n += 1
                self.io.append(path, f"{iso(now_ms())} busy {n}\n".encode())
                self.stop.wait(0.02)

    def start(self) -> None:
        self.settler.start()
        self.indexer.start()
        work = [self.run_turns] + ([self.hang] if self.opts.hang else [])
        for target in work:
            thread = threading.Thread(target=target, name=f"sim-{target.__name__}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.indexer.wake()
        deadline = time.monotonic() + timeout
        for thread in [*self.threads, self.indexer.thread]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        self.settler.stop()
        self.index.close()
        self.io.close()
