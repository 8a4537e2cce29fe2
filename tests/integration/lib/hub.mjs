// hub.mjs — helpers for the hub's JSON protocol at /ws: a server on a fresh
// data directory, and a `ws` client that queues every JSON message it gets
// and lets a test wait for the next one of a type.
//
// Waiting is event-driven: next() resolves when the message arrives; its
// timeout is a failure guard. To show that something did NOT arrive, sync()
// sends a ping and waits for the pong: the server handles a connection's
// messages in order on one loop, so whatever a recipient was going to get
// from an earlier event is queued before that pong.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { start } from './server.mjs';
import { withTimeout } from './util.mjs';

export const WAIT_MS = 5000; // failure guard for one expected message

// RFC 3339 UTC with milliseconds, as the protocol promises.
export const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export function assertTimestamp(ts, what = 'timestamp') {
  assert.match(String(ts), TIMESTAMP, `${what} is RFC 3339 UTC with milliseconds`);
  const t = Date.parse(ts);
  assert.ok(Math.abs(t - Date.now()) < 60_000, `${what} ${ts} is about now`);
}

// Directories still there when the test process exits are removed, so
// that a failed test leaves none behind.
const liveDirs = new Set();
process.on('exit', () => {
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});

// A fresh temporary directory; remove() deletes it.
export function tempDir(prefix = 'sb-hub-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  return {
    dir,
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    },
  };
}

// Starts the server with history in a fresh temporary directory (or in
// `dataDir` when given: the caller owns it). stop() also removes the
// directory the helper made.
export async function startHub(args = [], { dataDir } = {}) {
  const own = dataDir === undefined ? tempDir() : null;
  const server = await start(['--data-dir', dataDir ?? own.dir, ...args]);
  server.dataDir = dataDir ?? own.dir;
  const stop = server.stop;
  server.stop = async (opts) => {
    try {
      return await stop(opts);
    } finally {
      own?.remove();
    }
  };
  return server;
}

let nickSeq = 0;
// A nickname no other test of this process uses.
export function uniqueNick(base = 'u') {
  return `${base}${++nickSeq}`;
}

// Does message m match `pred`: a function, or an object whose entries m
// must have (compared with ===)?
function matches(m, pred) {
  if (!pred) return true;
  if (typeof pred === 'function') return pred(m);
  return Object.entries(pred).every(([k, v]) => m[k] === v);
}

export class HubClient {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.queue = [];    // received and not yet taken by next()
    this.received = []; // everything received, in order
    this.waiters = new Set();
    this.failure = null; // a frame the protocol does not allow
    this.sent = { messages: 0, bytes: 0 };     // what this client sent
    this.got = { messages: 0, bytes: 0 };      // what it received
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this._wake();
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (e) => {
      this.lastError = e;
    });
    ws.on('message', (data, isBinary) => {
      this.got.messages++;
      this.got.bytes += data.length;
      if (isBinary) {
        this.failure = new Error(`${label}: the server sent a binary frame on /ws`);
      } else {
        const text = data.toString('utf8');
        let m;
        try {
          m = JSON.parse(text);
        } catch {
          this.failure = new Error(`${label}: the server sent text that is not JSON: ${text}`);
        }
        if (m !== undefined) {
          if (m === null || typeof m !== 'object' || Array.isArray(m) || typeof m.type !== 'string') {
            this.failure = new Error(`${label}: a server message without a type: ${text}`);
          }
          this.received.push(m);
          this.queue.push(m);
        }
      }
      this._wake();
    });
  }

  _wake() {
    for (const w of [...this.waiters]) w();
  }

  // Connects to path (default /ws). With greeting (the default), takes the
  // welcome and the system message and keeps them as .welcome and .system.
  static async connect(server, { path = '/ws', label, greeting = true, headers } = {}) {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}${path}`, {
      perMessageDeflate: false,
      headers,
    });
    const c = new HubClient(ws, label ?? `client@${path}`);
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }), WAIT_MS, `${c.label}: WebSocket open on ${path}`);
    if (greeting) {
      c.welcome = await c.next('welcome');
      c.system = await c.next('system');
      c.id = c.welcome.user_id;
    }
    return c;
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  // Sends an object as JSON, or a string / Buffer as is (binary: true for
  // a binary frame).
  send(msg, { binary = false } = {}) {
    const data = typeof msg === 'string' || Buffer.isBuffer(msg) ? msg : JSON.stringify(msg);
    this.sent.messages++;
    this.sent.bytes += Buffer.byteLength(data);
    this.ws.send(data, { binary });
  }

  // Takes the first queued message of `type` (any type when null) that
  // matches pred, waiting for it when there is none yet. Messages of other
  // types stay queued for later next() calls.
  next(type, pred, { ms = WAIT_MS, what } = {}) {
    const desc = what ?? `a ${type ?? 'message'}${pred && typeof pred === 'object'
      ? ` with ${JSON.stringify(pred)}` : ''}`;
    const take = () => {
      if (this.failure) throw this.failure;
      const i = this.queue.findIndex((m) => (type === null || m.type === type) && matches(m, pred));
      return i < 0 ? undefined : this.queue.splice(i, 1)[0];
    };
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = () => {
        try {
          const m = take();
          if (m) resolve(m);
          else if (this.closeInfo) {
            reject(new Error(`${this.label}: connection closed (${this.closeInfo.code}) ` +
              `while waiting for ${desc}; unread: ${JSON.stringify(this.queue)}`));
          } else return;
        } catch (e) {
          reject(e);
        }
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(p, ms, `${this.label}: ${desc}; unread: ${JSON.stringify(this.queue)}`)
      .finally(() => this.waiters.delete(waiter));
  }

  // Sends msg and waits for the answer of `type` (matching pred).
  async request(msg, type, pred) {
    this.send(msg);
    return this.next(type, pred);
  }

  // A round trip (ping -> pong): everything the server queued for this
  // client before it read the ping has arrived once this resolves. Also
  // shows that the connection is open and served.
  async sync() {
    this.send({ type: 'ping' });
    const pong = await this.next('pong', null, { what: 'the pong to a ping' });
    assertTimestamp(pong.timestamp, 'pong timestamp');
    return pong;
  }

  // Asserts that no queued message is of `type` (and matches pred). Call
  // it after sync().
  assertNone(type, pred, what) {
    const m = this.queue.find((x) => (type === null || x.type === type) && matches(x, pred));
    assert.equal(m, undefined, `${this.label}: ${what ?? `no ${type}`} expected, got ` +
      JSON.stringify(m));
  }

  // Takes everything queued (of `type` when given).
  drain(type) {
    if (type === undefined) return this.queue.splice(0);
    const out = this.queue.filter((m) => m.type === type);
    this.queue = this.queue.filter((m) => m.type !== type);
    return out;
  }

  // Sends msg, expects an error with `code` and a message in plain words,
  // then shows that the connection stays open and served (ping -> pong).
  async expectError(msg, code, opts = {}) {
    this.send(msg, opts);
    const e = await this.next('error', null, { what: `error ${code}` });
    assert.equal(e.code, code, `error code for ${typeof msg === 'string' ? msg : JSON.stringify(msg)}` +
      ` (error: ${e.error})`);
    assert.equal(typeof e.error, 'string');
    assert.ok(e.error.length > 5, 'the error says what was wrong');
    assertTimestamp(e.timestamp, 'error timestamp');
    assert.ok(this.open, 'the connection stays open after an error');
    await this.sync();
    assert.ok(this.open, 'the connection stays open after an error');
    return e;
  }

  // Joins a room (undefined: the default) and waits for this client's own
  // user_joined, presence (online) and history. Returns { joined,
  // presence, history }.
  async join(room, nickname, { spelling = 'join', roomField = 'room' } = {}) {
    const msg = { type: spelling };
    if (room !== undefined) msg[roomField] = room;
    if (nickname !== undefined) msg.nickname = nickname;
    this.send(msg);
    const name = room ?? 'general';
    const joined = await this.next('user_joined', { room: name, user_id: this.id });
    const presence = await this.next('presence', { user_id: this.id, status: 'online' });
    const history = await this.next('history', { room: name });
    this.nickname = nickname ?? this.nickname;
    return { joined, presence, history };
  }

  // Sends a message to a room and waits for this client's own copy.
  async say(room, content, extra = {}) {
    this.send({ type: 'message', room, content, ...extra });
    return this.next('message', { room, from: this.id, content });
  }

  // Closes (code 1000) and waits for the close handshake to finish.
  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closed;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    return withTimeout(this.closed, WAIT_MS, `${this.label}: close`);
  }

  // Drops the TCP connection without a close handshake.
  terminate() {
    this.ws.terminate();
    return withTimeout(this.closed, WAIT_MS, `${this.label}: terminate`);
  }
}

// Connects n clients (labelled prefix1..n).
export async function connectMany(server, n, prefix = 'c') {
  const out = [];
  for (let i = 1; i <= n; i++) out.push(await HubClient.connect(server, { label: `${prefix}${i}` }));
  return out;
}

// Closes clients, ignoring ones already gone.
export async function closeAll(clients) {
  await Promise.all(clients.filter(Boolean).map((c) => c.close().catch(() => {})));
}

// One HTTP request on its own connection (node:http, no keep-alive pool).
// body (an object) is sent as JSON; raw (a string) as is. Resolves
// {status, headers (lower-case names), text, json (undefined if not JSON)}.
export function api(server, method, path, { body, headers = {}, raw } = {}) {
  const h = { ...headers };
  let data;
  if (raw !== undefined) data = Buffer.from(raw);
  else if (body !== undefined) {
    data = Buffer.from(JSON.stringify(body));
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
      h['Content-Type'] = 'application/json';
    }
  }
  if (data) h['Content-Length'] = String(data.length);
  const p = new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method, headers: h,
      agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
  return withTimeout(p, WAIT_MS, `${method} ${path}`);
}
