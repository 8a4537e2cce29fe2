// heartbeat.test.mjs — liveness: the server pings silent connections, drops
// the ones that stay silent, keeps the ones that answer; and a client that
// floods without reading is paused, then dropped after --write-timeout,
// without the server's memory following the flood.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { closePayload, frame, OP, RawClient } from './lib/raw.mjs';
import { rssKiB, start } from './lib/server.mjs';
import {
  assertHealthy, onceAny, withTimeout, wsClose, wsConnect, wsRoundTrip,
} from './lib/util.mjs';

const PING_MS = 300;
const PONG_MS = 1200;
// Deadlines are checked by a sweep at a quarter of the shortest period.
const SLACK_MS = 50;

describe('heartbeat', () => {
  let server;
  before(async () => {
    server = await start(['--ping-interval', `${PING_MS}ms`, '--pong-timeout', `${PONG_MS}ms`]);
  });
  after(() => server?.stop());

  test('a silent connection is pinged after the ping interval, before the pong timeout',
    async () => {
      const t0 = Date.now();
      const c = await RawClient.connect(server.port);
      const f = await c.nextFrame({ ms: PONG_MS, what: 'a ping before the pong timeout' });
      const elapsed = Date.now() - t0;
      assert.equal(f.opcode, OP.PING);
      assert.ok(elapsed >= PING_MS - SLACK_MS, `not pinged early (after ${elapsed} ms)`);
      c.destroy();
    });

  test('a raw client that never answers is disconnected after the pong timeout', async () => {
    const mark = server.logMark();
    const t0 = Date.now();
    const c = await RawClient.connect(server.port);
    await c.expectEnd({ ms: PONG_MS * 4, what: 'the server to drop a silent connection' });
    const elapsed = Date.now() - t0;
    const pings = c.frames.filter((f) => f.opcode === OP.PING).length;
    assert.ok(pings >= 1, 'it was pinged before being dropped');
    assert.ok(c.frames.every((f) => f.opcode === OP.PING), 'nothing but pings was sent');
    assert.ok(elapsed >= PONG_MS - SLACK_MS, `not dropped early (after ${elapsed} ms)`);
    await server.waitForLog(/no pong or data for \d+ ms: closing/, { from: mark });
    c.destroy();
    await assertHealthy(server);
  });

  test('a raw client that answers each ping with a pong stays open', async () => {
    const t0 = Date.now();
    const c = await RawClient.connect(server.port);
    for (let i = 0; i < 5; i++) {
      const ping = await c.nextFrame({ ms: PONG_MS, what: `ping #${i + 1}` });
      assert.equal(ping.opcode, OP.PING);
      await c.send({ opcode: OP.PONG, payload: ping.payload });
    }
    assert.ok(Date.now() - t0 > PONG_MS, 'the connection outlived a pong timeout');
    assert.equal(c.ended, false);
    await c.roundTrip('still here', { opcode: OP.TEXT });
    await c.send({ opcode: OP.CLOSE });
    await c.expectClose(null);
  });

  test('a ws client (automatic pongs) stays open across several pong timeouts', async () => {
    const t0 = Date.now();
    const ws = await wsConnect(server);
    const PINGS = 6;
    for (let i = 0; i < PINGS; i++) {
      await onceAny(ws, ['ping'], PONG_MS, `ping #${i + 1}`);
    }
    const elapsed = Date.now() - t0;
    assert.ok(elapsed > PONG_MS * 1.25, `open for ${elapsed} ms, past the pong timeout`);
    assert.equal(ws.readyState, ws.OPEN);
    await wsRoundTrip(ws, Buffer.from('alive'), { binary: false });
    await wsClose(ws);
  });
});

// The server stops reading a peer whose output is backed up. A peer that
// reads slowly but steadily is alive, though: it must not be dropped for
// silence (its pongs wait unread behind the pause) nor for a stuck write.
describe('slow reader', () => {
  let server;
  before(async () => {
    server = await start(['--max-message-size', '16m', '--ping-interval', `${PING_MS}ms`,
      '--pong-timeout', `${PONG_MS}ms`, '--write-timeout', '1s']);
  });
  after(() => server?.stop());

  test('a client reading a 16 MiB echo at 4 MiB/s while pinging gets all of it and stays open',
    async (t) => {
      const mark = server.logMark();
      const c = await RawClient.connect(server.port);
      const big = randomBytes(16 * 1024 * 1024);
      c.socket.pause();
      await c.send({ opcode: OP.BINARY, payload: big });
      // Four seconds of reading at least, several times the pong and write
      // timeouts, with a ping every 100 ms to show we are here.
      const t0 = Date.now();
      c.throttle(4 * 1024 * 1024);
      c.socket.resume();
      let pings = 0;
      const pinger = setInterval(() => {
        if (!c.ended) c.send({ opcode: OP.PING, payload: Buffer.from(`p${pings++}`) }).catch(() => {});
      }, 100);
      let m;
      try {
        m = await c.nextMessage({ ms: 30000 });
      } catch (e) {
        throw new Error(`${e.message}; server log:\n${server.stderr().slice(mark)}`);
      } finally {
        clearInterval(pinger);
      }
      t.diagnostic(`echo read in ${Date.now() - t0} ms, ${pings} pings sent meanwhile`);
      assert.ok(m.data.equals(big), 'the whole echo arrives');
      // Every ping is answered, in order, once the server reads again.
      for (let i = 0; i < pings; i++) {
        const pong = await c.nextFrame({ what: `pong p${i}` });
        assert.equal(pong.opcode, OP.PONG);
        assert.equal(pong.payload.toString(), `p${i}`);
      }
      await c.send({ opcode: OP.CLOSE, payload: closePayload(1000) });
      await c.expectClose(1000);
    });
});

describe('flood', () => {
  let server;
  before(async () => {
    server = await start(['--write-timeout', '1s']);
  });
  after(() => server?.stop());

  test('a client that sends without reading is paused, then dropped after the write timeout',
    async (t) => {
      const MiB = 1024 * 1024;
      const LIMIT = 512 * MiB; // the most we try to send
      const TIME_LIMIT_MS = 30000;
      await assertHealthy(server); // warm up
      const rss0 = rssKiB(server.pid);
      const mark = server.logMark();

      const c = await RawClient.connect(server.port);
      c.socket.pause(); // never read: the server's echoes pile up
      const msg = frame({ opcode: OP.BINARY, payload: randomBytes(256 * 1024) });
      let sent = 0;
      let rssMax = rss0;
      const t0 = Date.now();
      while (!c.ended && sent < LIMIT && Date.now() - t0 < TIME_LIMIT_MS) {
        const ok = c.socket.write(msg, () => {});
        sent += msg.length;
        if (!ok) {
          // The server stopped reading us: wait until it reads again or
          // drops us (or the time limit passes, which fails below).
          await onceAny(c.socket, ['drain', 'close', 'error'], TIME_LIMIT_MS, 'drain or close');
          rssMax = Math.max(rssMax, rssKiB(server.pid));
        }
      }
      await c.expectEnd({ ms: 10000, what: 'the flooding client to be dropped' }).catch((e) => {
        throw new Error(`${e.message} (sent ${(sent / MiB).toFixed(0)} MiB)`);
      });
      rssMax = Math.max(rssMax, rssKiB(server.pid));
      assert.ok(sent < LIMIT, `the server stopped reading before ${LIMIT / MiB} MiB`);
      const growthMiB = (rssMax - rss0) / 1024;
      assert.ok(growthMiB < 200,
        `server RSS grew by ${growthMiB.toFixed(1)} MiB while ${(sent / MiB).toFixed(0)} MiB ` +
        'were sent to it');
      const why = await server.waitForLog(/write timeout, \d+ bytes unsent: closing|slow consumer/,
        { from: mark });
      t.diagnostic(`sent ${(sent / MiB).toFixed(0)} MiB in ${Date.now() - t0} ms; server RSS ` +
        `+${growthMiB.toFixed(1)} MiB; server log: ${why[0]}`);
      c.destroy();
      await assertHealthy(server);
    });

  test('a flooding ws client that reads keeps up and stays open', async () => {
    const ws = await wsConnect(server);
    const N = 200;
    const payload = randomBytes(64 * 1024);
    let got = 0;
    const all = new Promise((resolve) => {
      ws.on('message', () => {
        if (++got === N) resolve();
      });
    });
    for (let i = 0; i < N; i++) ws.send(payload);
    await withTimeout(all, 30000, `${N} echoes`);
    assert.equal(ws.readyState, ws.OPEN);
    await wsClose(ws);
  });
});
