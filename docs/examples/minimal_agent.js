#!/usr/bin/env node
// A minimal agent speaking cleancut control protocol v1 (docs/protocol.md), with only
// node's standard library. Its workspace: counter.json (replaced atomically) and
// log.jsonl (appended, no fsync), written by a worker loop many times a second.
// A unit of work spans two event-loop turns (append, then replace the counter a moment
// later), so a quiesce really has to wait for the running one to finish.
//
//   node docs/examples/minimal_agent.js --socket PATH --workspace DIR
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || !process.argv[i + 1]) {
    console.error('usage: node minimal_agent.js --socket PATH --workspace DIR');
    process.exit(2);
  }
  return process.argv[i + 1];
}
const SOCKET = arg('--socket');
const WS = arg('--workspace');
const MAX_LINE = 1 << 20;
const now = () => performance.now(); // monotonic, in ms

// The shared state. One event loop, so no lock is needed.
let state = 'running'; // running | quiescing | quiesced
let owner = null; // the connection holding quiesce
let leaseEnd = 0;
let busy = false; // a unit of work is running
let parked = false; // the worker stopped because we are not running
let quiesceWaiter = null; // re-checks the pending quiesce when a unit ends or we resume
let n = 0;

function unit() {
  if (state !== 'running') { parked = true; return; } // admit no new unit
  busy = true;
  n += 1;
  fs.appendFileSync(path.join(WS, 'log.jsonl'), JSON.stringify({ n, t: Date.now() }) + '\n');
  setTimeout(() => {
    const tmp = path.join(WS, 'counter.json.tmp');
    const fd = fs.openSync(tmp, 'w');
    fs.writeSync(fd, JSON.stringify({ n }));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, path.join(WS, 'counter.json'));
    busy = false;
    if (quiesceWaiter) quiesceWaiter();
    setTimeout(unit, 5);
  }, 2);
}

function resume() {
  state = 'running';
  owner = null;
  if (quiesceWaiter) quiesceWaiter(); // a quiesce still waiting answers "cancelled"
  if (parked) { parked = false; setImmediate(unit); }
}

function ms(req, name, dflt) {
  const v = req[name] === undefined ? dflt : req[name];
  if (typeof v !== 'number' || v < 0) {
    throw new Error(`${name} must be a non-negative number of milliseconds`);
  }
  return name === 'lease_ms' ? Math.min(Math.trunc(v), 600000) : Math.trunc(v); // lease cap
}

function quiesce(conn, req) {
  const timeoutMs = ms(req, 'timeout_ms', 60000);
  const leaseMs = ms(req, 'lease_ms', 30000);
  if (state !== 'running' && owner !== conn) {
    return { ok: false, error: 'busy: another client holds quiesce' };
  }
  if (state === 'quiesced') { // the holder asks again: a renewal
    leaseEnd = now() + leaseMs;
    return { ok: true, state: 'quiesced', inflight: [] };
  }
  state = 'quiescing';
  owner = conn;
  return new Promise((resolve) => {
    const done = (reply) => { clearTimeout(timer); quiesceWaiter = null; resolve(reply); };
    const check = (timedOut) => {
      if (state !== 'quiescing' || owner !== conn) {
        done({ ok: false, error: 'cancelled: resumed while quiescing' });
      } else if (!busy) {
        state = 'quiesced';
        leaseEnd = now() + leaseMs;
        done({ ok: true, state: 'quiesced', inflight: [] });
      } else if (timedOut) {
        done({ ok: false, error: 'timeout' });
        resume();
      }
    };
    const timer = setTimeout(() => check(true), timeoutMs);
    quiesceWaiter = () => check(false);
    check(false);
  });
}

function handle(conn, req) {
  switch (req.op) {
    case 'hello':
      if (!Number.isInteger(req.protocol) || req.protocol < 1) {
        return { ok: false, error: `unsupported protocol: ${req.protocol} (this agent speaks 1)` };
      }
      return { ok: true, protocol: 1, agent: 'minimal-js', state,
        capabilities: ['quiesce', 'flush', 'inflight'] };
    case 'quiesce':
      return quiesce(conn, req);
    case 'flush': // the counter is fsynced per unit; the log's appends and the renames are not
      for (const p of [path.join(WS, 'log.jsonl'), WS]) {
        const fd = fs.openSync(p, 'r');
        fs.fsyncSync(fd);
        fs.closeSync(fd);
      }
      return { ok: true, flushed: true };
    case 'inflight':
      return { ok: true, inflight: [] }; // no external actions, so nothing in flight
    case 'renew': {
      const leaseMs = ms(req, 'lease_ms', 30000);
      if (state !== 'quiesced') return { ok: false, error: 'not quiesced: the lease ended' };
      if (owner !== conn) return { ok: false, error: 'busy: another client holds quiesce' };
      leaseEnd = now() + leaseMs;
      return { ok: true, state: 'quiesced' };
    }
    case 'resume':
      resume();
      return { ok: true, state: 'running' };
    default:
      return { ok: false, error: `unknown op: ${req.op}` };
  }
}

function serve(conn) {
  let buf = Buffer.alloc(0);
  let queue = Promise.resolve(); // replies go out in the order of the requests
  const send = (msg) => { if (!conn.destroyed) conn.write(JSON.stringify(msg) + '\n'); };
  conn.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    let i;
    while ((i = buf.indexOf(10)) >= 0) {
      const line = buf.subarray(0, i).toString('utf8');
      buf = buf.subarray(i + 1);
      if (!line.trim()) continue;
      queue = queue.then(async () => {
        let req = {};
        let reply;
        try {
          const message = JSON.parse(line);
          if (message === null || typeof message !== 'object' || Array.isArray(message)) {
            throw new Error('a message must be a JSON object');
          }
          req = message;
          reply = await handle(conn, req);
        } catch (err) {
          reply = { ok: false, error: `bad request: ${err.message}` };
        }
        send({ id: req.id === undefined ? null : req.id, ...reply });
      });
    }
    if (buf.length > MAX_LINE) { // a broken peer: answer, then close
      conn.pause();
      queue = queue.then(() => {
        send({ id: null, ok: false, error: 'bad request: line over 1 MiB' });
        conn.end();
      });
    }
  });
  conn.on('error', () => {});
  conn.on('close', () => { // the holder's connection closed: the lease ends
    if (owner === conn && state !== 'running') resume();
  });
}

setInterval(() => { // the lease
  if (state === 'quiesced' && now() > leaseEnd) resume();
}, 20);

fs.mkdirSync(WS, { recursive: true });
let existing = null;
try { existing = fs.lstatSync(SOCKET); } catch (err) { if (err.code !== 'ENOENT') throw err; }
if (existing && !existing.isSocket()) { // a file, directory or symlink: not ours to delete
  console.error(`${SOCKET} is not a socket; refusing to delete it`);
  process.exit(1);
}
const probe = net.connect(SOCKET);
probe.on('connect', () => {
  console.error(`another process serves ${SOCKET}`);
  process.exit(1);
});
probe.on('error', (err) => {
  if (err.code === 'ECONNREFUSED') fs.unlinkSync(SOCKET); // a stale socket left by a dead agent
  const server = net.createServer(serve);
  const old = process.umask(0o177); // the socket is 0600
  server.listen(SOCKET, () => {
    process.umask(old);
    console.log('ready');
    unit();
  });
});
