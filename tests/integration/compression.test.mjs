// permessage-deflate (RFC 7692): negotiation with Node's `ws`, what goes on
// the wire (checked with a raw client and zlib), inflation limits (a
// compression bomb gets 1009, bad data 1007) and one compression per
// broadcast, whatever the number of recipients.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import WebSocket from 'ws';

import { start } from './lib/server.mjs';
import { RawClient, OP } from './lib/raw.mjs';
import { api } from './lib/hub.mjs';
import { withTimeout } from './lib/util.mjs';

const OFFER = 'permessage-deflate; client_max_window_bits';

// What a client puts on the wire: deflate, sync flush, without the final
// 00 00 ff ff (RFC 7692 7.2.1).
function deflate(buf) {
  const out = zlib.deflateRawSync(buf, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual([...out.subarray(-4)], [0, 0, 0xff, 0xff]);
  return out.subarray(0, -4);
}

function inflate(payload) {
  return zlib.inflateRawSync(Buffer.concat([payload, Buffer.from([0, 0, 0xff, 0xff])]),
    { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

// The next data message of a raw client, inflated when RSV1 says so.
async function nextData(c) {
  for (;;) {
    const f = await c.nextFrame({ skipPings: true });
    if (f.opcode !== OP.TEXT && f.opcode !== OP.BINARY) continue;
    return { compressed: (f.rsv & 4) !== 0, opcode: f.opcode,
      data: f.rsv & 4 ? inflate(f.payload) : f.payload };
  }
}

async function nextJson(c, type) {
  for (;;) {
    const m = await nextData(c);
    const obj = JSON.parse(m.data.toString('utf8'));
    if (obj.type === type) return { ...m, obj };
  }
}

async function stats(server) {
  const res = await api(server, 'GET', '/stats');
  assert.equal(res.status, 200);
  return JSON.parse(res.text);
}

describe('permessage-deflate', () => {
  let server;
  before(async () => {
    server = await start(['--max-message-size', '64k']);
  });
  after(async () => {
    await server.stop();
  });

  test('Node ws negotiates it, without context takeover, and round trips through it', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/echo`);
    const upgraded = new Promise((resolve, reject) => {
      ws.once('upgrade', (res) => resolve(res.headers));
      ws.once('error', reject);
    });
    const opened = new Promise((resolve) => ws.once('open', resolve));
    const headers = await withTimeout(upgraded, 10000, 'the 101 answer');
    await withTimeout(opened, 10000, 'the open event');
    const ext = headers['sec-websocket-extensions'];
    assert.match(ext, /^permessage-deflate/);
    assert.match(ext, /server_no_context_takeover/);
    assert.match(ext, /client_no_context_takeover/);
    for (const msg of ['short', 'x'.repeat(60000), Buffer.alloc(50000, 7)]) {
      ws.send(msg);
      const [got, isBinary] = await withTimeout(new Promise((resolve) =>
        ws.once('message', (d, b) => resolve([d, b]))), 10000, 'the echo');
      assert.equal(isBinary, Buffer.isBuffer(msg));
      assert.ok(Buffer.from(got).equals(Buffer.from(msg)), 'echoed unchanged');
    }
    const closed = new Promise((resolve) => ws.once('close', resolve));
    ws.close(1000);
    await withTimeout(closed, 10000, 'the close');
  });

  test('a client that offers nothing gets no extension and plain frames', async () => {
    const c = await RawClient.connect(server.port);
    assert.equal(c.handshakeHeaders['sec-websocket-extensions'], undefined);
    await c.roundTrip(Buffer.alloc(4000, 1));
    c.destroy();
  });

  test('long messages go out compressed, short ones as they are', async () => {
    const c = await RawClient.connect(server.port, {
      headers: { 'Sec-WebSocket-Extensions': OFFER },
    });
    assert.match(c.handshakeHeaders['sec-websocket-extensions'], /permessage-deflate/);
    const long = Buffer.from('all work and no play '.repeat(500));
    c.send({ opcode: OP.TEXT, payload: long });
    let m = await nextData(c);
    assert.equal(m.compressed, true, 'RSV1 on a long, repetitive message');
    assert.ok(m.data.equals(long));
    const short = Buffer.from('hi there');
    c.send({ opcode: OP.TEXT, payload: short });
    m = await nextData(c);
    assert.equal(m.compressed, false, 'below the minimum size: sent as it is');
    assert.ok(m.data.equals(short));
    c.destroy();
  });

  test('compressed messages from the client are inflated, in one frame or fragmented', async () => {
    const c = await RawClient.connect(server.port, {
      headers: { 'Sec-WebSocket-Extensions': OFFER },
    });
    const text = Buffer.from('the quick brown fox '.repeat(800));
    c.send({ rsv: 4, opcode: OP.TEXT, payload: deflate(text) });
    assert.ok((await nextData(c)).data.equals(text));

    const z = deflate(text);
    const cut = Math.floor(z.length / 3);
    c.send({ fin: false, rsv: 4, opcode: OP.TEXT, payload: z.subarray(0, cut) });
    c.send({ fin: false, opcode: OP.CONT, payload: z.subarray(cut, 2 * cut) });
    c.send({ opcode: OP.CONT, payload: z.subarray(2 * cut) });
    assert.ok((await nextData(c)).data.equals(text));

    // An empty compressed message is an empty message.
    c.send({ rsv: 4, opcode: OP.BINARY, payload: Buffer.alloc(0) });
    assert.equal((await nextData(c)).data.length, 0);
    c.destroy();
  });

  test('a compression bomb is refused with 1009 and the server goes on', async () => {
    const c = await RawClient.connect(server.port, {
      headers: { 'Sec-WebSocket-Extensions': OFFER },
    });
    // 32 MiB of zeros deflate to about 32 KiB: under the 64 KiB frame limit,
    // far over the 64 KiB message limit once inflated.
    const bomb = deflate(Buffer.alloc(32 * 1024 * 1024));
    assert.ok(bomb.length < 64 * 1024);
    c.send({ rsv: 4, opcode: OP.BINARY, payload: bomb });
    await c.expectClose(1009);
    const other = await RawClient.connect(server.port);
    await other.roundTrip(Buffer.from('still here'));
    other.destroy();
  });

  test('invalid deflate data and compressed invalid UTF-8 get 1007', async () => {
    const bad = await RawClient.connect(server.port, {
      headers: { 'Sec-WebSocket-Extensions': OFFER },
    });
    bad.send({ rsv: 4, opcode: OP.BINARY, payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]) });
    await bad.expectClose(1007);

    const utf8 = await RawClient.connect(server.port, {
      headers: { 'Sec-WebSocket-Extensions': OFFER },
    });
    utf8.send({ rsv: 4, opcode: OP.TEXT, payload: deflate(Buffer.from([0x61, 0xff, 0xfe])) });
    await utf8.expectClose(1007);
  });

  test('RSV1 on a connection that did not agree to compression is a protocol error', async () => {
    const c = await RawClient.connect(server.port);
    c.send({ rsv: 4, opcode: OP.TEXT, payload: deflate(Buffer.from('hello')) });
    await c.expectClose(1002);
  });

  test('a broadcast to many is compressed once and reaches each recipient compressed', async () => {
    const members = [];
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.connect(server.port, {
        path: '/ws', headers: { 'Sec-WebSocket-Extensions': OFFER },
      });
      c.send({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify(
        { type: 'join', room: 'zip', nickname: `zip${i}` })) });
      await nextJson(c, 'history');
      members.push(c);
    }
    const before = (await stats(server)).compressed_messages_sent;
    const content = 'a long and repetitive announcement '.repeat(80);
    members[0].send({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify(
      { type: 'message', room: 'zip', content })) });
    for (const c of members) {
      const m = await nextJson(c, 'message');
      assert.equal(m.compressed, true);
      assert.equal(m.obj.content, content);
    }
    const after = await stats(server);
    assert.equal(after.compressed_messages_sent - before, 1, 'compressed once for five recipients');
    assert.ok(after.compressed_bytes_after < after.compressed_bytes_before);
    for (const c of members) c.destroy();
  });
});

describe('compression off', () => {
  test('--no-compression declines every offer', async () => {
    const server = await start(['--no-compression']);
    try {
      const c = await RawClient.connect(server.port, {
        headers: { 'Sec-WebSocket-Extensions': OFFER },
      });
      assert.equal(c.handshakeHeaders['sec-websocket-extensions'], undefined);
      const long = Buffer.from('all work and no play '.repeat(500));
      await c.roundTrip(long, { opcode: OP.TEXT });
      c.destroy();
    } finally {
      await server.stop();
    }
  });
});
