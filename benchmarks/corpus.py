#!/usr/bin/env python3
"""Deterministic, seeded generator of an AI-agent-like workspace for backup benchmarks.

Why synthetic: real agent workspaces are private, but their *shape* is what decides how a backup
tool performs: many append-only JSONL transcripts (compressible, growing at the end), small
markdown notes (rewritten in place), SQLite databases (page-level updates in the middle of big
files) and float32 vector files (incompressible, overwritten in parts). This module reproduces
that mix byte-for-byte for a given seed and size, so that different tools, and runs on
different days, see exactly the same input.

Usage:
    python benchmarks/corpus.py DIR [--size 1G] [--seed 1]
    python benchmarks/corpus.py DIR --mutate [--fraction 0.01] [--mutate-seed 2]

Stdlib only on purpose: the harness must run on a bare Python 3.11.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import re
import shutil
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

# Share of the total size per kind of content. Roughly what a busy coding/assistant agent
# accumulates: transcripts and indexes dominate, notes are many but small.
SHARES: dict[str, float] = {
    "transcripts": 0.36,
    "sqlite": 0.30,
    "vectors": 0.26,
    "markdown": 0.05,
    "misc": 0.03,
}


def _split(text: str) -> tuple[str, ...]:
    """Word tables are kept as whitespace-separated text so they stay readable."""
    return tuple(text.split())


AGENTS = ("main", "coder", "research", "ops")
AGENT_WEIGHTS = (6, 3, 2, 1)
BASE_TIME = 1_735_689_600.0  # 2025-01-01T00:00:00Z; fixed so output never depends on "now"
VECTOR_MAGIC = b"VEC1"
VECTOR_HEADER = struct.Struct("<4sIII")  # magic, dim, count, reserved

_COMMON_WORDS = _split("""
the of and to a in is that it for you was on are with as be this have not at by from or
but what all were we when your can there use an each which she do how their if will up other
about out many then them these so some her would make like him into time has look two more
write go see number no way could people my than first water been call who its now find long
down day did get come made may part agent memory session file tool error config backup
snapshot restore chunk repo index vector model token context prompt user assistant result
function class return value list string test build deploy server request response cache
query database table row column schema update insert delete commit branch merge review
patch diff path directory process thread queue worker task job schedule retry timeout log
debug info warning status check run start stop open close read parse format encode decode
hash key secret password encrypt compress stream buffer block page offset size length count
""")

_SYLLABLES_ON = _split("b c d f g h j k l m n p r s t v w z br cl dr fl gr pl pr st th tr sh ch")
_SYLLABLES_NU = _split("a e i o u ai ea ou io ia")
_SYLLABLES_CO = ("",) * 6 + _split("n r s t l m nd nt st ck ng x")

_CODE_TEMPLATES = (
    "def {a}_{b}({c}, {d}):",
    "def {a}({b}: {C}) -> {D}:",
    "    return {a}.{b}({c})",
    "    {a} = {b}.get('{c}', {n})",
    "    {a}_{b} = [{c} for {c} in {d} if {c}.{e}]",
    "    if {a} is None:",
    '        raise {C}Error(f"{b} {c}: {{{d}}}")',
    "import {a}",
    "from {a}.{b} import {C}, {D}",
    "    # {p}",
    "    for {a} in {b}.{c}():",
    "        self.{a} = {b}",
    "class {C}{D}({E}):",
    '    """{p}"""',
    "const {a}{C} = await {b}.{c}({d});",
    "export function {a}{C}({b}, {c}) {{",
    "  if (!{a}) throw new Error('{p}');",
    "  {a}: {n},",
    "}}",
    "",
    '    logger.{l}("{p} %s", {a})',
    '    assert {a} == {n}, "{p}"',
)

_LOG_LEVELS = ("debug", "info", "info", "warning", "error")
_MODELS = ("claude-sonnet-4", "gpt-5", "gpt-5-mini", "gemini-2.5-pro")
_TOOLS = ("read", "exec", "edit", "write", "web_search", "memory_search")
_TOOL_WEIGHTS = (30, 30, 12, 8, 10, 10)


def parse_size(text: str) -> int:
    """Parse '200M', '1G', '1.5GiB', '500000' into bytes (binary units, since disks and
    `du` report those and the corpus is compared against them)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m:
        raise ValueError(f"bad size {text!r}; use e.g. 200M, 1G, 1.5G")
    mult = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def _lognorm(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    """Heavy-tailed sizes, because real message/file sizes are lognormal-ish, not uniform."""
    return max(lo, min(hi, int(rng.lognormvariate(math.log(median), sigma))))


def _hex(rng: random.Random, nchars: int) -> str:
    return f"{rng.getrandbits(nchars * 4):0{nchars}x}"


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _iso(t: float) -> str:
    ms = int((t % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def _vocabulary(rng: random.Random, n_synthetic: int = 4000) -> list[str]:
    """Common words first (so the Zipf weights make them frequent), then pseudo-words.

    Why pseudo-words: a few thousand distinct tokens give text an entropy close to real
    English/code (zstd ~3-5x), which a tiny word list would overstate."""
    seen = set(_COMMON_WORDS)
    words = list(_COMMON_WORDS)
    while len(words) < len(_COMMON_WORDS) + n_synthetic:
        w = "".join(
            rng.choice(_SYLLABLES_ON) + rng.choice(_SYLLABLES_NU) + rng.choice(_SYLLABLES_CO)
            for _ in range(rng.choice((1, 2, 2, 3)))
        )
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class Lexicon:
    """Fast seeded text source built from pools of phrases and code lines.

    Why pools: drawing whole phrases (one random choice per ~40 bytes) is what makes 1 GiB
    generate in well under a minute in pure Python; the pool is several MB, much larger than a
    backup chunk or a zstd window, so compressors see word-level redundancy, not a loop."""

    def __init__(self, rng: random.Random, n_phrases: int = 200_000, n_code: int = 40_000):
        self.rng = rng
        self.words = _vocabulary(rng)
        self._cum = list(itertools.accumulate(1.0 / (i + 3) for i in range(len(self.words))))
        self.phrases = [self._phrase() for _ in range(n_phrases)]
        self.code_lines = [self._code_line() for _ in range(n_code)]
        self._avg_phrase = sum(map(len, self.phrases[:4000])) / 4000 + 1
        self._avg_code = sum(map(len, self.code_lines[:4000])) / 4000 + 1

    def _pick(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self._cum, k=k)

    def _phrase(self) -> str:
        rng = self.rng
        text = " ".join(self._pick(rng.randint(3, 10)))
        r = rng.random()
        if r < 0.35:
            return text[0].upper() + text[1:] + "."
        if r < 0.45:
            return text + ","
        if r < 0.48:
            return text[0].upper() + text[1:] + "?"
        if r < 0.52:
            return text + ".\n\n"
        if r < 0.54:
            return f"`{text.replace(' ', '_')}`"
        return text

    def _code_line(self) -> str:
        rng = self.rng
        a, b, c, d, e = self._pick(5)
        cap = [w.capitalize() for w in self._pick(3)]
        return rng.choice(_CODE_TEMPLATES).format(
            a=a,
            b=b,
            c=c,
            d=d,
            e=e,
            C=cap[0],
            D=cap[1],
            E=cap[2],
            n=rng.randint(0, 4096),
            l=rng.choice(_LOG_LEVELS),
            p=" ".join(self._pick(rng.randint(2, 6))),
        )

    def word(self) -> str:
        return self._pick(1)[0]

    def name(self) -> str:
        """A rare word, for file and directory names (common words make odd paths)."""
        return self.rng.choice(self.words[len(_COMMON_WORDS) :])

    def prose(self, nbytes: int) -> str:
        k = max(1, int(nbytes / self._avg_phrase))
        return " ".join(self.rng.choices(self.phrases, k=k))

    def code(self, nbytes: int) -> str:
        k = max(1, int(nbytes / self._avg_code))
        return "\n".join(self.rng.choices(self.code_lines, k=k))

    def log(self, nbytes: int, t: float) -> str:
        """Command output: timestamped log lines, like test runners and servers print."""
        lines, size = [], 0
        while size < nbytes:
            line = (
                f"{_iso(t)} {self.rng.choice(_LOG_LEVELS).upper():7} "
                f"{self.word()}.{self.word()}: {self.prose(self.rng.randint(30, 160))}"
            )
            t += self.rng.random()
            lines.append(line)
            size += len(line) + 1
        return "\n".join(lines)


def vector_bytes(rng: random.Random, nbytes: int) -> bytes:
    """Little-endian float32 values in about ±[0.004, 0.25), like normalised embeddings.

    Why not plain random bytes: real embeddings have a narrow exponent, which zstd squeezes by
    a few percent; random mantissas keep the rest incompressible, as in reality."""
    buf = bytearray(rng.randbytes(nbytes - nbytes % 4))
    buf[3::4] = bytes(buf[3::4]).translate(_EXPONENT_TABLE)
    return bytes(buf) + b"\0" * (nbytes % 4)


_EXPONENT_TABLE = bytes((0x3B, 0x3C, 0x3D, 0x3E, 0xBB, 0xBC, 0xBD, 0xBE)[i % 8] for i in range(256))


# --------------------------------------------------------------------------- transcripts


@dataclass
class _Session:
    """State of one agent conversation while its JSONL lines are produced."""

    sid: str
    t: float
    model: str
    parent: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def _file_path(lex: Lexicon) -> str:
    ext = lex.rng.choice((".py", ".py", ".ts", ".md", ".json", ".toml"))
    return f"src/{lex.name()}/{lex.name()}_{lex.word()}{ext}"


def _new_session(lex: Lexicon, t: float) -> _Session:
    rng = lex.rng
    s = _Session(sid=_uuid(rng), t=t, model=rng.choice(_MODELS))
    for _ in range(rng.randint(3, 8)):
        s.files[_file_path(lex)] = lex.code(_lognorm(rng, 4000, 0.9, 200, 60_000))
    return s


def _tool_call(s: _Session, lex: Lexicon) -> tuple[dict, str]:
    """One tool call and the text its result will carry. Reads return a file the session
    already has, because agents re-read the same files many times per session."""
    rng = lex.rng
    name = rng.choices(_TOOLS, weights=_TOOL_WEIGHTS)[0]
    call_id = f"call_{_hex(rng, 24)}"
    path = rng.choice(list(s.files))
    if name == "read":
        args: dict = {"path": path}
        result = s.files[path]
    elif name == "exec":
        args = {
            "command": f"cd ~/workspace && {lex.word()} {lex.word()} --{lex.word()}",
            "timeout": rng.choice((30, 120, 600)),
        }
        result = lex.log(_lognorm(rng, 1500, 1.3, 20, 200_000), s.t)
    elif name == "edit":
        args = {
            "path": path,
            "oldText": lex.code(rng.randint(40, 600)),
            "newText": lex.code(rng.randint(40, 900)),
        }
        result = f"Successfully replaced text in {path}."
    elif name == "write":
        content = lex.code(_lognorm(rng, 3000, 1.0, 100, 80_000))
        s.files[path] = content
        args = {"path": path, "content": content}
        result = f"Successfully wrote {len(content)} bytes to {path}"
    elif name == "web_search":
        args = {"query": lex.prose(50), "count": 5}
        result = json.dumps(
            [
                {
                    "title": lex.prose(40),
                    "url": f"https://{lex.word()}.example/{lex.word()}",
                    "snippet": lex.prose(rng.randint(100, 400)),
                }
                for _ in range(5)
            ]
        )
    else:
        args = {"query": lex.prose(40), "maxResults": 6}
        result = json.dumps(
            {
                "results": [
                    {
                        "path": f"memory/2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}.md",
                        "startLine": rng.randint(1, 200),
                        "score": round(rng.random(), 4),
                        "snippet": lex.prose(rng.randint(80, 700)),
                    }
                    for _ in range(rng.randint(1, 6))
                ]
            }
        )
    return {"type": "toolCall", "id": call_id, "name": name, "arguments": args}, result


def _usage(rng: random.Random) -> dict:
    inp, out, cached = rng.randint(200, 60_000), rng.randint(20, 4000), rng.randint(0, 120_000)
    return {
        "input": inp,
        "output": out,
        "cacheRead": cached,
        "cacheWrite": 0,
        "totalTokens": inp + out + cached,
        "cost": {
            "input": round(inp * 3e-6, 6),
            "output": round(out * 1.5e-5, 6),
            "total": round(inp * 3e-6 + out * 1.5e-5, 6),
        },
    }


def _event(s: _Session, rng: random.Random, message: dict) -> str:
    """Wrap a message as one JSONL line, chained by parentId like real session logs."""
    s.t += rng.expovariate(1 / 8)
    eid = _hex(rng, 8)
    message["timestamp"] = int(s.t * 1000)
    line = {
        "type": "message",
        "id": eid,
        "parentId": s.parent,
        "timestamp": _iso(s.t),
        "message": message,
    }
    s.parent = eid
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _assistant(s: _Session, lex: Lexicon, content: list[dict], stop: str) -> dict:
    return {
        "role": "assistant",
        "content": content,
        "api": "responses",
        "provider": s.model.split("-")[0],
        "model": s.model,
        "usage": _usage(lex.rng),
        "stopReason": stop,
    }


def _turn(s: _Session, lex: Lexicon) -> Iterator[str]:
    """A user prompt, a few rounds of tool calls with results, and a final answer."""
    rng = lex.rng
    text = lex.prose(_lognorm(rng, 250, 1.1, 10, 20_000))
    yield _event(s, rng, {"role": "user", "content": [{"type": "text", "text": text}]})
    for _ in range(rng.choice((0, 1, 1, 2, 3, 4, 6))):
        calls = [_tool_call(s, lex) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        content: list[dict] = []
        if rng.random() < 0.5:
            content.append(
                {"type": "thinking", "thinking": lex.prose(_lognorm(rng, 400, 1.0, 20, 8000))}
            )
        if rng.random() < 0.4:
            content.append({"type": "text", "text": lex.prose(rng.randint(20, 300))})
        content += [c for c, _ in calls]
        yield _event(s, rng, _assistant(s, lex, content, "toolUse"))
        for call, result in calls:
            yield _event(
                s,
                rng,
                {
                    "role": "toolResult",
                    "toolCallId": call["id"],
                    "toolName": call["name"],
                    "content": [{"type": "text", "text": result}],
                    "isError": rng.random() < 0.04,
                },
            )
    answer = lex.prose(_lognorm(rng, 700, 1.0, 20, 30_000))
    yield _event(s, rng, _assistant(s, lex, [{"type": "text", "text": answer}], "stop"))


def _session_header(s: _Session) -> str:
    head = {
        "type": "session",
        "version": 3,
        "id": s.sid,
        "timestamp": _iso(s.t),
        "cwd": "/home/agent/workspace",
    }
    return json.dumps(head, separators=(",", ":"))


def _write_lines(path: Path, lines: Iterator[str], target: int, mode: str = "w") -> int:
    """Write lines until at least `target` bytes; buffered because per-line writes are slow."""
    written, buf, buf_size = 0, [], 0
    with open(path, mode, encoding="utf-8") as f:
        for line in lines:
            buf.append(line)
            buf_size += len(line) + 1
            if buf_size >= MIB:
                data = "\n".join(buf) + "\n"
                f.write(data)
                written += len(data.encode())
                buf, buf_size = [], 0
            if written + buf_size >= target:
                break
        if buf:
            data = "\n".join(buf) + "\n"
            f.write(data)
            written += len(data.encode())
    return written


def _session_stream(s: _Session, lex: Lexicon) -> Iterator[str]:
    while True:
        yield from _turn(s, lex)


def _gen_transcripts(root: Path, lex: Lexicon, budget: int) -> None:
    rng = lex.rng
    median = min(MIB, max(48 * KIB, budget / 600))
    t = BASE_TIME
    index: dict[str, dict[str, dict]] = {a: {} for a in AGENTS}
    left = budget
    while left > 0:
        agent = rng.choices(AGENTS, weights=AGENT_WEIGHTS)[0]
        size = min(left, _lognorm(rng, median, 1.0, 4 * KIB, int(median * 25)))
        t += rng.expovariate(1 / 40_000)
        s = _new_session(lex, t)
        d = root / "agents" / agent / "sessions"
        d.mkdir(parents=True, exist_ok=True)
        lines = itertools.chain([_session_header(s)], _session_stream(s, lex))
        left -= _write_lines(d / f"{s.sid}.jsonl", lines, size)
        index[agent][f"agent:{agent}:{_hex(rng, 6)}"] = {
            "sessionId": s.sid,
            "updatedAt": int(s.t * 1000),
            "model": s.model,
            "chatType": rng.choice(("direct", "group", "cron")),
            "inputTokens": rng.randint(1000, 900_000),
        }
    for agent, sessions in index.items():
        d = root / "agents" / agent / "sessions"
        d.mkdir(parents=True, exist_ok=True)
        (d / "sessions.json").write_text(json.dumps(sessions, indent=2))


# --------------------------------------------------------------------------- markdown


def _markdown(lex: Lexicon, title: str, nbytes: int) -> str:
    """Notes look like what agents write: headings, bullets, todo lists, code fences."""
    rng = lex.rng
    parts = [f"# {title}\n"]
    size = len(parts[0])
    while size < nbytes:
        r = rng.random()
        if r < 0.15:
            block = f"## {lex.prose(30).rstrip('.,?').strip()}\n"
        elif r < 0.45:
            block = lex.prose(_lognorm(rng, 300, 0.8, 40, 3000)) + "\n"
        elif r < 0.7:
            block = (
                "\n".join(f"- {lex.prose(rng.randint(20, 120))}" for _ in range(rng.randint(2, 8)))
                + "\n"
            )
        elif r < 0.8:
            block = (
                "\n".join(
                    f"- [{rng.choice(' x')}] {lex.prose(rng.randint(20, 80))}"
                    for _ in range(rng.randint(2, 6))
                )
                + "\n"
            )
        else:
            block = (
                f"```{rng.choice(('python', 'bash', 'json', ''))}\n"
                f"{lex.code(rng.randint(100, 1500))}\n```\n"
            )
        parts.append(block)
        size += len(block) + 1
    return "\n".join(parts)


def _daily_note(lex: Lexicon, day: float, nbytes: int) -> str:
    rng = lex.rng
    date = time.strftime("%Y-%m-%d", time.gmtime(day))
    parts = [f"# {date}\n"]
    size = 0
    while size < nbytes:
        hhmm = f"{rng.randint(6, 23):02d}:{rng.randint(0, 59):02d}"
        block = (
            f"## {hhmm} {lex.prose(25).strip('.,?')}\n"
            + _markdown(lex, "x", rng.randint(100, 1500)).split("\n", 1)[1]
        )
        parts.append(block)
        size += len(block)
    return "\n".join(parts)


def _gen_markdown(root: Path, lex: Lexicon, budget: int) -> None:
    rng = lex.rng
    ws = root / "workspace"
    (ws / "memory").mkdir(parents=True, exist_ok=True)
    left = budget
    for name, size in (
        ("MEMORY.md", 48 * KIB),
        ("AGENTS.md", 12 * KIB),
        ("SOUL.md", 4 * KIB),
        ("USER.md", 3 * KIB),
        ("TOOLS.md", 6 * KIB),
        ("IDENTITY.md", KIB),
        ("HEARTBEAT.md", KIB),
    ):
        size = min(size, max(KIB, budget // 40))
        text = _markdown(lex, name[:-3].title(), size)
        (ws / name).write_text(text)
        left -= len(text)
    n_days = max(14, min(1100, budget // (40 * KIB)))
    day = BASE_TIME - n_days * 86_400
    for _ in range(n_days):
        day += 86_400
        text = _daily_note(lex, day, _lognorm(rng, 5000, 0.8, 300, 60_000))
        (ws / "memory" / time.strftime("%Y-%m-%d.md", time.gmtime(day))).write_text(text)
        left -= len(text)
    topics = [lex.name() for _ in range(max(3, budget // (2 * MIB)))]
    while left > 0:
        d = ws / "notes" / rng.choice(topics)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            d = d / lex.name()
        d.mkdir(parents=True, exist_ok=True)
        text = _markdown(lex, lex.prose(30).strip(".,?"), _lognorm(rng, 9000, 1.0, 200, 200_000))
        (d / f"{lex.name()}-{lex.name()}.md").write_text(text)
        left -= len(text)


# --------------------------------------------------------------------------- sqlite

_SCHEMAS = {
    "memory": """
        CREATE TABLE files (path TEXT PRIMARY KEY, hash TEXT, mtime INTEGER, size INTEGER);
        CREATE TABLE chunks (id TEXT PRIMARY KEY, path TEXT, start_line INTEGER,
            end_line INTEGER, hash TEXT, model TEXT, text TEXT, embedding BLOB,
            updated_at INTEGER);
        CREATE INDEX chunks_path ON chunks(path);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
    "messages": """
        CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT, created_at INTEGER);
        CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT, role TEXT,
            content TEXT, meta TEXT, created_at INTEGER);
        CREATE INDEX messages_conv ON messages(conversation_id, created_at);
    """,
    "cache": """
        CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB, content_type TEXT,
            fetched_at INTEGER, expires_at INTEGER);
    """,
}
_DB_NAMES = {
    "memory": "state/memory/{a}.sqlite",
    "messages": "state/db/{a}-history.sqlite",
    "cache": "state/cache/{a}-web.sqlite",
}


def _memory_rows(lex: Lexicon, n: int) -> Iterator[tuple]:
    rng = lex.rng
    for _ in range(n):
        path = f"memory/{lex.word()}-{lex.word()}.md"
        start = rng.randint(1, 400)
        yield (
            _hex(rng, 32),
            path,
            start,
            start + rng.randint(5, 40),
            _hex(rng, 64),
            "text-embedding-3-small",
            lex.prose(_lognorm(rng, 900, 0.6, 80, 6000)),
            vector_bytes(rng, 768 * 4),
            int(BASE_TIME) + rng.randint(0, 10**7),
        )


def _message_rows(lex: Lexicon, n: int, first_id: int) -> Iterator[tuple]:
    rng = lex.rng
    for i in range(n):
        body = (
            lex.prose(_lognorm(rng, 800, 1.2, 10, 60_000))
            if rng.random() < 0.7
            else lex.code(_lognorm(rng, 1500, 1.0, 50, 60_000))
        )
        meta = json.dumps({"tokens": rng.randint(5, 9000), "model": rng.choice(_MODELS)})
        yield (
            first_id + i,
            f"c{rng.randint(0, 2000):05d}",
            rng.choice(("user", "assistant")),
            body,
            meta,
            int(BASE_TIME) + rng.randint(0, 10**7),
        )


def _cache_rows(lex: Lexicon, n: int) -> Iterator[tuple]:
    """Web cache: half already-compressed payloads (images, gzip), half HTML/JSON text."""
    rng = lex.rng
    for _ in range(n):
        if rng.random() < 0.5:
            value, ctype = rng.randbytes(_lognorm(rng, 12_000, 1.0, 200, 400_000)), "image/png"
        else:
            value, ctype = (
                f"<html><body><p>{lex.prose(_lognorm(rng, 6000, 1.0, 100, 200_000))}"
                "</p></body></html>".encode(),
                "text/html",
            )
        t = int(BASE_TIME) + rng.randint(0, 10**7)
        yield (f"https://{lex.word()}.example/{_hex(rng, 16)}", value, ctype, t, t + 86_400)


def _insert_batch(con: sqlite3.Connection, kind: str, lex: Lexicon, n: int) -> None:
    if kind == "memory":
        con.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)", _memory_rows(lex, n))
    elif kind == "messages":
        first = (con.execute("SELECT max(id) FROM messages").fetchone()[0] or 0) + 1
        con.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?)", _message_rows(lex, n, first))
    else:
        con.executemany("INSERT OR REPLACE INTO kv VALUES (?,?,?,?,?)", _cache_rows(lex, n))
    con.commit()


def _fill_small_tables(con: sqlite3.Connection, kind: str, lex: Lexicon) -> None:
    rng = lex.rng
    if kind == "memory":
        con.executemany(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
            [
                (
                    f"memory/{lex.word()}-{lex.word()}.md",
                    _hex(rng, 64),
                    int(BASE_TIME) + rng.randint(0, 10**7),
                    rng.randint(100, 90_000),
                )
                for _ in range(300)
            ],
        )
        con.executemany(
            "INSERT INTO meta VALUES (?,?)",
            [("schema_version", "4"), ("model", "text-embedding-3-small"), ("dims", "768")],
        )
    elif kind == "messages":
        con.executemany(
            "INSERT INTO conversations VALUES (?,?,?)",
            [(f"c{i:05d}", lex.prose(40), int(BASE_TIME) + i * 300) for i in range(2001)],
        )
    con.commit()


def _make_db(path: Path, kind: str, lex: Lexicon, target: int) -> None:
    """Fill a database in committed batches until the file reaches `target` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=MEMORY")
        con.execute("PRAGMA synchronous=OFF")
        con.executescript(_SCHEMAS[kind])
        _fill_small_tables(con, kind, lex)
        batch = {"memory": 200, "messages": 400, "cache": 60}[kind]
        while path.stat().st_size < target:
            _insert_batch(con, kind, lex, batch)
    finally:
        con.close()


def _gen_sqlite(root: Path, lex: Lexicon, budget: int) -> None:
    rng = lex.rng
    n = max(3, round(budget / (24 * MIB)))
    weights = [rng.uniform(0.3, 1.7) for _ in range(n)]
    kinds = ("memory", "messages", "cache")
    for i, w in enumerate(weights):
        kind = kinds[i % 3]
        agent = AGENTS[(i // 3) % len(AGENTS)]
        name = _DB_NAMES[kind].format(a=agent if i < 12 else f"{agent}{i}")
        _make_db(root / name, kind, lex, int(budget * w / sum(weights)))


# --------------------------------------------------------------------------- vectors


def _write_vectors(path: Path, rng: random.Random, dim: int, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(VECTOR_HEADER.pack(VECTOR_MAGIC, dim, count, 0))
        left = dim * 4 * count
        while left > 0:
            n = min(left, 8 * MIB)
            f.write(vector_bytes(rng, n))
            left -= n


def _gen_vectors(root: Path, rng: random.Random, budget: int) -> None:
    n = max(2, round(budget / (32 * MIB)))
    weights = [rng.uniform(0.4, 1.6) for _ in range(n)]
    for i, w in enumerate(weights):
        dim = (384, 768, 1536)[i % 3]
        count = max(1, int(budget * w / sum(weights)) // (dim * 4))
        name = f"state/vectors/{AGENTS[i % len(AGENTS)]}-{i:02d}-d{dim}.f32"
        _write_vectors(root / name, rng, dim, count)


# --------------------------------------------------------------------------- misc


def _config(lex: Lexicon) -> dict:
    rng = lex.rng
    return {
        "meta": {"lastTouchedVersion": "2025.9.1", "lastTouchedAt": _iso(BASE_TIME)},
        "agents": {
            a: {
                "model": rng.choice(_MODELS),
                "workspace": f"~/workspace/{a}",
                "tools": {"allow": rng.sample(_TOOLS, 4)},
                "heartbeat": {"every": f"{rng.randint(5, 60)}m"},
            }
            for a in AGENTS
        },
        "channels": {
            c: {"enabled": rng.random() < 0.7, "dmPolicy": "pairing"}
            for c in ("telegram", "discord", "slack", "whatsapp")
        },
        "gateway": {"port": 18789, "bind": "loopback", "auth": {"mode": "token"}},
        "memory": {"provider": "local", "chunkTokens": 400, "overlap": 80},
    }


def _gen_configs(root: Path, lex: Lexicon) -> int:
    rng = lex.rng
    written = 0
    files: dict[str, object] = {"config/agent.json": _config(lex)}
    for a in AGENTS:
        files[f"agents/{a}/agent/models.json"] = {
            "providers": {
                m.split("-")[0]: {"models": [m], "baseUrl": "https://api.example"} for m in _MODELS
            }
        }
        files[f"agents/{a}/agent/auth-profiles.json"] = {
            "profiles": {
                f"{p}:default": {"type": "api_key", "key": f"sk-test-{_hex(rng, 40)}"}
                for p in ("openai", "anthropic")
            }
        }
    files["config/cron.json"] = {
        "jobs": [
            {
                "id": _uuid(rng),
                "schedule": f"{rng.randint(0, 59)} {rng.randint(0, 23)} * * *",
                "agent": rng.choice(AGENTS),
                "prompt": lex.prose(120),
            }
            for _ in range(12)
        ]
    }
    files["workspace/.vscode/settings.json"] = {"editor.tabSize": 4, "files.eol": "\n"}
    for rel, obj in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(obj, indent=2)
        p.write_text(text)
        written += len(text)
    return written


def _gen_projects(root: Path, lex: Lexicon, budget: int) -> None:
    """Source trees the agent works on: many small files, a few levels deep."""
    rng = lex.rng
    left = budget - _gen_configs(root, lex)
    projects = [lex.name() for _ in range(max(2, budget // (4 * MIB)))]
    while left > 0:
        proj = rng.choice(projects)
        d = root / "workspace" / "projects" / proj / rng.choice(("src", "src", "tests", "lib"))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            d = d / lex.name()
        d.mkdir(parents=True, exist_ok=True)
        ext = rng.choice((".py", ".py", ".ts", ".json"))
        if ext == ".json":
            text = json.dumps(
                {
                    "name": proj,
                    "version": f"0.{rng.randint(0, 40)}.0",
                    "scripts": {lex.word(): lex.prose(30) for _ in range(5)},
                },
                indent=2,
            )
        else:
            text = lex.code(_lognorm(rng, 3500, 1.0, 50, 100_000)) + "\n"
        (d / f"{lex.name()}{ext}").write_text(text)
        left -= len(text)


# --------------------------------------------------------------------------- public API


def tree_size(root: Path) -> tuple[int, int]:
    """(file count, total bytes) of regular files under root."""
    count = total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            count += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return count, total


def generate(root: Path, size_bytes: int, seed: int = 1) -> None:
    """Create the corpus in `root` (which must not exist or be empty) with ~size_bytes."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; refusing to mix corpora")
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lex = Lexicon(rng)
    budget = {k: int(size_bytes * v) for k, v in SHARES.items()}
    _gen_transcripts(root, lex, budget["transcripts"])
    _gen_markdown(root, lex, budget["markdown"])
    _gen_sqlite(root, lex, budget["sqlite"])
    _gen_vectors(root, rng, budget["vectors"])
    _gen_projects(root, lex, budget["misc"])


# --------------------------------------------------------------------------- mutate


def _sorted_files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def _last_event(path: Path) -> tuple[str | None, float]:
    """parentId and time of the last line, so appended lines continue the chain."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 256 * KIB))
        tail = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        obj = json.loads(tail)
        return obj.get("id"), obj["message"]["timestamp"] / 1000
    except (ValueError, KeyError, TypeError):
        return None, BASE_TIME


def _append_transcripts(root: Path, lex: Lexicon, budget: int) -> int:
    rng = lex.rng
    sessions = [p for p in _sorted_files(root, "agents/*/sessions/*.jsonl")]
    if not sessions:
        return 0
    picked = rng.sample(sessions, min(len(sessions), max(2, len(sessions) // 25)))
    changed = 0
    for path in picked:
        parent, t = _last_event(path)
        s = _new_session(lex, t)
        s.parent = parent
        changed += _write_lines(path, _session_stream(s, lex), budget // len(picked), "a")
    return changed


def _new_transcript(root: Path, lex: Lexicon, budget: int) -> int:
    s = _new_session(lex, BASE_TIME + 4e7 + lex.rng.random() * 1e6)
    d = root / "agents" / "main" / "sessions"
    d.mkdir(parents=True, exist_ok=True)
    lines = itertools.chain([_session_header(s)], _session_stream(s, lex))
    return _write_lines(d / f"{s.sid}.jsonl", lines, max(KIB, budget))


def _diff_span(old: bytes, new: bytes) -> int:
    """Bytes of `new` outside the common prefix and suffix: what an edit really changed."""
    n = min(len(old), len(new))
    pre = next((i for i in range(n) if old[i] != new[i]), n)
    suf = 0
    while suf < n - pre and old[-1 - suf] == new[-1 - suf]:
        suf += 1
    return len(new) - pre - suf


def _edit_markdown(path: Path, lex: Lexicon, nbytes: int) -> int:
    """Replace one block in the middle and add one at the end, as an agent tidying notes."""
    old = path.read_bytes()
    text = old.decode()
    blocks = text.split("\n\n")
    i = lex.rng.randrange(len(blocks))
    blocks[i] = lex.prose(max(40, nbytes // 2))
    blocks.append(f"## {lex.prose(25).strip('.,?')}\n{lex.prose(max(40, nbytes // 2))}\n")
    new = "\n\n".join(blocks).encode()
    path.write_bytes(new)
    return _diff_span(old, new)


def _mutate_markdown(root: Path, lex: Lexicon, budget: int) -> int:
    rng = lex.rng
    changed = 0
    memory = root / "workspace" / "MEMORY.md"
    if memory.exists():
        changed += _edit_markdown(memory, lex, budget // 4)
    notes = _sorted_files(root, "workspace/notes/**/*.md")
    for path in rng.sample(notes, min(3, len(notes))):
        changed += _edit_markdown(path, lex, budget // 8)
    days = _sorted_files(root, "workspace/memory/*.md")
    last = time.mktime(time.strptime(days[-1].stem, "%Y-%m-%d")) if days else BASE_TIME
    new_day = last + 86_400 + 43_200
    path = root / "workspace" / "memory" / time.strftime("%Y-%m-%d.md", time.gmtime(new_day))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _daily_note(lex, new_day, max(200, budget - changed)).encode()
    path.write_bytes(text)
    return changed + len(text)


def _changed_pages(old: bytes, new: bytes, page: int = 4096) -> int:
    return sum(
        len(new[o : o + page])
        for o in range(0, len(new), page)
        if new[o : o + page] != old[o : o + page]
    )


def _mutate_sqlite(root: Path, lex: Lexicon, budget: int) -> int:
    """Reindex a few notes in the main agent's memory index: rewrite their chunk rows
    (contiguous rowid ranges, as rows of one note were inserted together) and add new ones.

    The inserts also touch scattered pages of the random-key indexes, as in real SQLite
    stores; that scatter, not the row bytes, is what costs chunk-based backup tools.
    Counts changed 4 KiB pages, since that is what a backup tool has to pick up."""
    rng = lex.rng
    dbs = _sorted_files(root, "state/memory/*.sqlite")
    if not dbs:
        return 0
    main = root / "state" / "memory" / "main.sqlite"
    path = main if main in dbs else dbs[0]
    old = path.read_bytes()
    con = sqlite3.connect(path)
    try:
        rowids = [r[0] for r in con.execute("SELECT rowid FROM chunks ORDER BY rowid")]
        n_update = max(1, min(len(rowids), budget // (2 * 4 * KIB)))
        n_notes = min(rng.randint(2, 4), n_update)
        per_note = n_update // n_notes
        picked: set[int] = set()
        for _ in range(n_notes):
            first = rng.randrange(max(1, len(rowids) - per_note + 1))
            picked.update(rowids[first : first + per_note])
        t = int(BASE_TIME) + 2 * 10**7
        updates = [
            (lex.prose(_lognorm(rng, 900, 0.6, 80, 6000)), vector_bytes(rng, 768 * 4), t, rid)
            for rid in sorted(picked)
        ]
        con.executemany(
            "UPDATE chunks SET text=?, embedding=?, updated_at=? WHERE rowid=?", updates
        )
        con.commit()
        _insert_batch(con, "memory", lex, max(1, n_update // 4))
        con.execute(
            "DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks ORDER BY rowid LIMIT 3)"
        )
        con.commit()
    finally:
        con.close()
    return _changed_pages(old, path.read_bytes())


def _mutate_vectors(root: Path, rng: random.Random, budget: int) -> int:
    """Overwrite a few contiguous runs of rows in place (the re-embedded chunks of a few
    documents); the file keeps its size."""
    files = _sorted_files(root, "state/vectors/*.f32")
    if not files:
        return 0
    path = rng.choice(files)
    with open(path, "r+b") as f:
        _magic, dim, count, _ = VECTOR_HEADER.unpack(f.read(VECTOR_HEADER.size))
        row = dim * 4
        runs = max(1, min(rng.randint(2, 4), budget // row))
        rows_per_run = max(1, min(count, budget // runs // row))
        changed = 0
        for _ in range(runs):
            start = rng.randrange(max(1, count - rows_per_run + 1))
            f.seek(VECTOR_HEADER.size + start * row)
            f.write(vector_bytes(rng, rows_per_run * row))
            changed += rows_per_run * row
    return changed


def _mutate_misc(root: Path, lex: Lexicon, budget: int) -> int:
    """Touch the main config and drop a new source file into a project."""
    cfg = root / "config" / "agent.json"
    changed = 0
    if cfg.exists():
        old = cfg.read_bytes()
        obj = json.loads(old)
        obj.setdefault("meta", {})["lastTouchedAt"] = _iso(BASE_TIME + 4e7)
        new = json.dumps(obj, indent=2).encode()
        cfg.write_bytes(new)
        changed += _diff_span(old, new)
    projects = sorted(p for p in (root / "workspace" / "projects").glob("*") if p.is_dir())
    d = (lex.rng.choice(projects) if projects else root / "workspace" / "projects" / "new") / "src"
    d.mkdir(parents=True, exist_ok=True)
    text = (lex.code(max(100, budget - changed)) + "\n").encode()
    (d / f"{lex.name()}_{_hex(lex.rng, 6)}.py").write_bytes(text)
    return changed + len(text)


def _delete_one(root: Path, rng: random.Random) -> None:
    sessions = _sorted_files(root, "agents/*/sessions/*.jsonl")
    if len(sessions) > 1:
        rng.choice(sessions[: max(1, len(sessions) // 2)]).unlink()


def mutate(root: Path, fraction: float = 0.01, seed: int = 2) -> int:
    """Change about `fraction` of the corpus bytes the way a working agent does; return the
    number of bytes changed or added (deletions are not counted)."""
    root = Path(root)
    _count, total = tree_size(root)
    budget = max(4 * KIB, int(total * fraction))
    rng = random.Random(seed)
    lex = Lexicon(rng, n_phrases=20_000, n_code=5_000)
    steps: list[tuple[float, Callable[[int], int]]] = [
        (0.30, lambda b: _append_transcripts(root, lex, b)),
        (0.08, lambda b: _new_transcript(root, lex, b)),
        (0.04, lambda b: _mutate_markdown(root, lex, b)),
        (0.30, lambda b: _mutate_sqlite(root, lex, b)),
        (0.25, lambda b: _mutate_vectors(root, rng, b)),
        (0.03, lambda b: _mutate_misc(root, lex, b)),
    ]
    changed = sum(step(int(budget * share)) for share, step in steps)
    _delete_one(root, rng)
    return changed


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--size", default="1G", help="total size, e.g. 200M, 1G (default 1G)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", action="store_true", help="mutate an existing corpus instead")
    ap.add_argument("--fraction", type=float, default=0.01, help="share changed by --mutate")
    ap.add_argument("--mutate-seed", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="delete DIR first if it exists")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.mutate:
        changed = mutate(args.dir, args.fraction, args.mutate_seed)
        print(
            f"mutated {args.dir}: {changed:,} bytes changed/added "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        return 0
    if args.force and args.dir.exists():
        shutil.rmtree(args.dir)
    generate(args.dir, parse_size(args.size), args.seed)
    count, total = tree_size(args.dir)
    print(
        f"generated {args.dir}: {count:,} files, {total:,} bytes in {time.perf_counter() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
