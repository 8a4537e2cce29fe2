// Checks that a server speaks the bench subset of the protocol, so that a
// benchmark compares servers doing the same work. bench/run.sh runs it once
// against every server before measuring it.
//
//   node bench/peers/check.mjs PORT
//
// Exits 0 when every check passes; otherwise prints what failed and exits 1.
// Bounded: 10 s at most.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const WebSocket = require('./node-ws/node_modules/ws');

const port = Number(process.argv[2]);
const base = `ws://127.0.0.1:${port}`;
setTimeout(() => fail('timed out after 10 s'), 10000).unref();

function fail(what) {
  console.error(`check: ${what}`);
  process.exit(1);
}

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, { perMessageDeflate: false });
    const queue = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      const w = waiters.shift();
      if (w) w(m);
      else queue.push(m);
    });
    ws.next = () => new Promise((r) => (queue.length ? r(queue.shift()) : waiters.push(r)));
    // The next JSON message of a type, skipping others (Switchboard's welcome, presence...).
    ws.nextOf = async (type) => {
      for (;;) {
        const m = await ws.next();
        const j = JSON.parse(m.data.toString());
        if (j.type === type) return j;
      }
    };
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

const closed = (ws) => new Promise((r) => { ws.on('close', r); ws.close(); });

try {
  // /echo: text and binary come back as they went.
  const e = await open('/echo');
  e.send('hello ☃');
  let m = await e.next();
  if (m.isBinary || m.data.toString() !== 'hello ☃') fail('/echo did not echo a text message');
  e.send(Buffer.from([0, 1, 2, 255]));
  m = await e.next();
  if (!m.isBinary || !m.data.equals(Buffer.from([0, 1, 2, 255]))) fail('/echo did not echo a binary message');
  await closed(e);

  // /ws: join answers history; a message reaches every member, the sender
  // included, with its content unchanged; a closed member is gone.
  const a = await open('/ws');
  const b = await open('/ws');
  const c = await open('/ws');
  for (const ws of [a, b]) {
    ws.send(JSON.stringify({ type: 'join', room: 'check' }));
    const h = await ws.nextOf('history');
    if (h.room !== 'check' || !Array.isArray(h.messages)) fail('/ws join: no {"type":"history","room":...,"messages":[...]}');
  }
  c.send(JSON.stringify({ type: 'join', room: 'other' }));
  await c.nextOf('history');
  const content = '123 "quoted" \\ back\\slash </script> & ☃ \u0001 xxxx';
  a.send(JSON.stringify({ type: 'message', room: 'check', content }));
  for (const ws of [a, b]) {
    const got = await ws.nextOf('message');
    if (got.room !== 'check' || got.content !== content) fail(`/ws message relayed as ${JSON.stringify(got)}`);
  }
  await closed(b);
  await new Promise((r) => setTimeout(r, 100));
  a.send(JSON.stringify({ type: 'message', room: 'check', content: 'after close' }));
  const got = await a.nextOf('message');
  if (got.content !== 'after close') fail('/ws: no message after a member closed');
  // c is in another room: it must get nothing of room "check".
  c.send(JSON.stringify({ type: 'message', room: 'other', content: 'to other' }));
  const own = await c.nextOf('message');
  if (own.content !== 'to other') fail('/ws: a member of another room got room "check" messages');
  await closed(a);
  await closed(c);
  console.log('check: ok');
  process.exit(0);
} catch (err) {
  fail(err.message);
}
