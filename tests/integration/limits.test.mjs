// limits.test.mjs — the limits that keep one client from hurting the others
// (docs/protocol.md "Limits", docs/api.md): connections in total (503) and per
// client address (429) before the upgrade, counted across /ws, /ws/raw and
// /echo and released on close; rooms per connection and in total; the room
// name length; the per-connection rate limits (messages and bytes, token
// bucket): `error` rate_limited and, after rate_strikes of them, close 1008.
// Each limit is hit and its exact answer checked, and the counters in
// /metrics and /stats.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { api, closeAll, HubClient, WAIT_MS } from './lib/hub.mjs';
import { start } from './lib/server.mjs';
import { withTimeout } from './lib/util.mjs';
import { wsUpgrade } from './lib/http.mjs';

// An open `ws` client on path from localAddress.
async function open(server, path, localAddress = '127.0.0.1') {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}${path}`, {
    localAddress,
    perMessageDeflate: false,
  });
  ws.closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), WAIT_MS, `open ${path} from ${localAddress}`);
  return ws;
}

// Waits (on the server's own count, asked again after each answer) until it
// has n WebSocket connections: a closed client is released by then.
async function untilConnections(server, n) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    last = (await api(server, 'GET', '/stats')).json.connections;
    if (last === n) return;
    assert.ok(Date.now() < deadline, `the server still has ${last} connections, not ${n}`);
  }
}

async function metrics(server) {
  const res = await api(server, 'GET', '/metrics');
  assert.equal(res.status, 200);
  return (name) => {
    const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const m = new RegExp(`^${esc} (\\d+)$`, 'm').exec(res.text);
    assert.ok(m, `/metrics has ${name}`);
    return Number(m[1]);
  };
}

describe('max_connections 3 and max_connections_per_ip 2', () => {
  let server;
  const open_ = [];
  before(async () => {
    server = await start([], {
      env: { SWITCHBOARD_MAX_CONNECTIONS: '3', SWITCHBOARD_MAX_CONNECTIONS_PER_IP: '2' },
    });
  });
  after(async () => {
    for (const ws of open_) ws.terminate();
    await server?.stop();
  });

  test('429 past the per-address limit, 503 past the total; each route counts', async () => {
    open_.push(await open(server, '/ws', '127.0.0.1'));
    open_.push(await open(server, '/echo', '127.0.0.1'));
    const perIp = await wsUpgrade(server, '/ws/raw', { localAddress: '127.0.0.1' });
    assert.equal(perIp.status, 429, 'a third connection from 127.0.0.1');
    assert.match(perIp.body, /^429 Too Many Requests: this address already has 2 WebSocket connections.*max_connections_per_ip/);
    // Another address has its own count.
    open_.push(await open(server, '/ws/raw', '127.0.0.2'));
    const total = await wsUpgrade(server, '/ws', { localAddress: '127.0.0.3' });
    assert.equal(total.status, 503, 'a fourth connection in total');
    assert.match(total.body, /^503 Service Unavailable: .*max_connections/);
    // HTTP requests are not WebSocket connections: they still get answers.
    assert.equal((await api(server, 'GET', '/health')).status, 200);
    const m = await metrics(server);
    assert.equal(m('switchboard_upgrades_refused_total{reason="max_connections_per_ip"}'), 1);
    assert.equal(m('switchboard_upgrades_refused_total{reason="max_connections"}'), 1);
    const stats = (await api(server, 'GET', '/stats')).json;
    assert.equal(stats.upgrades_refused_max_connections_per_ip, 1);
    assert.equal(stats.upgrades_refused_max_connections, 1);
  });

  test('a closed connection frees its place, in the total and for its address', async () => {
    // A close handshake from 127.0.0.1's /echo client.
    const echo = open_.splice(1, 1)[0];
    echo.close(1000);
    await withTimeout(echo.closed, WAIT_MS, 'close');
    await untilConnections(server, 2);
    open_.push(await open(server, '/ws/raw', '127.0.0.1'));
    // A connection dropped without a close handshake frees its place too.
    const dropped = open_.splice(1, 1)[0]; // 127.0.0.2's
    dropped.terminate();
    await untilConnections(server, 2);
    assert.equal((await wsUpgrade(server, '/echo', { localAddress: '127.0.0.1' })).status, 429, '127.0.0.1 is full again');
    open_.push(await open(server, '/echo', '127.0.0.2'));
    assert.equal((await wsUpgrade(server, '/echo', { localAddress: '127.0.0.3' })).status, 503, 'the total is reached again');
  });
});

describe('max_rooms_per_conn 2, max_rooms 3, max_room_name 8', () => {
  let server;
  let a;
  let b;
  before(async () => {
    server = await start([], {
      env: {
        SWITCHBOARD_MAX_ROOMS_PER_CONN: '2',
        SWITCHBOARD_MAX_ROOMS: '3',
        SWITCHBOARD_MAX_ROOM_NAME: '8',
      },
    });
    a = await HubClient.connect(server, { label: 'a' });
    b = await HubClient.connect(server, { label: 'b' });
  });
  after(async () => {
    await closeAll([a, b]);
    await server?.stop();
  });

  const roomNames = async () => (await api(server, 'GET', '/api/rooms')).json.rooms.map((r) => r.name).sort();

  test('a room name longer than max_room_name is invalid_room, and the text says the limit', async () => {
    await a.join('abcdefgh');
    const e = await a.expectError({ type: 'join', room: 'abcdefghi' }, 'invalid_room');
    assert.match(e.error, /1 to 8 /);
    await a.expectError({ type: 'history', room: 'abcdefghi' }, 'invalid_room');
    const post = await api(server, 'POST', '/api/rooms/abcdefghi/messages', { body: { content: 'x' } });
    assert.equal(post.status, 404, 'the API creates no room with a name over the limit');
    assert.deepEqual(await roomNames(), ['abcdefgh']);
  });

  test('too_many_rooms past max_rooms_per_conn; leaving makes room', async () => {
    await a.join('r2');
    const e = await a.expectError({ type: 'join', room: 'r3' }, 'too_many_rooms');
    assert.match(e.error, /max_rooms_per_conn/);
    assert.deepEqual(await roomNames(), ['abcdefgh', 'r2'], 'the refused join created no room');
    // Joining a room it is already in is not a new room.
    a.send({ type: 'join', room: 'r2' });
    await a.next('history', { room: 'r2' });
    a.send({ type: 'leave', room: 'r2' });
    await a.next('user_left', { room: 'r2' });
    await a.join('r3');
  });

  test('room_limit past max_rooms, over the protocol and the API; existing rooms still join', async () => {
    const e = await b.expectError({ type: 'join', room: 'r4' }, 'room_limit');
    assert.match(e.error, /max_rooms/);
    await b.join('r2');
    const post = await api(server, 'POST', '/api/rooms/r5/messages', { body: { content: 'x' } });
    assert.equal(post.status, 403);
    assert.equal(post.json.code, 'room_limit');
    assert.equal((await api(server, 'POST', '/api/rooms/r2/messages', { body: { content: 'ok' } })).status, 201);
    await b.next('message', { room: 'r2', content: 'ok' });
    assert.deepEqual(await roomNames(), ['abcdefgh', 'r2', 'r3']);
    const m = await metrics(server);
    assert.equal(m('switchboard_requests_refused_total{reason="too_many_rooms"}'), 1);
    assert.equal(m('switchboard_requests_refused_total{reason="room_limit"}'), 2);
    const stats = (await api(server, 'GET', '/stats')).json;
    assert.equal(stats.requests_refused_forbidden, 0);
    assert.equal(stats.requests_refused_too_many_rooms, 1);
    assert.equal(stats.requests_refused_room_limit, 2);
  });
});

describe('rate_messages 1, rate_burst 3, rate_strikes 3', () => {
  let server;
  before(async () => {
    server = await start([], {
      env: {
        SWITCHBOARD_RATE_MESSAGES: '1',
        SWITCHBOARD_RATE_BURST: '3',
        SWITCHBOARD_RATE_STRIKES: '3',
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('a burst: 3 handled, then rate_limited errors, the third closes with 1008', async () => {
    const c = await HubClient.connect(server, { label: 'flood' });
    const calm = await HubClient.connect(server, { label: 'calm' });
    for (let i = 0; i < 10; i++) c.send({ type: 'ping' });
    const { code, reason } = await withTimeout(c.closed, WAIT_MS, 'close 1008');
    assert.equal(code, 1008);
    assert.match(reason, /rate limit/);
    const got = c.drain();
    assert.deepEqual(got.map((m) => m.type),
      ['pong', 'pong', 'pong', 'error', 'error', 'error'],
      'the burst is handled, the next three are refused, the rest dropped after the close');
    got.slice(3).forEach((e, i) => {
      assert.equal(e.code, 'rate_limited');
      assert.match(e.error, new RegExp(`rate_limited ${i + 1} of 3`));
    });
    // Another connection has its own bucket.
    await calm.sync();
    await calm.close();
    const m = await metrics(server);
    assert.equal(m('switchboard_rate_limited_total'), 3);
    assert.equal(m('switchboard_rate_limit_closes_total'), 1);
  });

  test('/ws/raw is limited too: over the burst, the relay gets nothing and the sender an error', async () => {
    const sender = await open(server, '/ws/raw');
    const listener = await open(server, '/ws/raw');
    const heard = [];
    const said = [];
    listener.on('message', (d) => heard.push(d.toString()));
    sender.on('message', (d) => said.push(d.toString()));
    const errors = new Promise((resolve) => {
      sender.on('message', () => {
        if (said.filter((s) => s.startsWith('{"type":"error"')).length === 2) resolve();
      });
    });
    for (let i = 1; i <= 5; i++) sender.send(`m${i}`);
    await withTimeout(errors, WAIT_MS, 'two rate_limited errors');
    assert.deepEqual(said.filter((s) => !s.startsWith('{')), ['m1', 'm2', 'm3']);
    assert.equal(JSON.parse(said.find((s) => s.startsWith('{'))).code, 'rate_limited');
    // The listener got the three relayed messages and nothing else: its own
    // message, relayed back after them, shows nothing else is on the way.
    const synced = new Promise((resolve) => {
      listener.on('message', (d) => d.toString() === 'sync' && resolve());
    });
    listener.send('sync');
    await withTimeout(synced, WAIT_MS, 'the listener\'s own message back');
    assert.deepEqual(heard, ['m1', 'm2', 'm3', 'sync']);
    assert.equal(sender.readyState, WebSocket.OPEN, 'two strikes of three: still open');
    const m = await metrics(server);
    assert.equal(m('switchboard_rate_limited_total'), 5);
    sender.terminate();
    listener.terminate();
  });
});

describe('rate_bytes 1000 (a bucket of two seconds\' worth)', () => {
  let server;
  before(async () => {
    server = await start([], { env: { SWITCHBOARD_RATE_BYTES: '1000' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('bytes past the bucket are refused with rate_limited; the connection stays', async () => {
    const c = await HubClient.connect(server);
    const big = JSON.stringify({ type: 'ping', pad: 'x'.repeat(1500 - 24) });
    assert.equal(Buffer.byteLength(big), 1500);
    c.send(big); // 2000 -> 500
    c.send(big); // 500 > 0: passes, -> -1000
    c.send(big); // refused
    await c.next('pong');
    await c.next('pong');
    const e = await c.next('error');
    assert.equal(e.code, 'rate_limited');
    assert.ok(c.open);
    assert.equal((await metrics(server))('switchboard_rate_limited_total'), 1);
    await c.close();
  });
});
