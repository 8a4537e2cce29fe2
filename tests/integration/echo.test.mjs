// echo.test.mjs — /echo with a real client (`ws`): every message size class,
// fragmentation, ping/pong, close codes, ordering and concurrency.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { start } from './lib/server.mjs';
import {
  onceAny, randomUtf8, withTimeout, wsClose, wsConnect, wsNext, wsRoundTrip,
} from './lib/util.mjs';

const MiB = 1024 * 1024;
// Every length-encoding boundary of RFC 6455 5.2, then bulk.
const SIZES = [0, 1, 125, 126, 127, 65535, 65536, MiB, 16 * MiB];

describe('echo (ws client)', () => {
  let server;
  let ws;
  before(async () => {
    server = await start(['--max-message-size', '16m']);
    ws = await wsConnect(server);
  });
  after(async () => {
    if (ws) await wsClose(ws);
    await server?.stop();
  });

  for (const size of SIZES) {
    test(`binary message of ${size} bytes is echoed byte-exact`, async () => {
      await wsRoundTrip(ws, randomBytes(size), { binary: true, ms: 30000 });
    });
    test(`text message of ${size} bytes (multi-byte UTF-8) is echoed byte-exact`, async () => {
      const text = randomUtf8(size);
      assert.equal(text.length, size);
      await wsRoundTrip(ws, text, { binary: false, ms: 30000 });
    });
  }

  test('a fragmented binary message is reassembled into one', async () => {
    const parts = [randomBytes(10), randomBytes(0), randomBytes(70000), randomBytes(3)];
    for (const [i, p] of parts.entries()) ws.send(p, { binary: true, fin: i === parts.length - 1 });
    const m = await wsNext(ws);
    assert.equal(m.isBinary, true);
    assert.ok(m.data.equals(Buffer.concat(parts)));
  });

  test('a fragmented text message with characters split across fragments is reassembled',
    async () => {
      const whole = Buffer.from('héllo → wörld 🎉 ünïcödé 中文 ' + 'x'.repeat(200) + ' 🎉', 'utf8');
      // Cut inside multi-byte characters: at 2 (inside "é"), inside the arrow
      // and inside the emoji.
      const arrow = whole.indexOf('→');
      const emoji = whole.indexOf('🎉');
      const cuts = [0, 2, arrow + 1, emoji + 2, emoji + 3, whole.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        ws.send(whole.subarray(cuts[i], cuts[i + 1]), { binary: false, fin: i + 2 === cuts.length });
      }
      const m = await wsNext(ws);
      assert.equal(m.isBinary, false);
      assert.ok(m.data.equals(whole));
    });

  test('a message in 5000 one-byte fragments is reassembled', async () => {
    const whole = randomBytes(5000);
    for (let i = 0; i < whole.length; i++) {
      ws.send(whole.subarray(i, i + 1), { binary: true, fin: i === whole.length - 1 });
    }
    const m = await wsNext(ws, 20000);
    assert.ok(m.data.equals(whole));
  });

  test('a client offering permessage-deflate gets it (compression.test.mjs has the details)',
    async () => {
    const c = await wsConnect(server, '/echo', { perMessageDeflate: true });
    assert.match(c.extensions, /^permessage-deflate/, 'permessage-deflate was negotiated');
    await wsRoundTrip(c, Buffer.from('x'.repeat(1000)), { binary: false });
    await wsClose(c);
  });

  test('a ping with a payload is answered by a pong with the same payload', async () => {
    for (const payload of [Buffer.alloc(0), Buffer.from('ping?'), randomBytes(125)]) {
      const pong = onceAny(ws, ['pong'], 5000, 'pong');
      ws.ping(payload);
      const { args: [data] } = await pong;
      assert.ok(data.equals(payload), `pong payload (${data.length} bytes) matches the ping's`);
    }
  });

  // A message bigger than the server's 4 MiB output budget is let into an
  // empty queue; what follows it at once (a pong, a close, the next echo)
  // must not make the server take a reading client for a slow consumer.
  for (const then of ['a ping', 'a small message', 'a close']) {
    test(`a 16 MiB message followed at once by ${then} is fully answered`, async () => {
      const c = await wsConnect(server);
      const big = randomBytes(16 * MiB);
      c.send(big);
      const pong = then === 'a ping' ? onceAny(c, ['pong'], 30000, 'the pong') : null;
      if (then === 'a ping') c.ping('right behind');
      if (then === 'a small message') c.send('right behind');
      if (then === 'a close') c.close(1000, 'done');
      const echo = await wsNext(c, 30000, 'the 16 MiB echo');
      assert.ok(echo.data.equals(big), 'the 16 MiB echo is complete');
      if (pong) assert.equal((await pong).args[0].toString(), 'right behind');
      if (then === 'a small message') assert.equal((await wsNext(c)).data.toString(), 'right behind');
      if (then === 'a close') {
        assert.equal((await withTimeout(c.closed, 10000, 'the close')).code, 1000);
      } else {
        await wsClose(c);
      }
    });
  }

  test('many messages in flight come back complete and in order', async () => {
    const N = 2000;
    const sent = [];
    for (let i = 0; i < N; i++) {
      const body = Buffer.concat([Buffer.from(`${i}:`), randomBytes(i % 700)]);
      sent.push(body);
      ws.send(body, { binary: true });
    }
    for (let i = 0; i < N; i++) {
      const m = await wsNext(ws, 20000, `echo #${i}`);
      assert.ok(m.data.equals(sent[i]), `message #${i} is echoed in order`);
    }
  });
});

describe('echo close codes', () => {
  let server;
  before(async () => {
    server = await start(['--max-message-size', '16m']);
  });
  after(() => server?.stop());

  // Every code a client may put in a close frame (RFC 6455 7.4.1, IANA).
  const CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
    3000, 3999, 4000, 4999];
  for (const code of CODES) {
    test(`a client close with ${code} is answered with ${code}`, async () => {
      const ws = await wsConnect(server);
      ws.close(code, 'bye');
      const closed = await withTimeout(ws.closed, 10000, 'the close handshake');
      assert.equal(closed.code, code);
    });
  }

  test('several concurrent clients each get only their own echoes, in order', async () => {
    const CLIENTS = 12;
    const PER = 200;
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => wsConnect(server)));
    await Promise.all(clients.map(async (ws, c) => {
      const sent = [];
      for (let i = 0; i < PER; i++) {
        const msg = Buffer.from(`client ${c} message ${i} ${'é'.repeat(i % 50)}`);
        sent.push(msg);
        ws.send(msg, { binary: i % 2 === 0 });
      }
      for (let i = 0; i < PER; i++) {
        const m = await wsNext(ws, 20000, `client ${c} echo #${i}`);
        assert.equal(m.isBinary, i % 2 === 0);
        assert.ok(m.data.equals(sent[i]), `client ${c} gets its message #${i} back in order`);
      }
    }));
    await Promise.all(clients.map((ws) => wsClose(ws)));
  });

  test('SIGTERM closes open WebSockets with 1001 and the server exits 0', async () => {
    const s = await start([]);
    const ws = await wsConnect(s);
    await wsRoundTrip(ws, Buffer.from('before'), { binary: false });
    const stopped = s.stop();
    const closed = await withTimeout(ws.closed, 10000, 'close on shutdown');
    assert.equal(closed.code, 1001);
    assert.equal(closed.reason, 'server shutting down');
    await stopped;
  });
});
