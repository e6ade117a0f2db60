"""A minimal agent speaking cleancut control protocol v1 by hand: raw socket + json.

Written only from docs/protocol.md, as an author in another language would; it
imports nothing from cleancut. Its workspace: counter.json (replaced atomically)
and log.jsonl (appended, no fsync), written by a worker thread about 150 times a
second. Usage: python tests/minimal_agent.py --socket PATH --workspace DIR
"""

import argparse
import contextlib
import json
import os
import socket
import stat
import threading
import time

MAX_LINE = 1 << 20


def ms(req: dict, name: str, default: int) -> int:
    v = req.get(name, default)
    if type(v) not in (int, float) or v < 0:
        raise ValueError(f"{name} must be a non-negative number of milliseconds")
    return min(int(v), 600_000) if name == "lease_ms" else int(v)  # the lease cap


def send(conn: socket.socket, msg: dict) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(msg).encode() + b"\n")


class Agent:
    def __init__(self, workspace: str) -> None:
        self.ws, self.n = workspace, 0
        self.cond = threading.Condition()  # guards the four fields below
        self.state, self.owner, self.lease_end, self.busy = "running", None, 0.0, False

    def worker(self) -> None:
        while True:
            with self.cond:
                while self.state != "running":  # no new unit while quiescing or quiesced
                    self.cond.wait()
                self.busy = True
            try:
                self.unit()
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()
            time.sleep(0.005)

    def unit(self) -> None:  # one unit of work: append to the log, replace the counter
        self.n += 1
        with open(os.path.join(self.ws, "log.jsonl"), "a") as f:
            f.write(json.dumps({"n": self.n, "t": time.time()}) + "\n")
        tmp = os.path.join(self.ws, "counter.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"n": self.n}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.ws, "counter.json"))

    def resume_locked(self) -> None:
        self.state, self.owner = "running", None
        self.cond.notify_all()

    def lease_timer(self) -> None:
        while True:
            time.sleep(0.02)
            with self.cond:
                if self.state == "quiesced" and time.monotonic() > self.lease_end:
                    self.resume_locked()

    def handle(self, conn: socket.socket, req: dict) -> dict:
        op = req.get("op")
        if op == "hello":
            v = req.get("protocol")
            if type(v) is not int or v < 1:
                return {"ok": False, "error": f"unsupported protocol: {v} (this agent speaks 1)"}
            return {"ok": True, "protocol": 1, "agent": "minimal-py", "state": self.state,
                    "capabilities": ["quiesce", "flush", "inflight"]}
        if op == "quiesce":
            timeout_ms, lease_ms = ms(req, "timeout_ms", 60_000), ms(req, "lease_ms", 30_000)
            deadline = time.monotonic() + timeout_ms / 1000
            with self.cond:
                if self.state != "running" and self.owner is not conn:
                    return {"ok": False, "error": "busy: another client holds quiesce"}
                if self.state == "running":  # else: the holder asks again, a renewal
                    self.state, self.owner = "quiescing", conn
                    while self.busy and self.state == "quiescing" and self.owner is conn:
                        if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                            break
                    if self.state != "quiescing" or self.owner is not conn:
                        return {"ok": False, "error": "cancelled: resumed while quiescing"}
                    if self.busy:
                        self.resume_locked()
                        return {"ok": False, "error": "timeout"}
                    self.state = "quiesced"
                self.lease_end = time.monotonic() + lease_ms / 1000
            return {"ok": True, "state": "quiesced", "inflight": []}
        if op == "flush":  # the counter is fsynced per unit; the log and renames are not
            for path in (os.path.join(self.ws, "log.jsonl"), self.ws):
                fd = os.open(path, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            return {"ok": True, "flushed": True}
        if op == "inflight":
            return {"ok": True, "inflight": []}  # no external actions, so nothing in flight
        if op == "renew":
            lease_ms = ms(req, "lease_ms", 30_000)
            with self.cond:
                if self.state != "quiesced":
                    return {"ok": False, "error": "not quiesced: the lease ended"}
                if self.owner is not conn:
                    return {"ok": False, "error": "busy: another client holds quiesce"}
                self.lease_end = time.monotonic() + lease_ms / 1000
            return {"ok": True, "state": "quiesced"}
        if op == "resume":
            with self.cond:
                self.resume_locked()
            return {"ok": True, "state": "running"}
        return {"ok": False, "error": f"unknown op: {op}"}

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\n" not in buf:
                    if len(buf) > MAX_LINE:
                        error = "bad request: line over 1 MiB"  # then close: a broken peer
                        return send(conn, {"id": None, "ok": False, "error": error})
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                line, _, buf = buf.partition(b"\n")
                if not line.strip():
                    continue
                req: dict = {}  # a line we cannot read gets "id": null
                try:
                    message = json.loads(line)
                    if not isinstance(message, dict):
                        raise ValueError("a message must be a JSON object")
                    req = message
                    reply = self.handle(conn, req)
                except (TypeError, ValueError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                send(conn, {"id": req.get("id"), **reply})
        except OSError:
            pass
        finally:
            with self.cond:  # the holder's connection closed: the lease ends
                if self.owner is conn and self.state != "running":
                    self.resume_locked()
            conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--workspace", required=True)
    args = ap.parse_args()
    os.makedirs(args.workspace, exist_ok=True)
    agent = Agent(args.workspace)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(args.socket).st_mode):  # a file, dir, symlink: not ours
            raise SystemExit(f"{args.socket} is not a socket; refusing to delete it")
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(args.socket)
        raise SystemExit(f"another process serves {args.socket}")
    except (FileNotFoundError, ConnectionRefusedError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.socket)  # a stale socket left by a dead agent
    finally:
        probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is 0600
    listener.bind(args.socket)
    os.umask(old)
    listener.listen(8)
    for target in (agent.worker, agent.lease_timer):
        threading.Thread(target=target, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=agent.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
