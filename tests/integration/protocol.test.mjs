// protocol.test.mjs — RFC 6455 conformance of /echo, driven by a raw client:
// every violation fails the connection with the exact close code the RFC
// prescribes (and a reason), and the server keeps serving a healthy `ws`
// client on the side. Plus the legal-but-unusual: empty closes, pings inside
// fragmented messages, unsolicited pongs, frames dribbled a byte at a time.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HttpConn, req } from './lib/http.mjs';
import { closePayload, frame, OP, RawClient } from './lib/raw.mjs';
import { start } from './lib/server.mjs';
import { assertHealthy, openConnections, wsClose, wsConnect, wsRoundTrip } from './lib/util.mjs';

const KiB = 1024;
const MAX = 512 * KiB; // the server's default --max-message-size

describe('protocol violations', () => {
  let server;
  let healthy; // a `ws` client open for the whole suite
  before(async () => {
    server = await start([]);
    healthy = await wsConnect(server);
  });
  after(async () => {
    if (healthy) await wsClose(healthy);
    await server?.stop();
  });

  // Sends the frames (Buffers) and expects the server's close with `code`,
  // then TCP end; then both the long-lived and a fresh client still echo.
  // `first` lists the opcodes of legitimate answers due before the close.
  function violation(name, code, makeFrames, { first = [] } = {}) {
    test(`${name} -> close ${code}`, async () => {
      const c = await RawClient.connect(server.port);
      try {
        for (const f of makeFrames()) await c.write(f);
        for (const opcode of first) assert.equal((await c.nextFrame()).opcode, opcode);
        const close = await c.expectClose(code);
        assert.ok(close.reason.length > 0, 'the close reason says what was wrong');
      } finally {
        c.destroy();
      }
      await wsRoundTrip(healthy, Buffer.from(`after: ${name}`), { binary: false });
      await assertHealthy(server, name);
    });
  }

  const text = (payload, o = {}) => frame({ opcode: OP.TEXT, payload: Buffer.from(payload), ...o });
  const bin = (payload, o = {}) => frame({ opcode: OP.BINARY, payload, ...o });
  const cont = (payload, o = {}) => frame({ opcode: OP.CONT, payload: Buffer.from(payload), ...o });

  violation('an unmasked text frame', 1002, () => [text('hello', { mask: false })]);
  violation('an unmasked ping', 1002, () => [frame({ opcode: OP.PING, mask: false })]);
  violation('an unmasked close', 1002, () => [
    frame({ opcode: OP.CLOSE, payload: closePayload(1000), mask: false }),
  ]);

  for (const rsv of [4, 2, 1, 7]) {
    violation(`a text frame with RSV bits ${rsv.toString(2).padStart(3, '0')}`, 1002,
      () => [text('x', { rsv })]);
  }
  violation('a ping with RSV1', 1002, () => [frame({ opcode: OP.PING, rsv: 4 })]);
  violation('a continuation with RSV1', 1002, () => [
    text('a', { fin: false }), cont('b', { rsv: 4 }),
  ]);

  for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    violation(`reserved opcode 0x${opcode.toString(16)}`, 1002,
      () => [frame({ opcode, payload: Buffer.from('?') })]);
  }

  violation('a ping of 126 bytes', 1002,
    () => [frame({ opcode: OP.PING, payload: randomBytes(126) })]);
  violation('a pong of 126 bytes', 1002,
    () => [frame({ opcode: OP.PONG, payload: randomBytes(126) })]);
  violation('a close of 126 bytes', 1002,
    () => [frame({ opcode: OP.CLOSE, payload: closePayload(1000, 'r'.repeat(124)) })]);
  violation('a ping announcing 2^40 bytes', 1002,
    () => [frame({ opcode: OP.PING, lenOverride: 2n ** 40n })]);
  violation('a fragmented ping (FIN clear)', 1002,
    () => [frame({ opcode: OP.PING, fin: false, payload: Buffer.from('p') })]);
  violation('a fragmented close (FIN clear)', 1002,
    () => [frame({ opcode: OP.CLOSE, fin: false, payload: closePayload(1000) })]);

  violation('a continuation frame with no message started', 1002, () => [cont('orphan')]);
  violation('a final continuation after a complete message', 1002,
    () => [text('done'), cont('late')], { first: [OP.TEXT] });
  violation('a new text message inside a fragmented one', 1002,
    () => [text('part 1', { fin: false }), text('intruder')]);
  violation('a new binary message inside a fragmented text one', 1002,
    () => [text('part 1', { fin: false }), bin(Buffer.from([1, 2, 3]), { fin: false })]);

  const BAD_UTF8 = {
    'a lone 0xFF byte': [0x61, 0xff, 0x62],
    'a stray continuation byte': [0x80],
    'an overlong "/" (C0 AF)': [0xc0, 0xaf],
    'an overlong 3-byte NUL (E0 80 80)': [0xe0, 0x80, 0x80],
    'a UTF-16 surrogate (ED A0 80)': [0xed, 0xa0, 0x80],
    'a code point above U+10FFFF (F4 90 80 80)': [0xf4, 0x90, 0x80, 0x80],
    'a character cut short at the end (E2 82)': [0x61, 0xe2, 0x82],
  };
  for (const [what, bytes] of Object.entries(BAD_UTF8)) {
    violation(`a text frame with ${what}`, 1007, () => [text(Buffer.from(bytes))]);
  }
  violation('invalid UTF-8 across fragments (E2 82 | 28)', 1007,
    () => [text(Buffer.from([0x61, 0xe2, 0x82]), { fin: false }), cont(Buffer.from([0x28]))]);
  violation('a fragmented text message ending inside a character', 1007,
    () => [text(Buffer.from('ok '), { fin: false }), cont(Buffer.from([0xf0, 0x9f, 0x8e]))]);
  violation('invalid UTF-8 in a later fragment after a ping', 1007,
    () => [text('fine', { fin: false }), frame({ opcode: OP.PING }), cont(Buffer.from([0xff]))],
    { first: [OP.PONG] });

  violation('a close with a 1-byte payload', 1002,
    () => [frame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) })]);
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
    violation(`a close with the invalid code ${code}`, 1002,
      () => [frame({ opcode: OP.CLOSE, payload: closePayload(code) })]);
  }
  violation('a close reason that is not UTF-8', 1007,
    () => [frame({ opcode: OP.CLOSE, payload: closePayload(1000, Buffer.from([0x6f, 0xff])) })]);

  violation(`a frame announcing ${MAX + 1} bytes (over the 512 KiB default)`, 1009,
    () => [frame({ opcode: OP.BINARY, lenOverride: MAX + 1 })]);
  violation('a frame announcing 2^62 bytes', 1009,
    () => [frame({ opcode: OP.BINARY, lenOverride: 2n ** 62n })]);
  violation('a fragmented message growing past the limit', 1009,
    () => [bin(randomBytes(300 * KiB), { fin: false }), frame({ opcode: OP.CONT, payload: randomBytes(300 * KiB) })]);
  violation('a 64-bit length with the top bit set', 1002,
    () => [frame({ opcode: OP.BINARY, lenOverride: 2n ** 63n + 5n })]);

  test(`a message of exactly ${MAX} bytes is echoed (the limit is inclusive)`, async () => {
    const c = await RawClient.connect(server.port);
    await c.roundTrip(randomBytes(MAX));
    await c.send({ opcode: OP.CLOSE, payload: closePayload(1000) });
    await c.expectClose(1000);
  });
});

describe('opening handshake', () => {
  let server;
  before(async () => {
    server = await start([]);
  });
  after(() => server?.stop());

  const UPGRADES = {
    'Upgrade and Connection in other cases': { Upgrade: 'WebSocket', Connection: 'upgrade' },
    'Connection: keep-alive, Upgrade (as Firefox sends)': { Connection: 'keep-alive, Upgrade' },
    'blanks around the version and key': { 'Sec-WebSocket-Version': ' 13 ' },
  };
  for (const [what, headers] of Object.entries(UPGRADES)) {
    test(`a handshake with ${what} is accepted`, async () => {
      const c = await RawClient.connect(server.port, { headers });
      assert.equal(c.handshakeHeaders.upgrade.toLowerCase(), 'websocket');
      assert.equal(c.handshakeHeaders.connection.toLowerCase(), 'upgrade');
      await c.roundTrip('hi', { opcode: OP.TEXT });
      c.destroy();
    });
  }

  test('offered subprotocols and unknown extensions are declined, and RSV1 stays forbidden',
    async () => {
    const c = await RawClient.connect(server.port, { headers: {
      'Sec-WebSocket-Protocol': 'chat, superchat',
      'Sec-WebSocket-Extensions': 'x-webkit-deflate-frame, x-unknown; a=1',
    } });
    assert.equal(c.handshakeHeaders['sec-websocket-protocol'], undefined);
    assert.equal(c.handshakeHeaders['sec-websocket-extensions'], undefined);
    await c.roundTrip('plain', { opcode: OP.TEXT });
    await c.send({ opcode: OP.TEXT, rsv: 4, payload: Buffer.from('not compressed') });
    await c.expectClose(1002);
  });

  test('frames sent in the same write as the handshake are processed', async () => {
    const conn = await HttpConn.connect(server.port);
    await conn.write(Buffer.concat([
      Buffer.from(req('GET', '/echo', { Upgrade: 'websocket', Connection: 'Upgrade',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13' })),
      frame({ opcode: OP.TEXT, payload: Buffer.from('early bird') }),
      frame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
    ]));
    const res = await conn.readResponse();
    assert.equal(res.status, 101);
    assert.equal(res.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    await conn.expectEndRaw();
    const echo = Buffer.from([0x81, 10, ...Buffer.from('early bird')]);
    const close = Buffer.from([0x88, 2, 0x03, 0xe8]);
    assert.deepEqual(conn.buf, Buffer.concat([echo, close]));
  });
});

describe('closing and control frames', () => {
  let server;
  before(async () => {
    server = await start(['--log-level', 'debug']);
  });
  after(() => server?.stop());

  test('a close with a code and reason is answered with the same code, then TCP ends',
    async () => {
      const c = await RawClient.connect(server.port);
      await c.send({ opcode: OP.CLOSE, payload: closePayload(1000, 'bye for now') });
      const f = await c.expectClose(1000);
      assert.ok(f.payload.length <= 125);
    });

  test('a close with a 123-byte reason (the most that fits) is answered', async () => {
    const c = await RawClient.connect(server.port);
    await c.send({ opcode: OP.CLOSE, payload: closePayload(4321, 'é'.repeat(61) + 'x') });
    await c.expectClose(4321);
  });

  test('a close with no payload is answered with a close with no payload', async () => {
    const c = await RawClient.connect(server.port);
    await c.send({ opcode: OP.CLOSE });
    const f = await c.expectClose(null);
    assert.equal(f.payload.length, 0);
  });

  test('data after the client\'s close is not echoed', async () => {
    const c = await RawClient.connect(server.port);
    await c.write(Buffer.concat([
      frame({ opcode: OP.CLOSE, payload: closePayload(4000) }),
      frame({ opcode: OP.TEXT, payload: Buffer.from('too late') }),
    ]));
    await c.expectClose(4000); // and asserts nothing follows it
  });

  test('a ping inside a fragmented message gets its pong and the message completes',
    async () => {
      const c = await RawClient.connect(server.port);
      await c.write(Buffer.concat([
        frame({ opcode: OP.TEXT, fin: false, payload: Buffer.from('first half, ') }),
        frame({ opcode: OP.PING, payload: Buffer.from('are you there?') }),
        frame({ opcode: OP.CONT, fin: false, payload: Buffer.from('') }),
        frame({ opcode: OP.CONT, payload: Buffer.from('second half') }),
      ]));
      const pong = await c.nextFrame();
      assert.equal(pong.opcode, OP.PONG, 'the pong comes before the message is complete');
      assert.equal(pong.payload.toString(), 'are you there?');
      const m = await c.nextMessage();
      assert.equal(m.opcode, OP.TEXT);
      assert.equal(m.data.toString(), 'first half, second half');
      c.destroy();
    });

  test('a ping of exactly 125 bytes is answered with the same 125 bytes', async () => {
    const c = await RawClient.connect(server.port);
    const payload = randomBytes(125);
    await c.send({ opcode: OP.PING, payload });
    const pong = await c.nextFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.ok(pong.payload.equals(payload));
    c.destroy();
  });

  test('an unsolicited pong is ignored and the next message still echoes', async () => {
    const c = await RawClient.connect(server.port);
    await c.send({ opcode: OP.PONG, payload: Buffer.from('unasked') });
    await c.send({ opcode: OP.PONG });
    await c.roundTrip('after the pongs', { opcode: OP.TEXT });
    c.destroy();
  });

  test('non-minimal length encodings are accepted', async () => {
    const c = await RawClient.connect(server.port);
    for (const lenBits of [16, 64]) {
      const payload = Buffer.from(`len in ${lenBits} bits`);
      await c.send({ opcode: OP.BINARY, payload, lenBits });
      const m = await c.nextMessage();
      assert.ok(m.data.equals(payload));
    }
    c.destroy();
  });

  test('frames written one byte per TCP write are reassembled and answered', async () => {
    const c = await RawClient.connect(server.port);
    const dribble = async (buf) => {
      for (const b of buf) await c.write(Buffer.from([b]));
    };
    // A ping (the server keeps a partial control frame between reads).
    await dribble(frame({ opcode: OP.PING, payload: Buffer.from('slow ping') }));
    const pong = await c.nextFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.equal(pong.payload.toString(), 'slow ping');
    // A 16-bit-length text frame with multi-byte characters.
    const text = Buffer.from('é→🎉'.repeat(30));
    await dribble(frame({ opcode: OP.TEXT, payload: text }));
    let m = await c.nextMessage();
    assert.ok(m.data.equals(text));
    // A 64-bit length header a byte at a time, then the payload at once.
    const big = randomBytes(70000);
    const f = frame({ opcode: OP.BINARY, payload: big });
    await dribble(f.subarray(0, 14));
    await c.write(f.subarray(14));
    m = await c.nextMessage();
    assert.ok(m.data.equals(big));
    // And a whole fragmented message, byte by byte.
    await dribble(Buffer.concat([
      frame({ opcode: OP.BINARY, fin: false, payload: Buffer.from('ab') }),
      frame({ opcode: OP.CONT, payload: Buffer.from('cd') }),
    ]));
    m = await c.nextMessage();
    assert.equal(m.data.toString(), 'abcd');
    c.destroy();
  });
});

// Tests that wait on the server's clock (seconds), run side by side.
describe('closing deadlines', { concurrency: true }, () => {
  // The closing handshake has its own deadline (close_timeout, 5 s), counted
  // from when it starts, not from when the connection was opened: on a
  // connection older than the 10 s handshake timeout, output still being
  // written when the close starts is delivered to a client reading slowly.
  test('on a connection older than 10 s, a close or a violation behind a large echo ' +
    'still gets the whole echo and the close frame', async () => {
    const s = await start(['--max-message-size', '16m', '--ping-interval', '1s',
      '--pong-timeout', '30s']);
    try {
      const [a, b] = await Promise.all([RawClient.connect(s.port), RawClient.connect(s.port)]);
      // Age both past the handshake timeout, answering the server's pings
      // (one per second of silence): 11 pings is more than 10 s.
      await Promise.all([a, b].map(async (c) => {
        for (let i = 0; i < 11; i++) {
          const ping = await c.nextFrame({ ms: 5000, what: `ping #${i + 1}` });
          assert.equal(ping.opcode, OP.PING);
          await c.send({ opcode: OP.PONG, payload: ping.payload });
        }
      }));
      // Each sends 12 MiB (more than the kernel buffers take from a client
      // that does not read) and at once a close (a) or a violation (b)...
      const big = randomBytes(12 * 1024 * 1024);
      for (const c of [a, b]) c.socket.pause();
      await a.write(Buffer.concat([frame({ opcode: OP.BINARY, payload: big }),
        frame({ opcode: OP.CLOSE, payload: closePayload(1000) })]));
      await b.write(Buffer.concat([frame({ opcode: OP.BINARY, payload: big }),
        frame({ opcode: 0x3, payload: Buffer.from('reserved') })]));
      // ...and reads nothing while the server's sweep runs a few times (a
      // third connection's pings mark the passing seconds).
      const clock = await RawClient.connect(s.port);
      for (let i = 0; i < 2; i++) assert.equal((await clock.nextFrame({ ms: 5000 })).opcode, OP.PING);
      clock.destroy();
      for (const [c, code] of [[a, 1000], [b, 1002]]) {
        c.socket.resume();
        const m = await c.nextMessage({ ms: 20000 });
        assert.ok(m.data.equals(big), `the whole echo arrives (got ${m.data.length} bytes)`);
        await c.expectClose(code);
      }
    } finally {
      await s.stop();
    }
  });

  test('a client that sends close and never closes TCP is disconnected by the server',
    async () => {
      const s = await start(['--log-level', 'debug']);
      try {
        const c = await RawClient.connect(s.port, { allowHalfOpen: true });
        const opened = await s.waitForLog(/(c-\w+): WebSocket open on \/echo/);
        await c.send({ opcode: OP.CLOSE, payload: closePayload(1000) });
        // The close is answered and the server half-closes (FIN)...
        await c.expectClose(1000);
        // ...we never send our FIN; the server gives up on us and releases
        // the connection (close_timeout, 5 s by default).
        await s.waitForLog(new RegExp(`${opened[1]}: WebSocket closed \\(1000\\)`), { ms: 15000 });
        assert.equal(await openConnections(s), 0, 'the connection is gone from the server');
        c.destroy();
      } finally {
        await s.stop();
      }
    });
});
