// http.mjs — raw HTTP/1.1 over node:net: write exact bytes, parse exact
// answers (status line, headers, Content-Length body), see whether the
// server keeps the connection or ends it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import net from 'node:net';
import { withTimeout } from './util.mjs';

export class HttpConn {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.ended = false;
    this.error = null;
    this.waiters = [];
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._wake();
    });
    this.endPromise = new Promise((resolve) => {
      const done = (how) => {
        if (!this.ended) this.ended = how;
        resolve(how);
        this._wake();
      };
      socket.on('end', () => done('end'));
      socket.on('close', () => done('close'));
      socket.on('error', (e) => {
        this.error = e;
        done('error');
      });
    });
  }

  static async connect(port, { ms = 10000 } = {}) {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }), ms, `TCP connect to 127.0.0.1:${port}`);
    return new HttpConn(socket);
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  write(bytes) {
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (e) => (e ? reject(e) : resolve()));
    });
  }

  async _waitMore(deadline, what) {
    if (this.ended) throw new Error(`connection ${this.ended} while waiting for ${what}; ` +
      `have ${JSON.stringify(this.buf.toString('latin1'))}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for ${what}`);
    await withTimeout(new Promise((r) => this.waiters.push(r)), left, what);
  }

  // Reads one response. head: the request was HEAD (no body follows).
  // Resolves {status, reason, version, headers (lower-case names), raw, body}.
  async readResponse({ head = false, ms = 10000 } = {}) {
    const deadline = Date.now() + ms;
    let end;
    while ((end = this.buf.indexOf('\r\n\r\n')) < 0) await this._waitMore(deadline, 'a response head');
    const text = this.buf.subarray(0, end).toString('latin1');
    const [statusLine, ...lines] = text.split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3}) (.*)$/.exec(statusLine);
    assert.ok(m, `bad status line ${JSON.stringify(statusLine)}`);
    const headers = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      assert.ok(i > 0, `bad header line ${JSON.stringify(l)}`);
      const name = l.slice(0, i).toLowerCase();
      assert.ok(!(name in headers), `header ${name} appears twice`);
      headers[name] = l.slice(i + 1).trim();
    }
    const status = Number(m[2]);
    const bodiless = head || status === 204 || status === 304 || status < 200;
    const len = bodiless ? 0 : Number(headers['content-length'] ?? NaN);
    assert.ok(Number.isInteger(len), `a ${status} answer without Content-Length`);
    while (this.buf.length < end + 4 + len) await this._waitMore(deadline, `a ${len}-byte body`);
    const body = this.buf.subarray(end + 4, end + 4 + len);
    this.buf = this.buf.subarray(end + 4 + len);
    return { status, reason: m[3], version: m[1], headers, raw: text, body: body.toString('utf8') };
  }

  // Waits for the server to end the connection; asserts nothing more came.
  async expectEnd({ ms = 10000 } = {}) {
    await withTimeout(this.endPromise, ms, 'the server to close the connection');
    assert.equal(this.buf.length, 0,
      `unexpected bytes before the end: ${JSON.stringify(this.buf.toString('latin1'))}`);
  }

  // Waits for the end, keeping whatever came before it in this.buf.
  async expectEndRaw({ ms = 10000 } = {}) {
    await withTimeout(this.endPromise, ms, 'the server to close the connection');
  }

  destroy() {
    this.socket.destroy();
  }
}

// One request on a fresh connection: writes bytes, reads one response.
export async function rawRequest(port, bytes, opts = {}) {
  const c = await HttpConn.connect(port);
  await c.write(bytes);
  const res = await c.readResponse(opts);
  return { conn: c, res };
}

// A minimal request head.
export function req(method, path, headers = {}, version = '1.1') {
  const h = { Host: '127.0.0.1', ...headers }; // null removes a header
  return `${method} ${path} HTTP/${version}\r\n` +
    Object.entries(h).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
    '\r\n';
}

// A WebSocket handshake on its own connection, with extra headers and from
// localAddress. Resolves {status: 101, headers} when the server upgrades (the
// connection is then dropped), else {status, headers, body} of its answer.
export function wsUpgrade(server, path, { headers = {}, localAddress = '127.0.0.1',
  ms = 10000 } = {}) {
  const p = new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: server.port,
      path,
      localAddress,
      agent: false,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
  return withTimeout(p, ms,
    `handshake on ${path} from ${localAddress} with ${JSON.stringify(headers)}`);
}
