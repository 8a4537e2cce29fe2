// http.test.mjs — the HTTP/1.1 side, byte-exact over raw sockets: status
// lines, headers, short plain-text error bodies, which answers keep the
// connection and which end it, keep-alive, pipelining, HEAD and ETags.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HttpConn, req } from './lib/http.mjs';
import { start } from './lib/server.mjs';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const UPGRADE = {
  Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': KEY,
  'Sec-WebSocket-Version': '13',
};

describe('http', () => {
  let server;
  before(async () => {
    server = await start([]);
  });
  after(() => server?.stop());

  // Sends one request on a fresh connection and reads the answer.
  async function ask(bytes, { head = false } = {}) {
    const conn = await HttpConn.connect(server.port);
    await conn.write(bytes);
    const res = await conn.readResponse({ head });
    return { conn, res };
  }

  // The connection takes another request and answers it.
  async function assertStaysOpen(conn) {
    await conn.write(req('GET', '/health'));
    const res = await conn.readResponse();
    assert.equal(res.status, 200, 'a second request on the same connection is answered');
    conn.destroy();
  }

  // The answer says "Connection: close" and the server ends the connection.
  async function assertCloses(conn, res) {
    assert.equal(res.headers.connection, 'close');
    await conn.expectEnd();
  }

  // Common to every answer: the Server and Date headers, and an error body
  // that is short plain text naming the status.
  function assertWellFormed(res, status) {
    assert.equal(res.version, '1.1');
    assert.equal(res.status, status, `status (body: ${res.body})`);
    assert.match(res.headers.server, /^switchboard\/\d+\.\d+\.\d+$/);
    assert.ok(!Number.isNaN(Date.parse(res.headers.date)), 'Date is an HTTP date');
    if (status >= 400) {
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
      assert.ok(res.body.startsWith(`${status} ${res.reason}: `), `body names the status: ${res.body}`);
      assert.ok(res.body.length < 200, 'error bodies are short');
      assert.ok(res.body.endsWith('\n'));
    }
  }

  test('GET /health is 200 with JSON status ok, not cached, and keeps the connection', async () => {
    const { conn, res } = await ask(req('GET', '/health'));
    assertWellFormed(res, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(res.headers.connection, 'keep-alive');
    const body = JSON.parse(res.body);
    assert.equal(body.status, 'ok');
    assert.match(body.version, /^\d+\.\d+\.\d+$/);
    assert.equal(typeof body.uptime_seconds, 'number');
    assert.ok(body.connections >= 1);
    await assertStaysOpen(conn);
  });

  test('HEAD /health has the headers of GET and no body', async () => {
    const conn = await HttpConn.connect(server.port);
    // HEAD then GET on one connection: a body after HEAD would be read as
    // the start of the second answer.
    await conn.write(req('HEAD', '/health') + req('GET', '/health'));
    const head = await conn.readResponse({ head: true });
    assertWellFormed(head, 200);
    assert.equal(head.headers['content-type'], 'application/json');
    assert.ok(Number(head.headers['content-length']) > 0);
    const get = await conn.readResponse();
    assertWellFormed(get, 200);
    assert.equal(JSON.parse(get.body).status, 'ok');
    conn.destroy();
  });

  test('a query string and an absolute-form target reach /health', async () => {
    for (const target of ['/health?verbose=1', `http://127.0.0.1:${server.port}/health`]) {
      const { conn, res } = await ask(req('GET', target));
      assertWellFormed(res, 200);
      conn.destroy();
    }
  });

  test('GET / serves the embedded page with an ETag', async () => {
    const { conn, res } = await ask(req('GET', '/'));
    assertWellFormed(res, 200);
    assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(res.headers.etag, /^"[^"]+"$/);
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.match(res.body, /<title>Switchboard<\/title>/);
    assert.equal(Buffer.byteLength(res.body), Number(res.headers['content-length']));
    conn.destroy();
  });

  test('If-None-Match with the ETag gets 304 with no body; a stale one gets 200', async () => {
    const { conn, res } = await ask(req('GET', '/'));
    const etag = res.headers.etag;
    const cases = [
      [etag, 304],
      [`W/${etag}`, 304],
      [`"stale", ${etag}`, 304],
      ['*', 304],
      ['"stale"', 200],
      [etag.slice(0, -2) + 'x"', 200],
    ];
    for (const [inm, status] of cases) {
      await conn.write(req('GET', '/', { 'If-None-Match': inm }));
      const r = await conn.readResponse();
      assertWellFormed(r, status);
      assert.equal(r.headers.etag, etag, `${inm}: the ETag comes with the answer`);
      if (status === 304) {
        assert.equal(r.body, '');
        assert.equal(r.headers['content-length'], undefined, '304 has no Content-Length');
      } else {
        assert.equal(r.body, res.body);
      }
    }
    conn.destroy(); // all on one connection: 304 kept it alive
  });

  test('HEAD / has the ETag and no body', async () => {
    const { conn, res } = await ask(req('HEAD', '/'), { head: true });
    assertWellFormed(res, 200);
    assert.match(res.headers.etag, /^"[^"]+"$/);
    assert.ok(Number(res.headers['content-length']) > 0);
    await assertStaysOpen(conn);
  });

  test('an HTTP/1.1 request without Host is 400 and closes the connection', async () => {
    const { conn, res } = await ask(req('GET', '/health', { Host: null }));
    assertWellFormed(res, 400);
    assert.match(res.body, /Host/);
    await assertCloses(conn, res);
  });

  test('an HTTP/1.0 request without Host is answered', async () => {
    const { res } = await ask(req('GET', '/health', { Host: null }, '1.0'));
    assertWellFormed(res, 200);
  });

  test('an HTTP version other than 1.x is 505 and closes the connection', async () => {
    const { conn, res } = await ask(req('GET', '/health', {}, '2.0'));
    assertWellFormed(res, 505);
    await assertCloses(conn, res);
  });

  test('an unknown path is 404 and keeps the connection', async () => {
    const { conn, res } = await ask(req('GET', '/no/such/page'));
    assertWellFormed(res, 404);
    assert.equal(res.headers.connection, 'keep-alive');
    await assertStaysOpen(conn);
  });

  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    test(`${method} /health is 405 with Allow: GET, HEAD and keeps the connection`, async () => {
      const { conn, res } = await ask(req(method, '/health', { 'Content-Length': '0' }));
      assertWellFormed(res, 405);
      assert.equal(res.headers.allow, 'GET, HEAD');
      assert.equal(res.headers.connection, 'keep-alive');
      await assertStaysOpen(conn);
    });
  }

  test('a small request body is read past: the next request on the connection works', async () => {
    const { conn, res } = await ask(req('POST', '/health', { 'Content-Length': '11' }) + 'hello world');
    assertWellFormed(res, 405);
    await assertStaysOpen(conn);
  });

  test('plain GET /echo is 426 with Sec-WebSocket-Version: 13 and keeps the connection',
    async () => {
      const { conn, res } = await ask(req('GET', '/echo'));
      assertWellFormed(res, 426);
      assert.equal(res.headers['sec-websocket-version'], '13');
      assert.equal(res.headers.upgrade, 'websocket');
      assert.equal(res.headers.connection, 'keep-alive');
      await assertStaysOpen(conn);
    });

  test('POST /echo is 405 with Allow: GET', async () => {
    const { conn, res } = await ask(req('POST', '/echo', { 'Content-Length': '0' }));
    assertWellFormed(res, 405);
    assert.equal(res.headers.allow, 'GET');
    await assertStaysOpen(conn);
  });

  // A refused upgrade ends the connection: http-parser hands everything
  // after an Upgrade request's head to the new protocol, so there is no next
  // request to find.
  test('a handshake with Sec-WebSocket-Version 8 is 426 naming version 13, then closed',
    async () => {
      const { conn, res } = await ask(req('GET', '/echo', { ...UPGRADE, 'Sec-WebSocket-Version': '8' }));
      assertWellFormed(res, 426);
      assert.equal(res.headers['sec-websocket-version'], '13');
      await assertCloses(conn, res);
    });

  test('a handshake without Sec-WebSocket-Version is 426 naming version 13', async () => {
    const { conn, res } = await ask(req('GET', '/echo', { ...UPGRADE, 'Sec-WebSocket-Version': null }));
    assertWellFormed(res, 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
    await assertCloses(conn, res);
  });

  test('HEAD /echo is 405 with Allow: GET and no body', async () => {
    const conn = await HttpConn.connect(server.port);
    await conn.write(req('HEAD', '/echo') + req('GET', '/health'));
    const res = await conn.readResponse({ head: true });
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'GET');
    assertWellFormed(await conn.readResponse(), 200); // no body came in between
    conn.destroy();
  });

  for (const [what, headers, version] of [
    ['a key that is not base64 of 16 bytes', { 'Sec-WebSocket-Key': 'c2hvcnQ=' }],
    ['an empty key', { 'Sec-WebSocket-Key': '' }],
    ['Connection without Upgrade', { Connection: 'keep-alive' }],
    ['HTTP/1.0', {}, '1.0'],
    ['no Host header', { Host: null }],
    ['no Sec-WebSocket-Key', { 'Sec-WebSocket-Key': null }],
  ]) {
    test(`a handshake with ${what} is 400 and closes the connection`, async () => {
      const { conn, res } = await ask(req('GET', '/echo', { ...UPGRADE, ...headers }, version));
      assertWellFormed(res, 400);
      await assertCloses(conn, res);
    });
  }

  test('a request head over 8 KiB is 431 and closes the connection', async () => {
    const { conn, res } = await ask(req('GET', '/health', { 'X-Big': 'a'.repeat(9000) }));
    assertWellFormed(res, 431);
    await assertCloses(conn, res);
  });

  test('a request head under 8 KiB is fine', async () => {
    const { conn, res } = await ask(req('GET', '/health', { 'X-Big': 'a'.repeat(7000) }));
    assertWellFormed(res, 200);
    await assertStaysOpen(conn);
  });

  test('a head over 8 KiB that arrives a line at a time is 431', async () => {
    const conn = await HttpConn.connect(server.port);
    await conn.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    for (let i = 0; i < 200 && !conn.ended && conn.buf.length === 0; i++) {
      await conn.write(`X-Line-${i}: ${'b'.repeat(100)}\r\n`);
    }
    const res = await conn.readResponse();
    assertWellFormed(res, 431);
    await assertCloses(conn, res);
  });

  test('more than 64 headers is 431', async () => {
    const many = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`X-H${i}`, 'v']));
    const { conn, res } = await ask(req('GET', '/health', many));
    assertWellFormed(res, 431);
    await assertCloses(conn, res);
  });

  test('a Content-Length over 1 MiB is 413 at the head and closes the connection', async () => {
    const { conn, res } = await ask(req('POST', '/health', { 'Content-Length': String(2 * 1024 * 1024) }));
    assertWellFormed(res, 413);
    await assertCloses(conn, res);
  });

  test('a chunked body growing over 1 MiB is 413', async () => {
    const conn = await HttpConn.connect(server.port);
    const size = 1024 * 1024 + 4096;
    await conn.write(req('POST', '/health', { 'Transfer-Encoding': 'chunked' }) +
      `${size.toString(16)}\r\n`);
    // Write the chunk in pieces until the server answers (it reads on,
    // discarding, until we close).
    const piece = Buffer.alloc(64 * 1024, 0x61);
    for (let sent = 0; sent < size && conn.buf.length === 0 && !conn.ended; sent += piece.length) {
      await conn.write(piece);
    }
    const res = await conn.readResponse();
    assertWellFormed(res, 413);
    await assertCloses(conn, res);
  });

  for (const [what, bytes] of [
    ['an invalid method', 'GARBAGE\r\n\r\n'],
    ['a header line without a colon', 'GET /health HTTP/1.1\r\nBad Header Line\r\n\r\n'],
    ['a NUL in a header value', 'GET /health HTTP/1.1\r\nHost: a\0b\r\n\r\n'],
    ['a non-numeric Content-Length', 'GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n'],
    ['two Content-Lengths', 'POST /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
    ['a target that is not a path', 'GET health HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['binary garbage', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'],
  ]) {
    test(`${what} is 400 and closes the connection`, async () => {
      const { conn, res } = await ask(bytes);
      assertWellFormed(res, 400);
      await assertCloses(conn, res);
    });
  }

  test('keep-alive: two requests one after the other on one connection', async () => {
    const conn = await HttpConn.connect(server.port);
    await conn.write(req('GET', '/health'));
    const a = await conn.readResponse();
    assertWellFormed(a, 200);
    assert.equal(a.headers.connection, 'keep-alive');
    await conn.write(req('GET', '/'));
    const b = await conn.readResponse();
    assertWellFormed(b, 200);
    assert.match(b.body, /Switchboard/);
    conn.destroy();
  });

  test('pipelined requests in one write are answered in order', async () => {
    const conn = await HttpConn.connect(server.port);
    await conn.write(req('GET', '/health') + req('GET', '/nope') + req('HEAD', '/health') +
      req('POST', '/health', { 'Content-Length': '3' }) + 'abc' + req('GET', '/') +
      req('GET', '/echo') + req('GET', '/health', { Connection: 'close' }));
    const expected = [[200, 'GET'], [404, 'GET'], [200, 'HEAD'], [405, 'POST'], [200, 'GET'],
      [426, 'GET'], [200, 'GET']];
    for (const [i, [status, method]] of expected.entries()) {
      const r = await conn.readResponse({ head: method === 'HEAD' });
      assertWellFormed(r, status);
      if (i === 4) assert.match(r.body, /<title>Switchboard/);
      if (i === expected.length - 1) await assertCloses(conn, r);
    }
  });

  test('pipelined requests with a malformed one: answered up to it, then 400 and close',
    async () => {
      const conn = await HttpConn.connect(server.port);
      await conn.write(req('GET', '/health') + 'NOT HTTP AT ALL\r\n\r\n' + req('GET', '/health'));
      assertWellFormed(await conn.readResponse(), 200);
      const r = await conn.readResponse();
      assertWellFormed(r, 400);
      await assertCloses(conn, r);
    });

  test('Connection: close is honoured', async () => {
    const { conn, res } = await ask(req('GET', '/health', { Connection: 'close' }));
    assertWellFormed(res, 200);
    await assertCloses(conn, res);
  });

  test('HTTP/1.0 without keep-alive is answered and closed', async () => {
    const { conn, res } = await ask('GET /health HTTP/1.0\r\n\r\n');
    assertWellFormed(res, 200);
    await assertCloses(conn, res);
  });

  test('a request split into 1-byte writes is answered', async () => {
    const conn = await HttpConn.connect(server.port);
    for (const b of Buffer.from(req('GET', '/health'))) await conn.write(Buffer.from([b]));
    assertWellFormed(await conn.readResponse(), 200);
    conn.destroy();
  });
});

// The handshake timeout (10 s, fixed) bounds how long a connection may take
// to send its first request head: silent and trickling clients are cut off.
// These wait on the server's clock, so they run side by side.
describe('http timeouts', { concurrency: true }, () => {
  const HANDSHAKE_TIMEOUT_MS = 10000;
  let server;
  before(async () => {
    server = await start([]);
  });
  after(() => server?.stop());

  async function assertCutOff(conn, t0) {
    await conn.endPromise; // guarded by the test's timeout
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= HANDSHAKE_TIMEOUT_MS - 500, `not cut off early (after ${elapsed} ms)`);
    assert.equal(conn.buf.length, 0, 'no answer is sent');
  }

  test('a connection that sends nothing is closed after the handshake timeout',
    { timeout: HANDSHAKE_TIMEOUT_MS + 5000 }, async () => {
      const t0 = Date.now();
      const conn = await HttpConn.connect(server.port);
      await assertCutOff(conn, t0);
    });

  test('a head that never ends is closed after the handshake timeout',
    { timeout: HANDSHAKE_TIMEOUT_MS + 5000 }, async () => {
      const t0 = Date.now();
      const conn = await HttpConn.connect(server.port);
      await conn.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      await assertCutOff(conn, t0);
    });

  test('a head trickled a line at a time is still closed at the handshake timeout',
    { timeout: HANDSHAKE_TIMEOUT_MS + 5000 }, async () => {
      const t0 = Date.now();
      const conn = await HttpConn.connect(server.port);
      await conn.write('GET /health HTTP/1.1\r\n');
      // A slow client (the scenario, not a wait): one short line every
      // 250 ms, far from the 8 KiB head limit in 10 s.
      const trickle = setInterval(() => {
        if (!conn.ended) conn.socket.write('X-Slow: 1\r\n');
      }, 250);
      try {
        await assertCutOff(conn, t0);
      } finally {
        clearInterval(trickle);
      }
    });
});
