// cluster.mjs — cross-node delivery rate and latency (issue 7): one room,
// subscribers spread round-robin over N switchboard nodes sharing one
// redis-server, one publisher per node. For each setup (one node on the
// local engine, then 1, 2 and 3 nodes on the redis engine) it runs a
// windowed flood (each publisher keeps WINDOW messages in flight, its own
// copy is the acknowledgement) and prints deliveries per second and the
// send-to-receive latency seen by the subscribers (p50, p99, max).
//
//   node bench/cluster.mjs            (bench/cluster.sh builds and runs it)
//
// Environment: SB_BIN (default build/switchboard), BENCH_SECONDS (measured
// seconds per setup, default 5), BENCH_SUBS (subscribers, default 60),
// BENCH_WINDOW (messages in flight per publisher, default 20), BENCH_NODES
// (setups, default "local,1,2,3"). Everything listens on 127.0.0.1 and every
// step is bounded in time.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(ROOT, 'tests/integration/package.json'));
const WebSocket = require('ws');
const { freePort, withTimeout } = await import(join(ROOT, 'tests/integration/lib/util.mjs'));

const BIN = process.env.SB_BIN ?? join(ROOT, 'build/switchboard');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const SUBS = Number(process.env.BENCH_SUBS ?? 60);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 20);
const SETUPS = (process.env.BENCH_NODES ?? 'local,1,2,3').split(',');
const STEP_MS = 15000; // the guard on every start, connect and drain

// Spawns cmd and resolves once a line of its output matches re.
function run(cmd, args, re) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise((resolve, reject) => {
    const on = (d) => {
      out += d;
      const m = re.exec(out);
      if (m) resolve(m);
    };
    proc.stdout.on('data', on);
    proc.stderr.on('data', on);
    proc.on('exit', (code) => reject(new Error(`${cmd} exited (${code}):\n${out}`)));
  });
  return { proc, ready: withTimeout(ready, STEP_MS, `${cmd} ready`) };
}

async function startNode(redisPort) {
  const args = ['--host', '127.0.0.1', '--port', '0', '--data-dir', '', '--log-level', 'warn'];
  if (redisPort) args.push('--engine', 'redis', '--redis-url', `redis://127.0.0.1:${redisPort}`);
  const r = run(BIN, args, /listening on http:\/\/127\.0\.0\.1:(\d+)\//);
  const port = Number((await r.ready)[1]);
  return { proc: r.proc, port };
}

function connect(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
  const c = { ws, handlers: new Map() };
  ws.on('message', (d) => {
    const m = JSON.parse(d);
    c.handlers.get(m.type)?.(m);
  });
  return withTimeout(new Promise((resolve, reject) => {
    ws.once('error', reject);
    c.handlers.set('welcome', (m) => {
      c.id = m.user_id;
      resolve(c);
    });
  }), STEP_MS, 'connect');
}

function joinRoom(c, room) {
  return withTimeout(new Promise((resolve) => {
    c.handlers.set('history', () => resolve());
    c.ws.send(JSON.stringify({ type: 'join', room }));
  }), STEP_MS, 'join');
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : 0;
}

async function setup(kind) {
  const redisPort = kind === 'local' ? 0 : await freePort();
  const nodes = [];
  let redis;
  try {
    if (redisPort) {
      redis = run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no'], /Ready to accept connections/);
      await redis.ready;
    }
    const n = kind === 'local' ? 1 : Number(kind);
    for (let i = 0; i < n; i++) nodes.push(await startNode(redisPort));
    const room = 'bench';
    const subs = [];
    for (let i = 0; i < SUBS; i++) subs.push(await connect(nodes[i % n].port));
    for (const s of subs) await joinRoom(s, room);
    const pubs = [];
    for (const node of nodes) {
      const p = await connect(node.port);
      await joinRoom(p, room);
      pubs.push(p);
    }
    // Latency is measured on the subscribers' side against the send time
    // carried in the message (one process: one clock).
    const lat = [];
    let delivered = 0;
    let measuring = false;
    for (const s of subs) {
      s.handlers.set('message', (m) => {
        if (!measuring) return;
        delivered++;
        lat.push(Number(process.hrtime.bigint() - BigInt(m.data.t)) / 1e6);
      });
    }
    let stop = false;
    let sent = 0;
    const done = pubs.map((p) => new Promise((resolve) => {
      let inflight = 0;
      const pump = () => {
        while (!stop && inflight < WINDOW) {
          inflight++;
          sent++;
          p.ws.send(JSON.stringify({ type: 'message', room, data: { t: String(process.hrtime.bigint()) } }));
        }
        if (stop && inflight === 0) resolve();
      };
      p.handlers.set('message', (m) => {
        if (m.from === p.id) inflight--;
        pump();
      });
      pump();
    }));
    measuring = true;
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    stop = true;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const counted = delivered;
    measuring = false;
    await withTimeout(Promise.all(done), STEP_MS, 'publishers drain');
    lat.sort((a, b) => a - b);
    const row = {
      setup: kind === 'local' ? '1 node, local engine' : `${n} node${n > 1 ? 's' : ''}, redis`,
      published_per_s: Math.round(sent / secs),
      delivered_per_s: Math.round(counted / secs),
      p50_ms: pct(lat, 0.5).toFixed(2),
      p99_ms: pct(lat, 0.99).toFixed(2),
      max_ms: (lat.at(-1) ?? 0).toFixed(2),
    };
    for (const c of [...subs, ...pubs]) c.ws.terminate();
    return row;
  } finally {
    for (const node of nodes) node.proc.kill('SIGTERM');
    redis?.proc.kill('SIGTERM');
  }
}

const rows = [];
for (const kind of SETUPS) rows.push(await setup(kind));
console.log(`${SUBS} subscribers in one room over the nodes, one publisher per node, ` +
  `${WINDOW} messages in flight each, ${SECONDS} s per setup`);
console.log('| setup | published/s | delivered/s | p50 ms | p99 ms | max ms |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.setup} | ${r.published_per_s} | ${r.delivered_per_s} | ${r.p50_ms} | ` +
    `${r.p99_ms} | ${r.max_ms} |`);
}
process.exit(0);
