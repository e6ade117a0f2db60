"""A small agent-like workspace for the demo and the tests.

Its shape follows docs/simulated-agent.md: config JSON with a .bak ring,
session transcripts (JSONL), sessions.json, daily memory notes, workspace
markdown, a delivery queue entry, a SQLite memory index, a vector file, a
symlink and an empty directory.
"""

from __future__ import annotations

import json
import random
import sqlite3
import struct
from pathlib import Path

WORDS = (
    "agent memory session tool call result user assistant note plan task queue ledger "
    "receipt email calendar search index vector embed summary compact turn deliver retry "
    "backup restore snapshot chain quiesce flush horizon journal"
).split()


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def make_workspace(root: Path, seed: int = 7, sessions: int = 4, turns: int = 40) -> Path:
    rng = random.Random(seed)
    state = root / "state"
    agent_dir = state / "agents" / "main"
    (agent_dir / "sessions").mkdir(parents=True, exist_ok=True)
    (agent_dir / "agent").mkdir(parents=True, exist_ok=True)
    (state / "delivery-queue").mkdir(parents=True, exist_ok=True)
    (state / "memory").mkdir(parents=True, exist_ok=True)
    (state / "cron" / "runs").mkdir(parents=True, exist_ok=True)
    (root / "workspace" / "memory").mkdir(parents=True, exist_ok=True)
    (root / "workspace" / "scratch").mkdir(parents=True, exist_ok=True)  # stays empty

    config = {"agent": {"name": "main", "model": "demo"}, "gateway": {"port": 18789}}
    (state / "openclaw.json").write_text(json.dumps(config, indent=2))
    (state / "openclaw.json.bak").write_text(json.dumps(config, indent=2))
    (agent_dir / "agent" / "auth-profiles.json").write_text(json.dumps({"profiles": []}))

    index = {}
    for s in range(sessions):
        sid = f"s{seed:02d}{s:04d}"
        lines = [json.dumps({"type": "session", "id": sid, "version": 1})]
        for t in range(turns):
            lines.append(json.dumps({"type": "message", "role": "user", "text": _text(rng, 30)}))
            lines.append(
                json.dumps({"type": "message", "role": "assistant", "text": _text(rng, 120)})
            )
            lines.append(json.dumps({"type": "turn", "n": t + 1}))
        (agent_dir / "sessions" / f"{sid}.jsonl").write_text("\n".join(lines) + "\n")
        index[sid] = {"updatedAt": 1_700_000_000_000 + s, "turns": turns}
    (agent_dir / "sessions" / "sessions.json").write_text(json.dumps(index, indent=2))

    for day in range(1, 6):
        (root / "workspace" / "memory" / f"2026-11-{day:02d}.md").write_text(
            f"# 2026-11-{day:02d}\n\n" + "\n".join(f"- {_text(rng, 12)}" for _ in range(40))
        )
    for name in ("AGENTS.md", "SOUL.md", "USER.md", "MEMORY.md", "TOOLS.md"):
        (root / "workspace" / name).write_text(f"# {name[:-3]}\n\n{_text(rng, 400)}\n")
    (root / "workspace" / "CURRENT.md").symlink_to("MEMORY.md")

    queue_id = f"{rng.getrandbits(64):016x}"
    (state / "delivery-queue" / f"{queue_id}.json").write_text(
        json.dumps({"id": queue_id, "to": "user", "text": _text(rng, 20)})
    )

    db = sqlite3.connect(state / "memory" / "main.sqlite")
    db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, path TEXT, text TEXT, hash TEXT)")
    db.executemany(
        "INSERT INTO chunks (path, text, hash) VALUES (?, ?, ?)",
        [(f"memory/{i % 5}.md", _text(rng, 60), f"{rng.getrandbits(64):016x}") for i in range(800)],
    )
    db.commit()
    db.close()

    vectors = b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(64 * 384))
    (state / "memory" / "vectors.f32").write_bytes(vectors)
    return root


def mutate_workspace(root: Path, seed: int = 8) -> None:
    """One more agent turn: append to a transcript and a daily note, rewrite sessions.json."""
    rng = random.Random(seed)
    sessions = root / "state" / "agents" / "main" / "sessions"
    transcript = sorted(sessions.glob("*.jsonl"))[0]
    with transcript.open("a") as f:
        f.write(json.dumps({"type": "message", "role": "user", "text": _text(rng, 30)}) + "\n")
        f.write(json.dumps({"type": "turn", "n": 999}) + "\n")
    index = json.loads((sessions / "sessions.json").read_text())
    index[transcript.stem]["turns"] += 1
    (sessions / "sessions.json").write_text(json.dumps(index, indent=2))
    note = root / "workspace" / "memory" / "2026-11-05.md"
    with note.open("a") as f:
        f.write(f"- {_text(rng, 12)}\n")
    for entry in (root / "state" / "delivery-queue").glob("*.json"):
        entry.unlink()
