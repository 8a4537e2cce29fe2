// raw.mjs — a raw WebSocket client on node:net, for saying things a real
// client never would: unmasked frames, reserved bits and opcodes, lying
// lengths, bytes one at a time. It parses the server's frames itself and
// checks them against RFC 6455 (unmasked, RSV clear, valid lengths).
//
// Everything waits on events; every wait has a timeout that fails the test.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { withTimeout } from './util.mjs';

export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptKey(key) {
  return createHash('sha1').update(key + GUID).digest('base64');
}

// Builds one frame. Client frames are masked with a random key unless
// mask is false (or a 4-byte Buffer to use as the key). lenOverride puts a
// different length in the header than the payload has (a number or a
// BigInt); lenBits forces the encoding: 7, 16 or 64.
export function frame({ fin = true, rsv = 0, opcode, payload = Buffer.alloc(0), mask = true,
  lenOverride, lenBits } = {}) {
  assert.ok(opcode !== undefined, 'frame() needs an opcode');
  payload = Buffer.from(payload);
  const len = BigInt(lenOverride ?? payload.length);
  const bits = lenBits ?? (len < 126n ? 7 : len < 65536n ? 16 : 64);
  const head = [((fin ? 1 : 0) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
  const mbit = mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (bits === 7) head.push(mbit | Number(len));
  else if (bits === 16) {
    head.push(mbit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(Number(len));
  } else {
    head.push(mbit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(len);
  }
  let key = Buffer.alloc(0);
  let body = payload;
  if (mask) {
    key = Buffer.isBuffer(mask) ? mask : randomBytes(4);
    body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  }
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

// A close frame's payload: the code (2 bytes) and the reason.
export function closePayload(code, reason = '') {
  const r = Buffer.isBuffer(reason) ? reason : Buffer.from(reason);
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code);
  r.copy(p, 2);
  return p;
}

// Parses one server frame at the front of buf. Returns {frame, size} or null
// when more bytes are needed. Throws on what a server must never send.
// rsvAllowed: the RSV bits an extension agreed on (4: permessage-deflate's
// RSV1, on the first frame of a data message only).
export function parseFrame(buf, rsvAllowed = 0) {
  if (buf.length < 2) return null;
  const b0 = buf[0], b1 = buf[1];
  let off = 2;
  let len = b1 & 0x7f;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    const big = buf.readBigUInt64BE(2);
    if (big >> 63n) throw new Error('server frame with the top bit of a 64-bit length set');
    len = Number(big);
    off = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  if (masked) throw new Error('server frame is masked (RFC 6455 5.1 forbids it)');
  if (buf.length < off + len) return null;
  const f = {
    fin: (b0 & 0x80) !== 0,
    rsv: (b0 >> 4) & 7,
    opcode: b0 & 0x0f,
    payload: buf.subarray(off, off + len),
  };
  if (f.rsv & ~rsvAllowed) throw new Error(`server frame with RSV bits ${f.rsv}`);
  if (f.rsv && f.opcode !== OP.TEXT && f.opcode !== OP.BINARY) {
    throw new Error(`RSV bits ${f.rsv} on a frame of opcode ${f.opcode}`);
  }
  if (f.opcode >= 8 && (!f.fin || len > 125)) throw new Error('invalid server control frame');
  if (f.opcode === OP.CLOSE) {
    if (len === 1) throw new Error('server close frame with a 1-byte payload');
    f.code = len >= 2 ? f.payload.readUInt16BE(0) : null;
    f.reason = len > 2 ? f.payload.subarray(2).toString('utf8') : '';
  }
  return { frame: f, size: off + len };
}

// A raw TCP connection that receives server frames into a queue.
export class RawClient {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];       // () => void, called on any new frame or end
    this.ended = false;      // TCP FIN or close seen
    this.closedSocket = false;
    this.error = null;       // socket error (e.g. ECONNRESET)
    this.protocolError = null; // a server frame broke the RFC
    this.rsvAllowed = 0;     // 4 once permessage-deflate is agreed
    this.endPromise = new Promise((resolve) => {
      this._resolveEnd = resolve;
    });
    this.closePromise = new Promise((resolve) => socket.on('close', () => {
      this.closedSocket = true;
      this._markEnded('close');
      resolve();
    }));
    socket.on('end', () => this._markEnded('end'));
    socket.on('error', (e) => {
      this.error = e;
      this._markEnded('error');
    });
  }

  _markEnded(how) {
    if (!this.ended) {
      this.ended = how;
      this._resolveEnd(how);
    }
    this._wake();
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  // Switches the socket from handshake reading to frame parsing.
  _startFrames(rest) {
    this.socket.on('data', (d) => this._onData(d));
    if (rest.length) this._onData(rest);
  }

  _onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    try {
      for (;;) {
        const r = parseFrame(this.buf, this.rsvAllowed);
        if (!r) break;
        // Copy: the payload must outlive the buffer it was sliced from.
        r.frame.payload = Buffer.from(r.frame.payload);
        this.frames.push(r.frame);
        this.buf = this.buf.subarray(r.size);
      }
    } catch (e) {
      this.protocolError = e;
    }
    this._wake();
  }

  // Connects and performs the opening handshake on path (default /echo).
  // Resolves with a client in frame mode; rejects unless the answer is 101
  // with the right Sec-WebSocket-Accept.
  static async connect(port, { path = '/echo', headers = {}, allowHalfOpen = false,
    ms = 10000 } = {}) {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen });
    socket.setNoDelay(true);
    await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }), ms, `TCP connect to 127.0.0.1:${port}`);
    const key = randomBytes(16).toString('base64');
    // headers add to or replace these (null removes one).
    const all = {
      Host: `127.0.0.1:${port}`,
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
      ...headers,
    };
    const lines = [`GET ${path} HTTP/1.1`,
      ...Object.entries(all).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`)];
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    const { head, rest } = await withTimeout(new Promise((resolve, reject) => {
      let acc = Buffer.alloc(0);
      const onData = (d) => {
        acc = Buffer.concat([acc, d]);
        const i = acc.indexOf('\r\n\r\n');
        if (i < 0) return;
        socket.off('data', onData);
        socket.off('end', onEnd);
        resolve({ head: acc.subarray(0, i).toString('latin1'), rest: acc.subarray(i + 4) });
      };
      const onEnd = () => reject(new Error(`connection ended during the handshake: ${acc}`));
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('error', reject);
    }), ms, 'the 101 answer to the WebSocket handshake');
    const [status, ...hdrs] = head.split('\r\n');
    assert.match(status, /^HTTP\/1\.1 101 /, `handshake answered ${status}`);
    const accept = hdrs.find((h) => /^sec-websocket-accept:/i.test(h));
    assert.ok(accept, 'the 101 answer has Sec-WebSocket-Accept');
    assert.equal(accept.split(':')[1].trim(), acceptKey(key));
    const c = new RawClient(socket);
    c.handshakeHeaders = Object.fromEntries(hdrs.map((h) => {
      const i = h.indexOf(':');
      return [h.slice(0, i).toLowerCase(), h.slice(i + 1).trim()];
    }));
    if (/permessage-deflate/i.test(c.handshakeHeaders['sec-websocket-extensions'] ?? '')) {
      c.rsvAllowed = 4;
    }
    c._startFrames(rest);
    return c;
  }

  // Writes bytes; resolves once the socket has taken them.
  write(bytes) {
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (e) => (e ? reject(e) : resolve()));
    });
  }

  // Builds a frame (see frame()) and writes it.
  send(opts) {
    return this.write(frame(opts));
  }

  // The next frame from the server (pings included unless skipPings).
  async nextFrame({ ms = 10000, skipPings = false, what = 'a frame from the server' } = {}) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.protocolError) throw this.protocolError;
      while (this.frames.length) {
        const f = this.frames.shift();
        if (skipPings && f.opcode === OP.PING) continue;
        return f;
      }
      if (this.ended) {
        throw new Error(`connection ${this.ended === 'error' ? `failed (${this.error?.code})`
          : 'ended'} while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await withTimeout(new Promise((resolve) => this.waiters.push(resolve)), left, what);
    }
  }

  // The next data message, reassembled from its frames (pings skipped, other
  // control frames are an error). Resolves {opcode, data}.
  async nextMessage({ ms = 10000 } = {}) {
    const first = await this.nextFrame({ ms, skipPings: true, what: 'a message' });
    assert.ok(first.opcode === OP.TEXT || first.opcode === OP.BINARY,
      `expected a data frame, got opcode ${first.opcode}` +
      (first.opcode === OP.CLOSE ? ` (close ${first.code} ${first.reason})` : ''));
    const parts = [first.payload];
    let f = first;
    while (!f.fin) {
      f = await this.nextFrame({ ms, skipPings: true, what: 'a continuation frame' });
      assert.equal(f.opcode, OP.CONT, 'a fragmented message continues with continuation frames');
      parts.push(f.payload);
    }
    return { opcode: first.opcode, data: Buffer.concat(parts) };
  }

  // Sends a message as one masked frame and asserts it is echoed byte-exact.
  async roundTrip(data, { opcode = OP.BINARY, ms = 10000 } = {}) {
    data = Buffer.from(data);
    await this.send({ opcode, payload: data });
    const m = await this.nextMessage({ ms });
    assert.equal(m.opcode, opcode);
    assert.ok(m.data.equals(data), 'echo is byte-exact');
  }

  // Waits for the server's close frame (pings before it are skipped), asserts
  // its code (null: a close with no payload), then waits for the server to
  // end TCP. Resolves the close frame.
  async expectClose(code, { ms = 10000 } = {}) {
    const f = await this.nextFrame({ ms, skipPings: true, what: `a close frame (${code})` });
    assert.equal(f.opcode, OP.CLOSE,
      `expected a close frame, got opcode ${f.opcode} (${f.payload.length} bytes)`);
    assert.equal(f.code, code, `close code (reason: ${JSON.stringify(f.reason)})`);
    await this.expectEnd({ ms, what: 'the server to end TCP after its close frame' });
    assert.equal(this.frames.length, 0, 'nothing follows the close frame');
    return f;
  }

  // Waits until the server ends the TCP connection (FIN, or a reset).
  async expectEnd({ ms = 10000, what = 'the server to end TCP' } = {}) {
    await withTimeout(this.endPromise, ms, what);
    if (this.protocolError) throw this.protocolError;
  }

  // Reads at most bytesPerSecond from now on (a slow reader): after each
  // chunk, reading pauses for as long as the chunk is worth.
  throttle(bytesPerSecond) {
    this.socket.on('data', (d) => {
      this.socket.pause();
      const t = setTimeout(() => this.socket.resume(), (d.length / bytesPerSecond) * 1000);
      t.unref();
    });
  }

  destroy() {
    this.socket.destroy();
  }
}

// Opens a plain TCP connection (no handshake).
export async function rawConnect(port, { allowHalfOpen = false, ms = 10000 } = {}) {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen });
  socket.setNoDelay(true);
  await withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  }), ms, `TCP connect to 127.0.0.1:${port}`);
  return socket;
}
