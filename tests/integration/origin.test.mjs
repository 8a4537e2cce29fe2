// origin.test.mjs — the origin check before the upgrade (cross-site
// WebSocket hijacking protection, docs/protocol.md "Origins"): clients that
// send no Origin and pages of the server's own origin may connect, and so may
// the origins of allowed_origins ("*": any); any other Origin gets 403 with a
// reason and no WebSocket, on every WebSocket route, counted in /metrics.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { api, HubClient, WAIT_MS } from './lib/hub.mjs';
import { start } from './lib/server.mjs';
import { withTimeout } from './lib/util.mjs';
import { wsUpgrade } from './lib/http.mjs';

const ROUTES = ['/ws', '/ws/raw', '/echo'];

async function expectAllowed(server, headers, what) {
  for (const path of ROUTES) {
    const res = await wsUpgrade(server, path, { headers });
    assert.equal(res.status, 101, `${what} on ${path}: upgraded (got ${res.status} ${res.body ?? ''})`);
  }
}

async function expectForbidden(server, headers, what) {
  for (const path of ROUTES) {
    const res = await wsUpgrade(server, path, { headers });
    assert.equal(res.status, 403, `${what} on ${path}: 403 (got ${res.status})`);
    assert.match(res.body, /^403 Forbidden: /, `${what}: plain text with the status`);
    assert.match(res.body, /allowed_origins/, `${what}: the reason names what would allow it`);
  }
}

async function refusedOrigins(server) {
  const res = await api(server, 'GET', '/metrics');
  const m = /^switchboard_upgrades_refused_total\{reason="origin"\} (\d+)$/m.exec(res.text);
  assert.ok(m, '/metrics counts origin refusals');
  return Number(m[1]);
}

describe('the default: no Origin and the server\'s own origin only', () => {
  let server;
  before(async () => {
    server = await start();
  });
  after(async () => {
    await server?.stop();
  });

  test('a client that sends no Origin (the ws package, curl) connects', async () => {
    await expectAllowed(server, {}, 'no Origin');
    // The ws package sends no Origin unless told to: the existing tests rely on this.
    const c = await HubClient.connect(server);
    await c.sync();
    await c.close();
  });

  test('pages of the server\'s own origin connect (http or https, any case, default ports)', async () => {
    const own = `127.0.0.1:${server.port}`;
    await expectAllowed(server, { Origin: `http://${own}` }, 'own origin');
    await expectAllowed(server, { Origin: `https://${own}` }, 'own origin over https');
    await expectAllowed(server, { Origin: `HTTP://${own}` }, 'scheme in capitals');
    await expectAllowed(server, { Origin: `http://localhost:${server.port}`, Host: `LocalHost:${server.port}` },
      'own origin under another name, as the Host header says');
    await expectAllowed(server, { Origin: 'http://chat.example', Host: 'chat.example:80' },
      'port 80 left out of the Origin');
    await expectAllowed(server, { Origin: 'https://chat.example:443', Host: 'chat.example' },
      'port 443 left out of the Host');
    await expectAllowed(server, { Origin: `http://[::1]:${server.port}`, Host: `[::1]:${server.port}` },
      'an IPv6 host');
    // A browser's WebSocket from one of the server's own pages.
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`, { origin: `http://${own}` });
    const c = new HubClient(ws, 'own-page');
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }), WAIT_MS, 'open with the own origin');
    await c.next('welcome');
    await c.sync();
    await c.close();
  });

  test('a foreign Origin gets 403 with the reason, on every route, counted', async () => {
    const before = await refusedOrigins(server);
    const p = server.port;
    const foreign = [
      'http://evil.example',
      `http://127.0.0.1:${p + 1}`, // another port of the same host
      `http://127.0.0.1`, // port 80, not the server's
      `http://127.0.0.1:${p}.evil.example`, // the own origin as a prefix
      `http://evil.example/127.0.0.1:${p}`, // and in a path
      `http://127.0.0.1:${p}@evil.example`,
      `ws://127.0.0.1:${p}`, // not a page's scheme
      `file://127.0.0.1:${p}`,
      'null', // sandboxed frames and file: pages
    ];
    for (const origin of foreign) await expectForbidden(server, { Origin: origin }, `Origin ${origin}`);
    const res = await wsUpgrade(server, '/ws', { headers: { Origin: 'http://evil.example' } });
    assert.match(res.body, /http:\/\/evil\.example/, 'the reason names the refused origin');
    assert.equal(await refusedOrigins(server), before + foreign.length * ROUTES.length + 1);
    const stats = await api(server, 'GET', '/stats');
    assert.equal(stats.json.upgrades_refused_origin, before + foreign.length * ROUTES.length + 1);
  });

  test('the ws package with a foreign origin option gets the 403 too', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`, { origin: 'https://evil.example' });
    const status = await withTimeout(new Promise((resolve, reject) => {
      ws.once('unexpected-response', (req, res) => {
        resolve(res.statusCode);
        req.destroy();
      });
      ws.once('open', () => reject(new Error('opened with a foreign origin')));
      ws.once('error', () => {});
    }), WAIT_MS, 'the refusal');
    assert.equal(status, 403);
  });
});

describe('allowed_origins: http://a.example,http://b.example:8443', () => {
  let server;
  before(async () => {
    server = await start([], {
      env: { SWITCHBOARD_ALLOWED_ORIGINS: 'http://a.example,http://b.example:8443' },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('the listed origins connect, exactly as listed', async () => {
    await expectAllowed(server, { Origin: 'http://a.example' }, 'a.example');
    await expectAllowed(server, { Origin: 'http://b.example:8443' }, 'b.example:8443');
  });

  test('the server\'s own origin and no Origin still connect', async () => {
    await expectAllowed(server, { Origin: `http://127.0.0.1:${server.port}` }, 'own origin');
    await expectAllowed(server, {}, 'no Origin');
  });

  test('anything else is refused', async () => {
    for (const origin of ['http://c.example', 'https://a.example', 'http://a.example:8080',
      'http://b.example', 'http://a.example.evil', 'http://sub.a.example', 'null']) {
      await expectForbidden(server, { Origin: origin }, `Origin ${origin}`);
    }
  });
});

describe('allowed_origins: *', () => {
  let server;
  before(async () => {
    server = await start([], { env: { SWITCHBOARD_ALLOWED_ORIGINS: '*' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('any Origin connects', async () => {
    for (const origin of ['http://evil.example', 'https://anything.example:1234', 'null']) {
      await expectAllowed(server, { Origin: origin }, `Origin ${origin}`);
    }
    assert.equal(await refusedOrigins(server), 0);
  });
});
