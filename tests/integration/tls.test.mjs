// TLS: https:// and wss:// on the TLS port with a certificate the test makes,
// checked with Node's `ws` and https and with curl; what a client that
// speaks plain HTTP, or an old TLS version, to that port gets; bad
// certificate settings refused at start; SIGHUP reads renewed files.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import WebSocket from 'ws';

import { runToExit, start } from './lib/server.mjs';
import { makeCert } from './lib/cert.mjs';
import { withTimeout } from './lib/util.mjs';

function httpsGet(port, path, ca) {
  return withTimeout(new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
          text: Buffer.concat(chunks).toString('utf8'), tls: res.socket.getProtocol?.() }));
      }).on('error', reject);
  }), 10000, `GET https://127.0.0.1:${port}${path}`);
}

function curl(args) {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

function runServer(args) {
  return runToExit(['--host', '127.0.0.1', '--port', '0', '--data-dir', '', ...args],
    { ms: 15000 });
}

describe('TLS', () => {
  let cert, server;
  before(async () => {
    cert = makeCert();
    server = await start(['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-port', '0']);
    assert.ok(server.tlsPort > 0, 'the TLS listening line names the port');
  });
  after(async () => {
    await server.stop();
    cert.cleanup();
  });

  test('https:// serves the same endpoints, over TLS 1.3', async () => {
    const res = await httpsGet(server.tlsPort, '/health', cert.certPem);
    assert.equal(res.status, 200);
    assert.equal(res.tls, 'TLSv1.3');
    const plain = await httpsGet(server.tlsPort, '/stats', cert.certPem);
    assert.equal(plain.status, 200);
    assert.equal(JSON.parse(plain.text).status, 'ok');
  });

  test('TLS 1.2 works too; TLS 1.1 is refused', async () => {
    const t12 = await withTimeout(new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.tlsPort, ca: cert.certPem,
        servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
        resolve(s.getProtocol());
        s.end();
      });
      s.on('error', reject);
    }), 10000, 'a TLS 1.2 handshake');
    assert.equal(t12, 'TLSv1.2');
    const old = await withTimeout(new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.tlsPort, ca: cert.certPem,
        servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT:@SECLEVEL=0' }, () => resolve('connected'));
      s.on('error', (e) => resolve(e.code ?? e.message));
    }), 10000, 'a TLS 1.1 handshake');
    assert.notEqual(old, 'connected');
  });

  test('wss:// with Node ws: chat messages and a large echo, compressed and not', async () => {
    for (const perMessageDeflate of [true, false]) {
      const ws = new WebSocket(`wss://127.0.0.1:${server.tlsPort}/echo`,
        { ca: cert.certPem, servername: 'localhost', perMessageDeflate });
      await withTimeout(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      }), 10000, 'wss open');
      for (const msg of ['hello', Buffer.alloc(300000, 3), 'z'.repeat(70000)]) {
        const got = withTimeout(new Promise((resolve) => ws.once('message', resolve)), 10000,
          'the echo');
        ws.send(msg);
        assert.ok(Buffer.from(await got).equals(Buffer.from(msg)));
      }
      const closed = withTimeout(new Promise((resolve) => ws.once('close', (code) =>
        resolve(code))), 10000, 'the close');
      ws.close(1000);
      assert.equal(await closed, 1000);
    }
  });

  test('curl over https, checking the certificate', async () => {
    const r = await curl(['--cacert', cert.cert, '--resolve', `localhost:${server.tlsPort}:127.0.0.1`,
      `https://localhost:${server.tlsPort}/health`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ok/);
  });

  test('plain HTTP to the TLS port gets a 400 that says so', async () => {
    const answer = await withTimeout(new Promise((resolve, reject) => {
      const s = net.connect(server.tlsPort, '127.0.0.1', () =>
        s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
      let text = '';
      s.on('data', (d) => { text += d; });
      s.on('end', () => resolve(text));
      s.on('error', reject);
    }), 10000, 'the answer to plain HTTP');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /TLS/);
  });

  test('garbage on the TLS port is dropped and the server goes on', async () => {
    await withTimeout(new Promise((resolve) => {
      const s = net.connect(server.tlsPort, '127.0.0.1', () =>
        // A handshake record holding an empty ClientHello: a decode error.
        s.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00])));
      s.resume(); // read (and drop) the alert, or the end is never seen
      s.on('close', resolve);
      s.on('error', () => {});
    }), 10000, 'the server to close a bad handshake');
    assert.equal((await httpsGet(server.tlsPort, '/health', cert.certPem)).status, 200);
  });
});

describe('TLS settings', () => {
  test('a certificate without a key, a key that does not match, and a missing file are refused',
    async () => {
      const a = makeCert();
      const b = makeCert();
      try {
        let r = await runServer(['--tls-cert', a.cert]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /TLS needs both tls_cert and tls_key/);
        r = await runServer(['--tls-cert', a.cert, '--tls-key', b.key]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /does not match the certificate/);
        r = await runServer(['--tls-cert', '/nonexistent/x.crt', '--tls-key', a.key]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /nonexistent/);
      } finally {
        a.cleanup();
        b.cleanup();
      }
    });

  test('SIGHUP reads renewed certificate files for new connections', async () => {
    const a = makeCert({ cn: 'localhost' });
    const b = makeCert({ cn: 'localhost' });
    const server = await start(['--tls-cert', a.cert, '--tls-key', a.key, '--tls-port', '0']);
    try {
      assert.equal((await httpsGet(server.tlsPort, '/health', a.certPem)).status, 200);
      copyFileSync(b.cert, a.cert);
      copyFileSync(b.key, a.key);
      const mark = server.logMark();
      server.proc.kill('SIGHUP');
      await server.waitForLog(/TLS certificate reloaded/, { from: mark });
      assert.equal((await httpsGet(server.tlsPort, '/health', b.certPem)).status, 200);
      await assert.rejects(httpsGet(server.tlsPort, '/health', a.certPem));
    } finally {
      await server.stop();
      a.cleanup();
      b.cleanup();
    }
  });
});
