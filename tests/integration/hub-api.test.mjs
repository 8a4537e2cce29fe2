// hub-api.test.mjs — the HTTP side of the hub: /stats and /status counters
// that follow the traffic exactly, /metrics in Prometheus text format, and
// /api/... (broadcast, rooms, users, messages) with and without --api-key.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api, assertTimestamp, closeAll, connectMany, HubClient, startHub,
} from './lib/hub.mjs';
import { until, wsClose, wsConnect, wsNext } from './lib/util.mjs';

const STATS_KEYS = [
  'status', 'connections', 'total_connections', 'unique_users', 'rooms',
  'messages_received', 'messages_sent', 'bytes_received', 'bytes_sent',
  'messages_received_per_second', 'messages_sent_per_second',
  'bytes_received_per_second', 'bytes_sent_per_second', 'slow_consumers', 'uptime_seconds',
  // refusals, rate limiting and token expiry (auth.c)
  'upgrades_refused_origin', 'upgrades_refused_unauthorized', 'upgrades_refused_max_connections',
  'upgrades_refused_max_connections_per_ip', 'requests_refused_forbidden',
  'requests_refused_too_many_rooms', 'requests_refused_room_limit', 'rate_limited',
  'rate_limit_closes', 'token_expired_closes', 'token_refreshes', 'token_refreshes_refused',
  // the server's descriptors and compression
  'connections_shed', 'messages_dropped', 'compressed_messages_sent', 'compressed_bytes_before',
  'compressed_bytes_after', 'compressed_messages_received',
];

async function stats(server, path = '/stats') {
  const res = await api(server, 'GET', path);
  assert.equal(res.status, 200, `${path}: ${res.text}`);
  assert.match(res.headers['content-type'], /^application\/json/);
  assert.deepEqual(Object.keys(res.json).sort(), [...STATS_KEYS].sort(), `${path} fields`);
  for (const k of STATS_KEYS.slice(1)) {
    assert.equal(typeof res.json[k], 'number', `${path}: ${k} is a number`);
    assert.ok(res.json[k] >= 0, `${path}: ${k} >= 0`);
  }
  assert.equal(res.json.status, 'ok');
  return res.json;
}

// Prometheus text: {name: value} (a labelled sample as name{labels}); asserts
// every sample's metric has HELP and TYPE.
function parseMetrics(text) {
  const help = new Set();
  const type = new Map();
  const values = {};
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m;
    if ((m = /^# HELP (\S+) \S.*$/.exec(line))) help.add(m[1]);
    else if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) type.set(m[1], m[2]);
    else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/.exec(line))) values[m[1] + (m[2] ?? '')] = Number(m[3]);
    else assert.fail(`not a Prometheus text line: ${JSON.stringify(line)}`);
  }
  for (const sample of Object.keys(values)) {
    const name = sample.replace(/\{.*$/, '');
    assert.ok(help.has(name), `${name} has # HELP`);
    assert.ok(type.has(name), `${name} has # TYPE`);
    if (name.endsWith('_total')) assert.equal(type.get(name), 'counter', `${name} is a counter`);
  }
  return values;
}

describe('/stats, /status and /metrics', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('the counters follow the traffic exactly', async () => {
    const s0 = await stats(server);
    assert.equal(s0.connections, 0);
    assert.equal(s0.total_connections, 0);
    assert.equal(s0.unique_users, 0);
    assert.equal(s0.rooms, 0);
    assert.equal(s0.messages_received, 0);
    assert.equal(s0.messages_sent, 0);
    assert.equal(s0.slow_consumers, 0);

    const clients = await connectMany(server, 3, 'st');
    const [a, b, c] = clients;
    try {
      const s1 = await stats(server);
      assert.equal(s1.connections, 3);
      assert.equal(s1.total_connections, 3);
      assert.equal(s1.unique_users, 3);
      const snap = () => clients.reduce((t, x) => ({
        in: t.in + x.sent.messages, inB: t.inB + x.sent.bytes,
        out: t.out + x.got.messages, outB: t.outB + x.got.bytes,
      }), { in: 0, inB: 0, out: 0, outB: 0 });
      for (const x of clients) await x.sync();
      const before1 = snap();
      const s2 = await stats(server);
      assert.equal(s2.messages_received, before1.in, 'every message the clients sent');
      assert.equal(s2.bytes_received, before1.inB, 'their payload bytes');
      assert.equal(s2.messages_sent, before1.out, 'every message the clients got');
      assert.equal(s2.bytes_sent, before1.outB, 'their payload bytes');

      await a.join('stats-room');
      await b.join('stats-room');
      await b.join('stats-other');
      for (let i = 0; i < 5; i++) await a.say('stats-room', `counted ${i}`);
      a.send({ type: 'broadcast', content: 'to all three' });
      for (const x of clients) await x.next('broadcast');
      for (const x of clients) await x.sync();
      const after1 = snap();
      const s3 = await stats(server);
      assert.equal(s3.rooms, 2);
      assert.equal(s3.messages_received - s2.messages_received, after1.in - before1.in);
      assert.equal(s3.bytes_received - s2.bytes_received, after1.inB - before1.inB);
      assert.equal(s3.messages_sent - s2.messages_sent, after1.out - before1.out);
      assert.equal(s3.bytes_sent - s2.bytes_sent, after1.outB - before1.outB);
      assert.ok(s3.messages_sent > s2.messages_sent + 10, 'fan-out counts one per recipient');

      // /status is the same document.
      const st = await stats(server, '/status');
      for (const k of ['connections', 'total_connections', 'unique_users', 'rooms',
        'messages_received', 'messages_sent', 'bytes_received', 'bytes_sent']) {
        assert.equal(st[k], s3[k], `/status ${k}`);
      }

      // Closing a connection: the open count falls, the total does not.
      await c.close();
      await until(async () => (await stats(server)).connections === 2, 5000,
        'connections to fall to 2 after a close');
      const s4 = await stats(server);
      assert.equal(s4.total_connections, 3);
      assert.equal(s4.unique_users, 2);
      const d = await HubClient.connect(server, { label: 'st4' });
      clients.push(d);
      const s5 = await stats(server);
      assert.equal(s5.connections, 3);
      assert.equal(s5.total_connections, 4);
    } finally {
      await closeAll(clients);
    }
  });

  test('the rates become non-zero while traffic flows; uptime counts seconds', async () => {
    const a = await HubClient.connect(server, { label: 'rates' });
    try {
      // Rates are computed over the last second by the server's sweep:
      // there is no event to wait for, so poll while generating traffic.
      let s;
      await until(async () => {
        await a.sync();
        s = await stats(server);
        return s.messages_received_per_second > 0;
      }, 5000, 'messages_received_per_second > 0 under traffic', 50);
      assert.ok(s.messages_sent_per_second > 0);
      assert.ok(s.bytes_received_per_second > 0);
      assert.ok(s.bytes_sent_per_second > 0);
      // The first rates come a second after the start.
      assert.ok(s.uptime_seconds >= 1, `uptime ${s.uptime_seconds}`);
      assert.ok(Number.isInteger(s.uptime_seconds));
    } finally {
      await a.close();
    }
  });

  test('/metrics has the counters as switchboard_* series in Prometheus text', async () => {
    const a = await HubClient.connect(server, { label: 'metrics' });
    try {
      await a.join('metrics-room');
      const res = await api(server, 'GET', '/metrics');
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
      const m = parseMetrics(res.text);
      for (const name of ['switchboard_connections', 'switchboard_connections_total',
        'switchboard_users', 'switchboard_rooms', 'switchboard_messages_received_total',
        'switchboard_messages_sent_total', 'switchboard_bytes_received_total',
        'switchboard_bytes_sent_total', 'switchboard_slow_consumers_total',
        'switchboard_uptime_seconds', 'switchboard_connections_shed_total',
        'switchboard_deflate_messages_total', 'switchboard_inflate_messages_total']) {
        assert.ok(name in m, `${name} is there`);
      }
      for (const name of Object.keys(m)) assert.match(name, /^switchboard_/);
      const s = await stats(server);
      assert.equal(m.switchboard_connections, s.connections);
      assert.equal(m.switchboard_connections_total, s.total_connections);
      assert.equal(m.switchboard_users, s.unique_users);
      assert.equal(m.switchboard_rooms, s.rooms);
      assert.equal(m.switchboard_messages_received_total, s.messages_received);
      assert.equal(m.switchboard_messages_sent_total, s.messages_sent);
      assert.equal(m.switchboard_bytes_received_total, s.bytes_received);
      assert.equal(m.switchboard_bytes_sent_total, s.bytes_sent);

      await a.say('metrics-room', 'more traffic');
      const m2 = parseMetrics((await api(server, 'GET', '/metrics')).text);
      assert.ok(m2.switchboard_messages_received_total > m.switchboard_messages_received_total);
      assert.ok(m2.switchboard_messages_sent_total > m.switchboard_messages_sent_total);
      assert.ok(m2.switchboard_bytes_sent_total > m.switchboard_bytes_sent_total);

      const head = await api(server, 'HEAD', '/metrics');
      assert.equal(head.status, 200);
      assert.equal(head.text, '');
    } finally {
      await a.close();
    }
  });
});

describe('/api without a key', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test("POST /api/broadcast exactly as seed 000's curl reaches every /ws client", async () => {
    const [a, b] = await connectMany(server, 2, 'bc');
    const raw = await wsConnect(server, '/ws/raw');
    try {
      await a.join('general');
      // b is in no room.
      const res = await api(server, 'POST', '/api/broadcast', {
        headers: { 'Content-Type': 'application/json' },
        raw: '{"message": "Hello everyone!"}',
      });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { status: 'sent', delivered: 2 });
      for (const x of [a, b]) {
        const m = await x.next('broadcast');
        assert.equal(m.content, 'Hello everyone!');
        assert.equal(m.from, 'server');
        assert.equal(m.nickname, 'server');
        assertTimestamp(m.timestamp);
      }
      // /ws/raw clients are not /ws clients: the relay of its own message
      // is the first thing the raw client gets.
      raw.send('raw ping', { binary: false });
      const r = await wsNext(raw, 5000, 'the raw relay');
      assert.equal(r.data.toString(), 'raw ping');
      assert.equal(raw.inbox.length, 0);
    } finally {
      await closeAll([a, b]);
      await wsClose(raw);
    }
  });

  test('POST /api/broadcast with a room stores a message to that room', async () => {
    const [a, b, late] = await connectMany(server, 3, 'bcr');
    try {
      await a.join('news');
      await b.join('elsewhere');
      const res = await api(server, 'POST', '/api/broadcast', { body: { message: 'room news', room: 'news' } });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { status: 'sent', delivered: 1 });
      const m = await a.next('message', { room: 'news' });
      assert.equal(m.content, 'room news');
      assert.equal(m.from, 'server');
      assert.equal(typeof m.id, 'number');
      await b.sync();
      b.assertNone('message');
      b.assertNone('broadcast');
      const { history } = await late.join('news');
      assert.deepEqual(history.messages, [m], 'it is stored');
    } finally {
      await closeAll([a, b, late]);
    }
  });

  test('POST /api/broadcast: unknown room 404, bad bodies 400, all with JSON errors', async () => {
    const expectJsonError = (res, status, code) => {
      assert.equal(res.status, status, res.text);
      assert.match(res.headers['content-type'], /^application\/json/);
      assert.equal(res.json.code, code);
      assert.equal(typeof res.json.error, 'string');
      assert.ok(res.json.error.length > 5);
    };
    expectJsonError(await api(server, 'POST', '/api/broadcast',
      { body: { message: 'x', room: 'no-such-room' } }), 404, 'room_not_found');
    expectJsonError(await api(server, 'POST', '/api/broadcast',
      { raw: '{"message": ', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
    expectJsonError(await api(server, 'POST', '/api/broadcast',
      { raw: 'Hello everyone!', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
    expectJsonError(await api(server, 'POST', '/api/broadcast', { body: ['Hello'] }), 400, 'invalid_json');
    expectJsonError(await api(server, 'POST', '/api/broadcast', { body: {} }), 400, 'missing_field');
    expectJsonError(await api(server, 'POST', '/api/broadcast', { body: { message: 5 } }), 400, 'missing_field');
    expectJsonError(await api(server, 'POST', '/api/rooms/general/messages', { body: {} }), 400, 'missing_field');
    expectJsonError(await api(server, 'GET', '/api/rooms/no-such-room/users'), 404, 'room_not_found');
  });

  test('GET /api/rooms and /api/rooms/{room}/users', async () => {
    const [a, b] = await connectMany(server, 2, 'rooms');
    try {
      await a.join('lobby', 'lobby-a');
      await b.join('lobby');
      await b.join('quiet');
      await a.say('lobby', 'one');
      await a.say('lobby', 'two');

      const res = await api(server, 'GET', '/api/rooms');
      assert.equal(res.status, 200);
      const rooms = Object.fromEntries(res.json.rooms.map((r) => [r.name, r]));
      assert.equal(rooms.lobby.members, 2);
      assert.equal(rooms.lobby.messages, 2);
      assertTimestamp(rooms.lobby.last_activity, 'last_activity');
      assert.equal(rooms.quiet.members, 1);
      assert.equal(rooms.quiet.messages, 0);

      const u = await api(server, 'GET', '/api/rooms/lobby/users');
      assert.equal(u.status, 200);
      assert.equal(u.json.room, 'lobby');
      const users = [...u.json.users].sort((x, y) => x.user_id.localeCompare(y.user_id));
      assert.deepEqual(users, [
        { user_id: a.id, nickname: 'lobby-a', connection_id: a.welcome.connection_id, status: 'online' },
        { user_id: b.id, nickname: b.id, connection_id: b.welcome.connection_id, status: 'online' },
      ].sort((x, y) => x.user_id.localeCompare(y.user_id)));

      b.send({ type: 'leave', room: 'lobby' });
      await a.next('user_left', { user_id: b.id });
      const u2 = await api(server, 'GET', '/api/rooms/lobby/users');
      assert.deepEqual(u2.json.users.map((x) => x.user_id), [a.id]);
      const r2 = await api(server, 'GET', '/api/rooms');
      assert.equal(r2.json.rooms.find((r) => r.name === 'lobby').members, 1);
    } finally {
      await closeAll([a, b]);
    }
  });

  test('POST /api/rooms/{room}/messages stores and sends a message from server: 201 with its id', async () => {
    const [a, b] = await connectMany(server, 2, 'post');
    try {
      await a.join('posts');
      await b.join('posts');
      const first = await a.say('posts', 'before');
      const res = await api(server, 'POST', '/api/rooms/posts/messages', {
        body: { content: 'from the API', nickname: 'bot', data: { k: [1, 2] }, metadata: { m: 'v' } },
      });
      assert.equal(res.status, 201, res.text);
      assert.deepEqual(res.json, { status: 'sent', id: first.id + 1, delivered: 2 });
      for (const x of [a, b]) {
        const m = await x.next('message', { id: res.json.id });
        assert.equal(m.room, 'posts');
        assert.equal(m.from, 'server');
        assert.equal(m.nickname, 'bot');
        assert.equal(m.content, 'from the API');
        assert.deepEqual(m.data, { k: [1, 2] });
        assert.deepEqual(m.metadata, { m: 'v' });
      }
      // Without nickname it is "server"; a room that does not exist is created.
      const res2 = await api(server, 'POST', '/api/rooms/brand-new/messages', { body: { content: 'first!' } });
      assert.equal(res2.status, 201, res2.text);
      assert.deepEqual(res2.json, { status: 'sent', id: 1, delivered: 0 });
      const { history } = await a.join('brand-new');
      assert.equal(history.messages.length, 1);
      assert.equal(history.messages[0].nickname, 'server');
      assert.equal(history.messages[0].content, 'first!');
      // Over --max-content: refused with a JSON error.
      const big = await api(server, 'POST', '/api/rooms/posts/messages', { body: { content: 'x'.repeat(4097) } });
      assert.ok(big.status >= 400 && big.status < 500, `status ${big.status}`);
      assert.equal(big.json.code, 'content_too_long');
    } finally {
      await closeAll([a, b]);
    }
  });

  test('a method a route does not take answers 405 with Allow', async () => {
    for (const [method, path, allow] of [
      ['GET', '/api/broadcast', /POST/],
      ['PUT', '/api/broadcast', /POST/],
      ['DELETE', '/api/rooms', /GET/],
      ['POST', '/api/rooms', /GET/],
      ['GET', '/api/rooms/general/messages', /POST/],
      ['POST', '/api/rooms/general/users', /GET/],
      ['PUT', '/api/rooms/general/messages', /POST/],
      ['POST', '/stats', /GET/],
      ['DELETE', '/metrics', /GET/],
    ]) {
      const res = await api(server, method, path, method === 'POST' ? { body: { message: 'x' } } : {});
      assert.equal(res.status, 405, `${method} ${path}: ${res.text}`);
      assert.match(res.headers.allow ?? '', allow, `${method} ${path}: Allow`);
    }
  });
});

describe('/api with --api-key and --rooms', () => {
  let server;
  const KEY = 's3cret-Key_42';
  before(async () => {
    server = await startHub(['--api-key', KEY, '--rooms', 'general,random']);
  });
  after(async () => {
    await server?.stop();
  });

  const calls = [
    ['POST', '/api/broadcast', { message: 'Hello everyone!' }],
    ['GET', '/api/rooms'],
    ['GET', '/api/rooms/general/users'],
    ['POST', '/api/rooms/general/messages', { content: 'hi' }],
  ];

  test('401 without the key or with a wrong one, with WWW-Authenticate and a JSON error', async () => {
    const a = await HubClient.connect(server, { label: 'keyed' });
    try {
      await a.join('general');
      for (const [method, path, body] of calls) {
        for (const auth of [undefined, 'Bearer wrong', `Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`,
          KEY, `Basic ${KEY}`, 'Bearer ']) {
          const headers = auth === undefined ? {} : { Authorization: auth };
          const res = await api(server, method, path, { body, headers });
          assert.equal(res.status, 401, `${method} ${path} with ${auth}: ${res.text}`);
          assert.match(res.headers['www-authenticate'] ?? '', /^Bearer/);
          assert.equal(res.json.code, 'unauthorized');
        }
      }
      // Nothing of it went through.
      await a.sync();
      a.assertNone('broadcast');
      a.assertNone('message');
      // The monitoring endpoints stay open.
      for (const path of ['/stats', '/status', '/metrics', '/health']) {
        assert.equal((await api(server, 'GET', path)).status, 200, path);
      }
    } finally {
      await a.close();
    }
  });

  test('200 (201) with Authorization: Bearer KEY', async () => {
    const a = await HubClient.connect(server, { label: 'keyed-ok' });
    try {
      await a.join('general');
      const headers = { Authorization: `Bearer ${KEY}` };
      for (const [method, path, body] of calls) {
        const res = await api(server, method, path, { body, headers });
        assert.equal(res.status, path.endsWith('/messages') ? 201 : 200, `${method} ${path}: ${res.text}`);
      }
      assert.equal((await a.next('broadcast')).content, 'Hello everyone!');
      assert.equal((await a.next('message', { room: 'general' })).content, 'hi');
      // Fixed rooms: the API does not create others.
      const res = await api(server, 'POST', '/api/rooms/lobby/messages', { body: { content: 'x' }, headers });
      assert.equal(res.status, 404);
      assert.equal(res.json.code, 'room_not_found');
      const rooms = await api(server, 'GET', '/api/rooms', { headers });
      assert.deepEqual(rooms.json.rooms.map((r) => r.name).sort(), ['general', 'random']);
    } finally {
      await a.close();
    }
  });
});
