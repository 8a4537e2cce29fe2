#!/usr/bin/env node
// soak.mjs — soak under faults: thousands of well-behaved chat clients for
// minutes while others churn, stop reading, send garbage or drop their TCP
// connection; then checks that the server kept serving every well-behaved
// client, closed each misbehaving one with its documented code, and that its
// memory came back to where it was before the faults.
//
//   node bench/soak.mjs [options]      (make soak: the long version)
//   import { runSoak } from '../../bench/soak.mjs'   (tests/integration/soak.test.mjs)
//
// `node bench/soak.mjs --help` lists the options. bench/README.md ("Soak")
// describes the phases, what is checked and how memory is judged. Every step
// is bounded in time; the process exits 0 when every check held, 1 when one
// did not, 2 on a bad option.
import net from 'node:net';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { HttpConn } from '../tests/integration/lib/http.mjs';
import { closePayload, frame, OP, RawClient } from '../tests/integration/lib/raw.mjs';
import { makeRng, withTimeout } from '../tests/integration/lib/util.mjs';

const require = createRequire(import.meta.url);
// The integration tests' copy of `ws` (scripts/deps.sh installs it).
const WebSocket = require('../tests/integration/node_modules/ws');

export const DEFAULTS = {
  duration: 180,        // s: warm-up + faults + recovery (the chat runs throughout)
  warmup: 12,           // s before the memory baseline (longer than the 10 s heap trim period)
  recover: 30,          // s at most for connections and memory to come back after the faults
  settle: 11,           // s more of memory samples after that, for the report only
  clients: 2000,        // well-behaved clients in the ordinary rooms
  rooms: 20,            // ordinary rooms (clients are spread evenly)
  rate: 0.1,            // messages/s sent by each well-behaved client
  size: 120,            // bytes of an ordinary message's content
  busyMembers: 10,      // well-behaved members of the busy room (besides --clients)
  busyPublishers: 2,    // of which this many publish large messages
  busyRate: 20,         // large messages/s into the busy room (all publishers together)
  busySize: 50000,      // bytes of a large message's content
  churners: 50,         // concurrent connect-join-chat-leave loops
  garbage: 8,           // concurrent garbage-sending loops
  slow: 3,              // slow consumers per wave (waves follow each other)
  memTolerancePct: 10,  // memory "after" may exceed the baseline by this share...
  memSlackMiB: 2,       // ...plus this many MiB
  connectConcurrency: 100,
  seed: 1,
  maxContent: 0,        // the server's --max-content (0: the larger of 4096 and busySize)
};

// ---- small helpers -------------------------------------------------------

// GET a JSON document from the server (its own connection each time).
function getJson(port, path, ms = 10000) {
  const p = new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`GET ${path}: status ${res.statusCode}`);
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return withTimeout(p, ms, `GET ${path}`);
}

// The server's memory from /proc/PID/status, in KiB: RssAnon (heap and
// other private memory: what a leak or an unreturned burst shows in) and
// VmRSS (also counts library and file pages).
export function serverMemKiB(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(s);
    if (!m) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(m[1]);
  };
  return { anon: field('RssAnon'), rss: field('VmRSS') };
}

// Polls cond (async) every `every` ms until it is true; false after ms.
async function pollUntil(cond, ms, every = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await delay(every);
  }
}

// Runs fn over items with at most n at a time.
async function pool(items, n, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

// Content of exactly `bytes` UTF-8 bytes (or fewer by at most 3) mixing 1- to
// 4-byte characters, so that the server's UTF-8 validation is exercised.
function padding(bytes) {
  const chars = ['s', 'o', 'a', 'k', ' ', 'é', '☃', '𝄞', '-', 'ß'];
  let out = '';
  let n = 0;
  for (let i = 0; ; i++) {
    const ch = chars[i % chars.length];
    const len = Buffer.byteLength(ch);
    if (n + len > bytes) break;
    out += ch;
    n += len;
  }
  return out;
}

// Failures by kind: a count and the first few details of each.
class Failures {
  constructor() {
    this.kinds = new Map();
  }

  add(kind, detail) {
    let k = this.kinds.get(kind);
    if (!k) this.kinds.set(kind, (k = { count: 0, samples: [] }));
    k.count++;
    if (k.samples.length < 5) k.samples.push(detail);
  }

  get total() {
    let n = 0;
    for (const k of this.kinds.values()) n += k.count;
    return n;
  }

  list() {
    return [...this.kinds].map(([kind, k]) => ({ kind, ...k }));
  }
}

// ---- well-behaved clients --------------------------------------------------

// One well-behaved client: joins its room with a nickname, chats at the rate
// the driver gives it, reads everything, and checks every message of its
// room as it arrives: ids strictly increasing, and from each well-behaved
// sender sequence numbers 1, 2, 3... (nothing lost, doubled or reordered).
class Member {
  constructor(d, tag, room) {
    this.d = d;
    this.tag = tag;       // nickname, and the sender tag inside its contents
    this.room = room;
    this.seq = 0;         // messages sent
    this.lastSeq = new Map(); // sender tag -> last sequence number received
    this.lastId = 0;
    this.closing = false;
    this.closeInfo = null;
    this.waiters = [];    // [pred, resolve, reject]: pred is checked after every message
  }

  async connect() {
    const { d } = this;
    const ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, { perMessageDeflate: false });
    this.ws = ws;
    ws.on('error', (e) => {
      this.lastError = e;
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code) => {
        this.closeInfo = { code };
        if (!this.closing) {
          d.failures.add('well-behaved client disconnected',
            `${this.tag} (room ${this.room}) closed with ${code}` +
            (this.lastError ? ` (${this.lastError.message})` : ''));
        }
        for (const [, , reject] of this.waiters) reject(new Error(`${this.tag}: closed (${code})`));
        this.waiters = [];
        resolve(code);
      });
    });
    ws.on('message', (data) => this.onMessage(data));
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }), 20000, `${this.tag}: WebSocket open`);
    ws.send(JSON.stringify({ type: 'join', room: this.room, nickname: this.tag }));
    await this.when((m) => m.type === 'history' && m.room === this.room, 20000,
      `${this.tag}: the history that answers its join`);
  }

  // Resolves with the first later message that pred accepts (or at once
  // with true when check() already holds).
  when(pred, ms, what, check) {
    if (check?.()) return Promise.resolve(true);
    const p = new Promise((resolve, reject) => {
      if (this.closeInfo) reject(new Error(`${this.tag}: closed (${this.closeInfo.code})`));
      else this.waiters.push([pred, resolve, reject]);
    });
    return withTimeout(p, ms, what);
  }

  onMessage(data) {
    const { d } = this;
    d.counts.delivered++;
    let m;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      d.failures.add('not JSON', `${this.tag}: ${data.toString('utf8').slice(0, 100)}`);
      return;
    }
    if (m.type === 'message') this.onChat(m);
    else if (m.type === 'error') {
      d.failures.add('error sent to a well-behaved client', `${this.tag}: ${JSON.stringify(m)}`);
    }
    if (this.waiters.length) {
      this.waiters = this.waiters.filter(([pred, resolve]) => {
        if (!pred(m)) return true;
        resolve(m);
        return false;
      });
    }
  }

  onChat(m) {
    const { d } = this;
    d.counts.chatDelivered++;
    if (m.room !== this.room) {
      d.failures.add('message from a room not joined', `${this.tag} in ${this.room} got ${m.room}`);
      return;
    }
    if (!(Number.isInteger(m.id) && m.id > this.lastId)) {
      d.failures.add('ids not strictly increasing',
        `${this.tag} in ${this.room}: id ${m.id} after ${this.lastId}`);
    }
    if (Number.isInteger(m.id)) this.lastId = Math.max(this.lastId, m.id);
    const content = String(m.content);
    const bar = content.indexOf('|');
    const tag = content.slice(0, bar);
    const sender = d.byTag.get(tag);
    if (!sender) return; // a churner's message: not tracked
    const seq = Number(content.slice(bar + 1, content.indexOf('|', bar + 1)));
    if (m.nickname !== tag || sender.room !== this.room) {
      d.failures.add('message attributed to the wrong sender',
        `${this.tag} in ${this.room}: content of ${tag} (in ${sender.room}) came from ` +
        `${m.nickname}`);
      return;
    }
    const prev = this.lastSeq.get(tag) ?? 0;
    if (seq === prev + 1) d.counts.inOrder++;
    else {
      const kind = seq <= prev ? 'message received twice or out of order' : 'message lost';
      d.failures.add(kind, `${this.tag} in ${this.room}: from ${tag} #${seq} after #${prev}`);
    }
    if (seq > prev) this.lastSeq.set(tag, seq);
    // Every member must see the same id for the same message.
    const key = `${tag}|${seq}`;
    const ids = d.ids.get(this.room);
    const known = ids.get(key);
    if (known === undefined) ids.set(key, m.id);
    else if (known !== m.id) {
      d.failures.add('members saw different ids for one message',
        `${key} in ${this.room}: ${known} and ${m.id}`);
    }
  }

  send(pad) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.seq++;
    const content = `${this.tag}|${this.seq}|${pad}`;
    this.ws.send(JSON.stringify({ type: 'message', room: this.room, content }));
    return true;
  }
}

// ---- churners ------------------------------------------------------------

// Connect, join an ordinary room with a nickname, send one to three messages,
// then (in turn) close properly (expects the server's 1000 back) or drop the
// TCP connection without a close (ws.terminate(): socket.destroy()); again
// until the faults end. The server must never close a churner on its own.
async function churnLoop(d, rng) {
  while (!d.faultsOver()) {
    const n = ++d.counts.churnCycles;
    const tag = `c${n}`;
    const t = Date.now();
    const room = rng.pick(d.roomNames);
    const ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, { perMessageDeflate: false });
    let leaving = false;
    let lastError;
    ws.on('error', (e) => {
      lastError = e;
    });
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    closed.then((code) => {
      if (!leaving) {
        d.failures.add('churner closed by the server',
          `${tag}: ${code}${lastError ? ` (${lastError.message})` : ''}`);
      }
    });
    try {
      await withTimeout(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      }), 10000, `${tag}: WebSocket open`);
      const joined = new Promise((resolve, reject) => ws.on('message', (data) => {
        try {
          const m = JSON.parse(data.toString('utf8'));
          if (m.type === 'history' && m.room === room) resolve();
        } catch (e) {
          reject(new Error(`the server sent text that is not JSON: ${e.message}`));
        }
      }));
      ws.send(JSON.stringify({ type: 'join', room, nickname: tag }));
      await withTimeout(joined, 10000, `${tag}: the history that answers its join`);
      const k = rng.range(1, 3);
      for (let i = 1; i <= k; i++) {
        ws.send(JSON.stringify({ type: 'message', room, content: `${tag}|${i}|churn` }));
        d.counts.churnSent++;
        await delay(rng.range(10, 300));
      }
      leaving = true;
      d.timing('churn', Date.now() - t);
      if (n % 2) {
        ws.close(1000);
        const code = await withTimeout(closed, 10000, `${tag}: the close handshake`);
        d.close('churner: close 1000', code, 1000);
      } else {
        ws.terminate(); // socket.destroy(): no close frame, no FIN wait
        d.close('churner: TCP dropped', 'dropped', 'dropped');
      }
    } catch (e) {
      leaving = true;
      ws.terminate();
      d.failures.add('churner failed', `${tag}: ${e.message}`);
    }
    await delay(rng.range(0, 200));
  }
}

// ---- garbage senders -----------------------------------------------------

const GiB = 1n << 30n;
const text = (payload, o = {}) => frame({ opcode: OP.TEXT, payload: Buffer.from(payload), ...o });

// Each sends frames over raw TCP after the opening handshake to /ws and
// expects the close code docs/protocol.md gives for it.
const FRAME_GARBAGE = [
  ['unmasked text frame', 1002, () => [text('{"type":"ping"}', { mask: false })]],
  ['RSV1 without an extension', 1002, () => [text('{"type":"ping"}', { rsv: 4 })]],
  ['reserved opcode 3', 1002, () => [frame({ opcode: 3, payload: Buffer.from('x') })]],
  ['reserved opcode 0xB', 1002, () => [frame({ opcode: 0xb })]],
  ['ping of 126 bytes', 1002, () => [frame({ opcode: OP.PING, payload: Buffer.alloc(126, 0x61) })]],
  ['fragmented ping', 1002, () => [frame({ opcode: OP.PING, fin: false })]],
  ['continuation without a message', 1002, () => [frame({ opcode: OP.CONT, payload: Buffer.from('x') })]],
  ['text frame inside a fragmented message', 1002,
    () => [text('{"type":', { fin: false }), text('"ping"}')]],
  ['64-bit length with the top bit set', 1002,
    () => [frame({ opcode: OP.BINARY, lenOverride: 1n << 63n, lenBits: 64 })]],
  ['invalid UTF-8 (C3 28)', 1007, () => [text(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]))]],
  ['invalid UTF-8 across fragments (E2 82 | 28)', 1007,
    () => [text(Buffer.from([0xe2, 0x82]), { fin: false }),
      frame({ opcode: OP.CONT, payload: Buffer.from([0x28]) })]],
  ['UTF-8 surrogate (ED A0 80)', 1007, () => [text(Buffer.from([0xed, 0xa0, 0x80]))]],
  ['frame announcing 1 GiB', 1009, () => [frame({ opcode: OP.TEXT, lenOverride: GiB })]],
  ['close with a 1-byte payload', 1002, () => [frame({ opcode: OP.CLOSE, payload: Buffer.from([3]) })]],
  ['close code 1005', 1002, () => [frame({ opcode: OP.CLOSE, payload: closePayload(1005) })]],
  ['close reason not UTF-8', 1007,
    () => [frame({ opcode: OP.CLOSE, payload: closePayload(1000, Buffer.from([0xff])) })]],
];

// Garbage before the WebSocket handshake: the HTTP layer answers 400 and
// closes.
const HTTP_GARBAGE = [
  ['TLS ClientHello on the plain port', 400,
    () => Buffer.from('16030100a5010000a103035f', 'hex')],
  ['Sec-WebSocket-Key not 16 bytes', 400, () => Buffer.from(
    'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n')],
];

// Valid frames, bad messages: the server answers an `error` and keeps the
// connection; then the sender closes properly (1000 back).
const APP_GARBAGE = [
  ['not JSON', 'invalid_json', () => text('{"type":"message",')],
  ['binary on /ws', 'binary_not_supported', () => frame({ opcode: OP.BINARY, payload: Buffer.from([0, 1, 255]) })],
];

const GARBAGE_KINDS = [
  ...FRAME_GARBAGE.map(([name, code, make]) => ({ layer: 'frame', name, code, make })),
  ...HTTP_GARBAGE.map(([name, code, make]) => ({ layer: 'http', name, code, make })),
  ...APP_GARBAGE.map(([name, code, make]) => ({ layer: 'app', name, code, make })),
];
export const GARBAGE_KIND_COUNT = GARBAGE_KINDS.length;

// Reads server frames until a close frame; returns its code, or 'no close
// frame' when TCP ends first. Text frames before it (welcome, chat) are fine.
async function closeCodeOf(c, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    let f;
    try {
      f = await c.nextFrame({ ms: Math.max(1, deadline - Date.now()), skipPings: true });
    } catch (e) {
      if (c.ended) return 'no close frame';
      throw e;
    }
    if (f.opcode === OP.CLOSE) return f.code;
    if (f.opcode !== OP.TEXT) throw new Error(`server sent opcode ${f.opcode} on /ws`);
  }
}

async function garbageOnce(d, kind, rng, n) {
  if (kind.layer === 'http') {
    const c = await HttpConn.connect(d.port);
    try {
      await c.write(kind.make());
      const res = await c.readResponse();
      await c.expectEndRaw();
      return res.status;
    } finally {
      c.destroy();
    }
  }
  const c = await RawClient.connect(d.port, { path: '/ws' });
  try {
    // Half of them join a busy ordinary room first, so that they are
    // closed while the room's traffic flows to them.
    if (rng.chance(0.5)) {
      await c.send({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify({
        type: 'join', room: rng.pick(d.roomNames), nickname: `g${n}`,
      })) });
    }
    if (kind.layer === 'frame') {
      for (const f of kind.make()) await c.write(f);
      const code = await closeCodeOf(c, 10000);
      await c.expectEnd({ ms: 10000 });
      return code;
    }
    await c.write(kind.make());
    for (;;) {
      const m = await c.nextMessage({ ms: 10000 });
      const j = JSON.parse(m.data.toString('utf8'));
      if (j.type === 'error') {
        if (j.code !== kind.code) return `error ${j.code}`;
        break;
      }
    }
    await c.send({ opcode: OP.CLOSE, payload: closePayload(1000) });
    const code = await closeCodeOf(c, 10000);
    await c.expectEnd({ ms: 10000 });
    return code === 1000 ? kind.code : `closed ${code} after the error`;
  } finally {
    c.destroy();
  }
}

async function garbageLoop(d, rng) {
  // Every kind at least once, however short the run.
  while (!d.faultsOver() || d.counts.garbageCycles < GARBAGE_KINDS.length) {
    const n = d.counts.garbageCycles++;
    const kind = GARBAGE_KINDS[n % GARBAGE_KINDS.length]; // every kind in turn
    let got;
    const t = Date.now();
    try {
      got = await garbageOnce(d, kind, rng, n);
      d.timing('garbage', Date.now() - t);
    } catch (e) {
      got = `failed: ${e.message}`;
    }
    d.close(`garbage (${kind.layer}): ${kind.name}`, got, kind.code);
    await delay(rng.range(0, 100));
  }
}

// ---- slow consumers ------------------------------------------------------

// Waves of --slow clients join the busy room and stop reading (ws.pause():
// the socket is no longer read). The server must close each once its queue
// passes max_queued_bytes — as a slow consumer, counted in /stats. When the
// count has risen by the wave's size, the wave reads again and must find the
// connection ended: without a close frame (1006: the server closes TCP at
// once, its close frame would wait behind the stuck queue) or with 1008.
// The server runs with a write timeout longer than the wait (SERVER_ARGS):
// on a loaded machine the busy room may fill a queue more slowly than the
// default 10 s timeout, which closes a stuck reader too, but does not count
// it as a slow consumer.
export const SLOW_WAIT_S = 60;
async function slowLoop(d) {
  do {
    const before = (await getJson(d.port, '/stats')).slow_consumers;
    const wave = [];
    for (let i = 0; i < d.opts.slow; i++) {
      const tag = `s${++d.counts.slowOpened}`;
      const s = { tag, code: null };
      // The socket, kept to say what it saw if the end does not come.
      const ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, {
        perMessageDeflate: false,
        createConnection: (o) => (s.socket = net.connect({ ...o, path: o.socketPath })),
      });
      s.ws = ws;
      ws.on('error', () => {});
      s.closed = new Promise((resolve) => ws.on('close', (code) => {
        s.code = code;
        resolve(code);
      }));
      wave.push(s);
      try {
        await withTimeout(new Promise((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('error', reject);
        }), 10000, `${tag}: WebSocket open`);
        ws.send(JSON.stringify({ type: 'join', room: d.busyRoom, nickname: tag }));
        ws.pause();
      } catch (e) {
        d.failures.add('slow consumer could not connect', `${tag}: ${e.message}`);
      }
    }
    const want = before + wave.length;
    let now = before;
    const counted = await pollUntil(async () => {
      now = (await getJson(d.port, '/stats')).slow_consumers;
      return now >= want;
    }, SLOW_WAIT_S * 1000);
    if (!counted) {
      d.failures.add('slow consumer not closed',
        `a wave of ${wave.length} paused in the busy room for ${SLOW_WAIT_S} s: /stats ` +
        `slow_consumers went from ${before} to ${now}`);
    }
    for (const s of wave) {
      s.readAtResume = s.socket?.bytesRead;
      s.ws.resume();
    }
    await Promise.all(wave.map(async (s) => {
      try {
        const code = await withTimeout(s.closed, 20000, `${s.tag}: the end of its connection`);
        d.close('slow consumer (stopped reading)', code, [1006, 1008]);
      } catch (e) {
        d.close('slow consumer (stopped reading)', 'still open', [1006, 1008]);
        d.failures.add('slow consumer still open 20 s after it read again',
          `${s.tag}: ws readyState ${s.ws.readyState}, socket read ${s.readAtResume} bytes ` +
          `before resuming and ${s.socket?.bytesRead} now, flowing ${s.socket?.readableFlowing}`);
        s.ws.terminate();
      }
    }));
    d.counts.slowClosed += wave.filter((s) => s.code !== null).length;
  } while (!d.faultsOver());
}

// ---- the run -------------------------------------------------------------

// The server's arguments for a soak, besides --data-dir: see slowLoop.
export function serverArgs(maxContent) {
  return ['--log-level', 'warn', '--max-content', String(maxContent),
    '--write-timeout', `${SLOW_WAIT_S + 30}s`];
}

// Runs the soak against a server already listening on 127.0.0.1:port whose
// process is pid (its memory is read from /proc), started with serverArgs().
// Options: DEFAULTS. log:
// progress lines (default: none). Resolves the result; result.pass says
// whether every check held, result.failures what did not.
export async function runSoak({ port, pid, log = () => {}, ...options }) {
  const opts = { ...DEFAULTS, ...options };
  const faultSeconds = opts.duration - opts.warmup - opts.recover;
  if (faultSeconds < 1) {
    throw new Error(`duration ${opts.duration} s leaves no time for faults after ` +
      `warm-up ${opts.warmup} s and recovery ${opts.recover} s`);
  }
  const d = {
    port,
    opts,
    failures: new Failures(),
    counts: {
      delivered: 0, chatDelivered: 0, inOrder: 0, sent: 0, busySent: 0, churnCycles: 0, churnSent: 0,
      garbageCycles: 0, slowOpened: 0, slowClosed: 0,
    },
    closes: {}, // category -> {code: count}
    cycles: {}, // kind -> {n, sumMs, maxMs}: how long one cycle took
    timing(kind, ms) {
      const c = (this.cycles[kind] ??= { n: 0, sumMs: 0, maxMs: 0 });
      c.n++;
      c.sumMs += ms;
      c.maxMs = Math.max(c.maxMs, ms);
    },
    byTag: new Map(),
    ids: new Map(),
    roomNames: Array.from({ length: opts.rooms }, (_, i) => `soak-${i}`),
    busyRoom: 'soak-busy',
    faultsEnd: Infinity,
    faultsOver() {
      return Date.now() >= this.faultsEnd;
    },
    // Records how a misbehaving client's connection ended; `expected` is
    // the code (or list of codes) the docs give for it.
    close(category, got, expected) {
      const c = (this.closes[category] ??= { expected, got: {} });
      c.got[got] = (c.got[got] ?? 0) + 1;
      const ok = Array.isArray(expected) ? expected.includes(got) : got === expected;
      if (!ok) this.failures.add('misbehaving client not closed as documented',
        `${category}: got ${got}, expected ${[].concat(expected).join(' or ')}`);
    },
  };
  const t0 = Date.now();
  const timings = {};
  // How late this process's own event loop ran: a loaded client delays
  // everything it measures.
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  const mem = { baselineKiB: null, peakKiB: 0, afterKiB: null, startKiB: null };
  const memTimer = setInterval(() => {
    try {
      const m = serverMemKiB(pid);
      mem.peakKiB = Math.max(mem.peakKiB, m.anon);
      mem.peakRssKiB = Math.max(mem.peakRssKiB ?? 0, m.rss);
    } catch {
      // The process is gone: the checks below say so.
    }
  }, 200);
  const stats0 = await getJson(port, '/stats');
  mem.startKiB = serverMemKiB(pid).anon;

  // 1. Well-behaved clients connect and join.
  const members = [];
  for (let i = 0; i < opts.clients; i++) members.push(new Member(d, `w${i}`, d.roomNames[i % opts.rooms]));
  const busy = [];
  for (let i = 0; i < opts.busyMembers; i++) busy.push(new Member(d, `b${i}`, d.busyRoom));
  const all = [...members, ...busy];
  for (const m of all) d.byTag.set(m.tag, m);
  for (const r of [...d.roomNames, d.busyRoom]) d.ids.set(r, new Map());
  let chatTimer = null;
  let result;
  try {
    log(`soak: connecting ${members.length} clients to ${opts.rooms} rooms and ` +
      `${busy.length} to the busy room`);
    await pool(all, opts.connectConcurrency, async (m) => {
      try {
        await m.connect();
      } catch (e) {
        d.failures.add('well-behaved client could not join', `${m.tag}: ${e.message}`);
      }
    });
    timings.setupS = (Date.now() - t0) / 1000;
    if (d.failures.total) throw new Error('setup failed');

    // 2. They chat for the rest of the run: one ticker spreads the sends.
    const pad = padding(Math.max(0, opts.size - 16));
    const busyPad = padding(Math.max(0, opts.busySize - 16));
    const publishers = busy.slice(0, opts.busyPublishers);
    let acc = 0, busyAcc = 0, rr = 0, busyRr = 0, last = Date.now();
    chatTimer = setInterval(() => {
      const now = Date.now();
      const dt = Math.min(1000, now - last) / 1000; // after a stall, no burst
      last = now;
      acc += opts.rate * members.length * dt;
      for (; acc >= 1; acc--) {
        if (members[rr++ % members.length].send(pad)) d.counts.sent++;
      }
      if (publishers.length) {
        busyAcc += opts.busyRate * dt;
        for (; busyAcc >= 1; busyAcc--) {
          if (publishers[busyRr++ % publishers.length].send(busyPad)) d.counts.busySent++;
        }
      }
    }, 50);

    // 3. Warm-up, then the baseline: the median of 2 s of samples.
    log(`soak: chatting; warm-up ${opts.warmup} s`);
    await delay(Math.max(0, opts.warmup - 2) * 1000);
    const base = [];
    for (let i = 0; i < 9; i++) {
      base.push(serverMemKiB(pid).anon);
      await delay(250);
    }
    base.sort((a, b) => a - b);
    mem.baselineKiB = base[4];
    mem.peakKiB = mem.baselineKiB; // the peak of the fault phase from here on
    lag.reset(); // and the driver's own delays
    const statsBase = await getJson(port, '/stats');
    log(`soak: baseline RssAnon ${mem.baselineKiB} KiB with ${statsBase.connections} connections`);

    // 4. Faults, all at once, until faultsEnd; each loop finishes its cycle.
    timings.faultsStart = Date.now();
    d.faultsEnd = Date.now() + faultSeconds * 1000;
    log(`soak: faults for ${faultSeconds} s: ${opts.churners} churners, ${opts.garbage} garbage ` +
      `senders, waves of ${opts.slow} slow consumers`);
    const loops = [];
    for (let i = 0; i < opts.churners; i++) loops.push(churnLoop(d, makeRng(opts.seed * 1000 + i)));
    for (let i = 0; i < opts.garbage; i++) loops.push(garbageLoop(d, makeRng(opts.seed * 2000 + i)));
    if (opts.slow > 0 && opts.busyPublishers > 0) loops.push(slowLoop(d));
    await Promise.all(loops.map((p) => p.catch((e) => d.failures.add('fault loop failed', e.message))));
    timings.faultsS = (Date.now() - timings.faultsStart) / 1000;

    // 5. Recovery: every misbehaving connection gone (an event seen through
    // /stats), then memory back within the tolerance (polled; the heap is
    // trimmed every 10 s).
    const recStart = Date.now();
    const wbCount = all.length;
    let conns = -1;
    const gone = await pollUntil(async () => {
      conns = (await getJson(port, '/stats')).connections;
      return conns === wbCount;
    }, opts.recover * 1000);
    if (!gone) {
      d.failures.add('connections did not return to the well-behaved count',
        `${conns} open ${opts.recover} s after the faults, expected ${wbCount}`);
    }
    const tolKiB = Math.round(mem.baselineKiB * opts.memTolerancePct / 100 + opts.memSlackMiB * 1024);
    mem.toleranceKiB = tolKiB;
    let minAfter = Infinity;
    const back = await pollUntil(async () => {
      const a = serverMemKiB(pid).anon;
      minAfter = Math.min(minAfter, a);
      return a <= mem.baselineKiB + tolKiB;
    }, Math.max(1000, opts.recover * 1000 - (Date.now() - recStart)));
    mem.afterKiB = minAfter;
    if (!back) {
      d.failures.add('memory did not return to its baseline',
        `RssAnon at best ${minAfter} KiB within ${opts.recover} s of the faults; baseline ` +
        `${mem.baselineKiB} KiB + tolerance ${tolKiB} KiB`);
    }
    timings.recoveryS = (Date.now() - recStart) / 1000;
    log(`soak: recovered in ${timings.recoveryS} s: ${conns} connections, RssAnon ${minAfter} KiB`);
    // For the report: the lowest memory over the next heap trim.
    if (opts.settle > 0) {
      let settled = minAfter;
      const until = Date.now() + opts.settle * 1000;
      while (Date.now() < until) {
        await delay(250);
        settled = Math.min(settled, serverMemKiB(pid).anon);
      }
      mem.settledKiB = settled;
    }

    // 6. Drain: sends stop; every sender gets its own last message back (so
    // the server has fanned out everything), then a ping -> pong on every
    // client (so everything queued for it has arrived). Then count.
    clearInterval(chatTimer);
    chatTimer = null;
    const drainStart = Date.now();
    await pool(all, 500, async (m) => {
      if (m.closeInfo) return;
      try {
        if (m.seq) {
          await m.when((x) => x.type === 'message' && m.lastSeq.get(m.tag) === m.seq, 30000,
            `${m.tag}: its own message #${m.seq}`, () => m.lastSeq.get(m.tag) === m.seq);
        }
        m.ws.send('{"type":"ping"}');
        await m.when((x) => x.type === 'pong', 30000, `${m.tag}: the pong to its last ping`);
      } catch (e) {
        d.failures.add('well-behaved client not served to the end', e.message);
      }
    });
    timings.drainS = (Date.now() - drainStart) / 1000;
    let expected = 0, missing = 0;
    const byRoom = new Map();
    for (const m of all) {
      if (!byRoom.has(m.room)) byRoom.set(m.room, []);
      byRoom.get(m.room).push(m);
    }
    for (const [room, ms] of byRoom) {
      for (const r of ms) {
        for (const s of ms) {
          expected += s.seq;
          const got = r.lastSeq.get(s.tag) ?? 0;
          if (got < s.seq) {
            missing += s.seq - got;
            d.failures.add('message lost', `${r.tag} in ${room} has ${got} of ${s.seq} from ${s.tag}`);
          }
        }
      }
    }
    d.counts.expected = expected;
    // Deliveries that came exactly in turn (the next number from their
    // sender): equal to `expected` only when nothing was lost, doubled or
    // reordered.
    d.counts.verified = d.counts.inOrder;
    d.counts.missing = missing;

    const statsEnd = await getJson(port, '/stats');
    const slowDelta = statsEnd.slow_consumers - stats0.slow_consumers;
    if (slowDelta !== d.counts.slowOpened) {
      d.failures.add('slow-consumer count does not match',
        `/stats slow_consumers rose by ${slowDelta}; ${d.counts.slowOpened} clients stopped reading`);
    }
    result = { statsEnd, slowDelta };
  } catch (e) {
    if (e.message !== 'setup failed') d.failures.add('soak driver failed', e.stack ?? e.message);
    result = {};
  } finally {
    if (chatTimer) clearInterval(chatTimer);
    clearInterval(memTimer);
    lag.disable();
    // 7. Well-behaved clients leave properly.
    await pool(all, 500, async (m) => {
      m.closing = true;
      if (!m.ws || m.closeInfo) return;
      m.ws.close(1000);
      try {
        const code = await withTimeout(m.closed, 15000, `${m.tag}: close`);
        if (code !== 1000) d.failures.add('well-behaved close not answered with 1000', `${m.tag}: ${code}`);
      } catch (e) {
        d.failures.add('well-behaved close not answered', e.message);
        m.ws.terminate();
      }
    });
  }
  return {
    pass: d.failures.total === 0,
    failures: d.failures.list(),
    opts,
    counts: d.counts,
    closes: d.closes,
    mem,
    timings: { ...timings, totalS: (Date.now() - t0) / 1000 },
    wellBehaved: all.length,
    server: result,
    cycles: d.cycles,
    lagMs: { p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 },
  };
}

// The summary runSoak's result prints as.
export function formatSummary(r) {
  const n = (x) => (x ?? 0).toLocaleString('en-US');
  const mib = (k) => (k == null ? '-' : `${(k / 1024).toFixed(1)} MiB`);
  const o = r.opts;
  const t = r.timings;
  const lines = [];
  lines.push(`soak: ${r.pass ? 'PASS' : 'FAIL'} in ${t.totalS?.toFixed(1)} s ` +
    `(setup ${t.setupS ?? '-'} s, warm-up ${o.warmup} s, faults ${t.faultsS ?? '-'} s, ` +
    `recovery ${t.recoveryS ?? '-'} s, drain ${t.drainS ?? '-'} s)`);
  lines.push(`  well-behaved: ${n(o.clients)} clients in ${o.rooms} rooms at ${o.rate} msg/s each ` +
    `(${o.size}-byte content), ${n(o.busyMembers)} in the busy room (${o.busyPublishers} ` +
    `publishing ${o.busyRate} msg/s of ${n(o.busySize)} bytes)`);
  const c = r.counts;
  lines.push(`  messages sent by well-behaved clients: ${n(c.sent)} ordinary + ${n(c.busySent)} large`);
  lines.push(`  deliveries among well-behaved clients: ${n(c.verified)} in order of ${n(c.expected)} ` +
    `expected (missing at the end ${n(c.missing)}); frames received by them in all: ` +
    `${n(c.delivered)}, of them chat messages ${n(c.chatDelivered)}`);
  lines.push(`  churners: ${n(c.churnCycles)} cycles, ${n(c.churnSent)} messages; garbage senders: ` +
    `${n(c.garbageCycles)} connections; slow consumers: ${n(c.slowOpened)} ` +
    `(server counted ${r.server?.slowDelta ?? '-'})`);
  const cyc = Object.entries(r.cycles ?? {}).map(([k, v]) =>
    `${k} ${(v.sumMs / v.n).toFixed(0)} ms mean, ${v.maxMs} ms max`).join('; ');
  lines.push(`  cycle times: ${cyc || '-'}; driver event-loop delay after the baseline: p99 ` +
    `${r.lagMs?.p99.toFixed(0)} ms, max ${r.lagMs?.max.toFixed(0)} ms`);
  lines.push('  closes of misbehaving clients (category: what happened x count; expected):');
  for (const [cat, { expected, got }] of Object.entries(r.closes).sort()) {
    const g = Object.entries(got).map(([k, v]) => `${k} x${v}`).join(', ');
    lines.push(`    ${cat}: ${g}; expected ${[].concat(expected).join(' or ')}`);
  }
  const m = r.mem;
  lines.push(`  server RssAnon: start ${mib(m.startKiB)}, baseline ${mib(m.baselineKiB)}, peak ` +
    `${mib(m.peakKiB)}, after ${mib(m.afterKiB)} (allowed: baseline + ${mib(m.toleranceKiB)})` +
    `${m.settledKiB ? `, lowest in the ${o.settle} s after that ${mib(m.settledKiB)}` : ''}; ` +
    `peak VmRSS ${mib(m.peakRssKiB)}`);
  if (r.server?.statsEnd) {
    const s = r.server.statsEnd;
    lines.push(`  server /stats: ${n(s.total_connections)} connections opened, ${n(s.messages_received)} ` +
      `messages received, ${n(s.messages_sent)} sent, ${n(s.slow_consumers)} slow consumers`);
  }
  for (const f of r.failures) {
    lines.push(`  FAILED: ${f.kind} (x${f.count})`);
    for (const s of f.samples) lines.push(`    ${s}`);
  }
  return lines.join('\n');
}

// ---- command line --------------------------------------------------------

const FLAGS = {
  duration: ['duration', 'seconds in all: warm-up + faults + recovery'],
  warmup: ['warmup', 'seconds of chat before the memory baseline (keep it over 10)'],
  recover: ['recover', 'seconds at most for connections and memory to come back'],
  settle: ['settle', 'seconds more of memory samples after that (reported, not checked)'],
  clients: ['clients', 'well-behaved clients in the ordinary rooms'],
  rooms: ['rooms', 'ordinary rooms'],
  rate: ['rate', 'messages per second from each well-behaved client'],
  size: ['size', 'bytes of an ordinary message'],
  busyMembers: ['busy-members', 'well-behaved members of the busy room'],
  busyPublishers: ['busy-publishers', 'of them, publishers of large messages'],
  busyRate: ['busy-rate', 'large messages per second into the busy room'],
  busySize: ['busy-size', 'bytes of a large message'],
  churners: ['churners', 'concurrent churning loops'],
  garbage: ['garbage', 'concurrent garbage-sending loops'],
  slow: ['slow', 'slow consumers per wave'],
  memTolerancePct: ['mem-tolerance', 'percent of the baseline memory may exceed it by after'],
  memSlackMiB: ['mem-slack', 'plus this many MiB'],
  connectConcurrency: ['connect-concurrency', 'connections opened at a time during setup'],
  seed: ['seed', 'random seed'],
  maxContent: ['max-content', "the server's --max-content (default: max(4096, busy-size))"],
};

function usage() {
  const rows = Object.entries(FLAGS).map(([k, [flag, what]]) =>
    `  --${flag.padEnd(20)} ${what} (default ${DEFAULTS[k] || (k === 'maxContent' ? 'auto' : 0)})`);
  return ['usage: node bench/soak.mjs [options]',
    '',
    'Starts the server (--bin, default build/switchboard) with history in a',
    'temporary directory, runs the soak against it, stops it (it must exit 0)',
    'and prints a summary. Exit status 0: every check held; 1: one did not.',
    '',
    '  --bin PATH             server binary (default build/switchboard)',
    ...rows,
    '  --help                 this text'].join('\n');
}

async function main() {
  const options = { bin: { type: 'string' }, help: { type: 'boolean' } };
  for (const [flag] of Object.values(FLAGS)) options[flag] = { type: 'string' };
  let parsed;
  try {
    parsed = parseArgs({ options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    console.error(`soak: ${e.message}\n${usage()}`);
    return 2;
  }
  if (parsed.help) {
    console.log(usage());
    return 0;
  }
  const opts = {};
  for (const [key, [flag]] of Object.entries(FLAGS)) {
    if (parsed[flag] === undefined) continue;
    const v = Number(parsed[flag]);
    if (!Number.isFinite(v) || v < 0) {
      console.error(`soak: --${flag} must be a number of 0 or more, not ${JSON.stringify(parsed[flag])}`);
      return 2;
    }
    opts[key] = v;
  }
  const o = { ...DEFAULTS, ...opts };
  if (o.duration - o.warmup - o.recover < 1) {
    console.error(`soak: --duration (${o.duration}) must exceed --warmup (${o.warmup}) + ` +
      `--recover (${o.recover}) by at least a second`);
    return 2;
  }
  if (o.clients < 1 || o.rooms < 1 || o.clients < o.rooms) {
    console.error('soak: --clients must be at least 1 and at least --rooms');
    return 2;
  }
  if (o.busyPublishers > o.busyMembers) {
    console.error('soak: --busy-publishers cannot exceed --busy-members');
    return 2;
  }
  const maxContent = o.maxContent || Math.max(4096, o.busySize, o.size);
  if (maxContent < Math.max(o.size, o.busySize)) {
    console.error(`soak: --max-content ${maxContent} is below the message sizes`);
    return 2;
  }
  // Each room keeps its newest 100 messages in memory: a baseline taken
  // before they are full sees memory grow for a reason that is no fault.
  const perRoom = Math.min(o.rate * Math.floor(o.clients / o.rooms), o.busyRate || Infinity);
  if (o.warmup * perRoom < 100) {
    console.log(`soak: note: a ${o.warmup} s warm-up gives a room about ${Math.floor(o.warmup * perRoom)} ` +
      'messages, fewer than the 100 of its history cache: memory may grow after the baseline');
  }
  const bin = parsed.bin ?? fileURLToPath(new URL('../build/switchboard', import.meta.url));
  process.env.SB_BIN = bin;
  // server.mjs reads SB_BIN when it loads.
  const { start } = await import('../tests/integration/lib/server.mjs');
  const dataDir = mkdtempSync(join(tmpdir(), 'sb-soak-'));
  // Every step below is bounded; this is the last resort.
  const guardS = o.duration + 300;
  const guard = setTimeout(() => {
    console.error(`soak: FAIL: still running after ${guardS} s`);
    process.exit(1);
  }, guardS * 1000);
  guard.unref();
  let server;
  try {
    server = await start(['--data-dir', dataDir, ...serverArgs(maxContent)]);
    console.log(`soak: ${bin} (pid ${server.pid}) on port ${server.port}, history in ${dataDir}`);
    const r = await runSoak({ port: server.port, pid: server.pid, ...opts,
      log: (s) => console.log(s) });
    try {
      await server.stop();
    } catch (e) {
      r.pass = false;
      r.failures.push({ kind: 'server did not exit cleanly on SIGTERM', count: 1,
        samples: [e.message.slice(0, 2000)] });
    }
    console.log(formatSummary(r));
    return r.pass ? 0 : 1;
  } catch (e) {
    console.error(`soak: FAIL: ${e.stack ?? e.message}`);
    if (server) console.error(`server stderr:\n${server.stderr().slice(-4000)}`);
    await server?.stop().catch(() => {});
    return 1;
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = await main();
}
