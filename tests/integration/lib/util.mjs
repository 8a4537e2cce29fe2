// util.mjs — small shared pieces: timeouts as failure guards, a seeded PRNG,
// random UTF-8, and `ws` client helpers.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import WebSocket from 'ws';

// Resolves or rejects like `promise`, but fails with "timed out: what" after
// ms. The timeout is a failure guard, never a way to wait.
export function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

// The first of `events` on emitter (an 'error' event rejects unless listed).
export function onceAny(emitter, events, ms, what) {
  const cleanups = [];
  const p = new Promise((resolve, reject) => {
    for (const ev of events) {
      const fn = (...args) => resolve({ event: ev, args });
      emitter.on(ev, fn);
      cleanups.push(() => emitter.off(ev, fn));
    }
    if (!events.includes('error')) {
      const fn = (e) => reject(e);
      emitter.on('error', fn);
      cleanups.push(() => emitter.off('error', fn));
    }
  });
  return withTimeout(p, ms, what ?? `one of ${events.join(', ')}`).finally(() => {
    for (const c of cleanups) c();
  });
}

// ---- seeded PRNG (xorshift128+ on BigInt-free 32-bit halves: sfc32) -------

export function makeRng(seed) {
  let a = seed >>> 0, b = 0x9e3779b9, c = 0x243f6a88, d = (seed ^ 0xdeadbeef) >>> 0;
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    const r = (t + d) | 0;
    c = (c + r) | 0;
    return r >>> 0;
  };
  for (let i = 0; i < 16; i++) next();
  const rng = {
    u32: next,
    // integer in [0, n)
    int: (n) => Math.floor((next() / 4294967296) * n),
    range: (lo, hi) => lo + Math.floor((next() / 4294967296) * (hi - lo + 1)),
    chance: (p) => next() / 4294967296 < p,
    pick: (arr) => arr[Math.floor((next() / 4294967296) * arr.length)],
    bytes(n) {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
  return rng;
}

// ---- random content --------------------------------------------------------

// Exactly n bytes of valid UTF-8 with a mix of 1-, 2-, 3- and 4-byte
// characters (random content; no surrogates). With rng (makeRng), the
// content is a function of its seed.
export function randomUtf8(n, rng) {
  const out = Buffer.allocUnsafe(n);
  const rnd = rng ? null : randomBytes(Math.min(n, 1 << 20) + 16);
  let ri = 0;
  const r = rng ? () => rng.u32() & 0xff : () => {
    if (ri >= rnd.length) {
      rnd.set(randomBytes(rnd.length));
      ri = 0;
    }
    return rnd[ri++];
  };
  let i = 0;
  while (i < n) {
    const left = n - i;
    const kind = r() & 3;
    const len = Math.min(kind + 1, left);
    if (len === 1) {
      out[i++] = 0x20 + (r() % 0x5f); // printable ASCII
    } else if (len === 2) {
      const cp = 0x80 + ((r() << 8 | r()) % (0x800 - 0x80));
      out[i++] = 0xc0 | (cp >> 6);
      out[i++] = 0x80 | (cp & 0x3f);
    } else if (len === 3) {
      let cp = 0x800 + ((r() << 8 | r()) % (0x10000 - 0x800));
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x20ac; // '€' instead of a surrogate
      out[i++] = 0xe0 | (cp >> 12);
      out[i++] = 0x80 | ((cp >> 6) & 0x3f);
      out[i++] = 0x80 | (cp & 0x3f);
    } else {
      const cp = 0x10000 + ((r() << 16 | r() << 8 | r()) % (0x110000 - 0x10000));
      out[i++] = 0xf0 | (cp >> 18);
      out[i++] = 0x80 | ((cp >> 12) & 0x3f);
      out[i++] = 0x80 | ((cp >> 6) & 0x3f);
      out[i++] = 0x80 | (cp & 0x3f);
    }
  }
  return out;
}

// ---- ws clients ------------------------------------------------------------

// Opens a `ws` client to server path (default /echo); resolves when open.
export async function wsConnect(server, path = '/echo', options = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}${path}`, {
    perMessageDeflate: false,
    maxPayload: 64 * 1024 * 1024,
    ...options,
  });
  // Messages are queued from the start so none is missed between awaits.
  ws.inbox = [];
  ws.waiters = [];
  ws.on('message', (data, isBinary) => {
    const msg = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
    const w = ws.waiters.shift();
    if (w) w(msg);
    else ws.inbox.push(msg);
  });
  ws.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on('error', (e) => {
    ws.lastError = e;
  });
  await onceAny(ws, ['open'], 10000, `WebSocket open on ${path}`);
  return ws;
}

// The next message a wsConnect client receives.
export function wsNext(ws, ms = 10000, what = 'a WebSocket message') {
  if (ws.inbox.length) return Promise.resolve(ws.inbox.shift());
  let waiter;
  const p = new Promise((resolve, reject) => {
    waiter = resolve;
    ws.waiters.push(resolve);
    ws.closed.then(({ code }) => reject(new Error(`connection closed (${code}) while waiting for ${what}`)));
  });
  return withTimeout(p, ms, what).catch((e) => {
    const i = ws.waiters.indexOf(waiter);
    if (i >= 0) ws.waiters.splice(i, 1);
    throw e;
  });
}

// Sends data and asserts it comes back byte-exact with the same type.
export async function wsRoundTrip(ws, data, { binary = true, ms = 10000 } = {}) {
  ws.send(data, { binary });
  const msg = await wsNext(ws, ms, `echo of a ${data.length}-byte message`);
  assert.equal(msg.isBinary, binary, 'echo has the type of the message sent');
  assert.ok(msg.data.equals(Buffer.from(data)),
    `echo of ${data.length} bytes differs (got ${msg.data.length} bytes)`);
  return msg;
}

// Closes a client and waits for the close handshake to finish.
export async function wsClose(ws, code = 1000) {
  if (ws.readyState === WebSocket.CLOSED) return ws.closed;
  if (ws.readyState === WebSocket.OPEN) ws.close(code);
  return withTimeout(ws.closed, 10000, 'WebSocket close');
}

// A fresh `ws` client on /echo sends a text and a binary message and gets
// both back: the server still serves well-behaved clients.
export async function assertHealthy(server, label = '') {
  const ws = await wsConnect(server);
  try {
    await wsRoundTrip(ws, Buffer.from(`still there? ${label} ✓`), { binary: false });
    await wsRoundTrip(ws, randomBytes(1000), { binary: true });
  } finally {
    await wsClose(ws);
  }
}

// GET a path with node:http; resolves {status, headers, body}.
export function httpGet(server, path, { method = 'GET', headers = {}, ms = 10000 } = {}) {
  const p = new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method, headers,
      agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return withTimeout(p, ms, `${method} ${path}`);
}

// The server's open connection count from /health (the /health request's own
// connection is subtracted).
export async function openConnections(server) {
  const res = await httpGet(server, '/health');
  assert.equal(res.status, 200);
  return JSON.parse(res.body).connections - 1;
}

// Polls cond() (async) until it returns true or ms elapse. For state that has
// no event to wait on from outside the server (its connection count).
export async function until(cond, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// A TCP port free on 127.0.0.1 now (for servers that need one named, like
// redis-server).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
