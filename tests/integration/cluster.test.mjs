// cluster.test.mjs — three switchboard nodes as one through a real
// redis-server on a loopback port (issue 7, docs/cluster.md): one order and
// one set of ids on every node, events across nodes, a node killed with
// SIGKILL and its client recovering on another, Redis stopped and restarted;
// presence and counts for the whole cluster, a dead node's users forgotten.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { api, closeAll, HubClient } from './lib/hub.mjs';
import { start } from './lib/server.mjs';
import { freePort, withTimeout } from './lib/util.mjs';

// Starts redis-server on port, resolves once it accepts connections.
async function startRedis(port) {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  await withTimeout(new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d;
      if (/Ready to accept connections/.test(out)) resolve();
    });
    proc.on('error', reject);
    exited.then((code) => reject(new Error(`redis-server exited (${code}):\n${out}`)));
  }), 10000, 'redis-server ready');
  return { proc, exited, stop: async () => { if (proc.exitCode === null) proc.kill('SIGTERM'); await exited; } };
}

const CONNECTED = /redis: connected to/;

// Tokens name users, so that one user can be on two nodes at once (nodes
// started with AUTH, where every client needs one).
const SECRET = 'cluster-test-secret-of-some-length';
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
function token(sub) {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}

// The sorted user ids of a users list.
const AUTH = { SWITCHBOARD_AUTH_REQUIRED: '1', SWITCHBOARD_JWT_SECRET: SECRET };
const ids = (users) => users.map((u) => u.user_id).sort();

// Polls fn until it returns a truthy value, at most ms; the nodes forget a
// dead node on their own clock (its key's TTL), so there is no event to
// wait on from here.
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startNode(redisPort, env = {}) {
  const node = await start(['--engine', 'redis', '--redis-url', `redis://127.0.0.1:${redisPort}`,
    '--history-size', '50'], { env });
  await node.waitForLog(CONNECTED);
  return node;
}

// Collects n messages of room from c; returns [id, content] pairs.
async function collect(c, room, n) {
  const got = [];
  for (let i = 0; i < n; i++) {
    const m = await c.next('message', { room });
    got.push([m.id, m.content]);
  }
  return got;
}

describe('three nodes, one Redis', () => {
  let redis, redisPort;
  const nodes = [];
  const clients = [];
  const connect = async (node, label) => {
    const c = await HubClient.connect(node, { label });
    clients.push(c);
    return c;
  };

  before(async () => {
    redisPort = await freePort();
    redis = await startRedis(redisPort);
    for (let i = 0; i < 3; i++) nodes.push(await startNode(redisPort));
  });
  after(async () => {
    await closeAll(clients);
    for (const n of nodes) if (!n.killed) await n.stop();
    await redis?.stop();
  });

  test('clients on different nodes see the same messages, ids and order', async () => {
    const [a, b, c] = [await connect(nodes[0], 'a@1'), await connect(nodes[1], 'b@2'),
      await connect(nodes[2], 'c@3')];
    for (const x of [a, b, c]) await x.join('same');
    const senders = [a, b, c];
    for (let i = 0; i < 5; i++)
      for (const [k, s] of senders.entries()) s.send({ type: 'message', room: 'same', content: `n${k + 1}-${i}` });
    const seen = await Promise.all(senders.map((x) => collect(x, 'same', 15)));
    assert.deepEqual(seen[0].map(([id]) => id), Array.from({ length: 15 }, (_, i) => i + 1),
      'ids 1..15, in order, no gap, no double');
    assert.deepEqual(seen[1], seen[0], 'node 2 saw what node 1 saw');
    assert.deepEqual(seen[2], seen[0], 'node 3 saw what node 1 saw');
    for (const x of senders) {
      await x.sync();
      x.assertNone('message', { room: 'same' }, 'no message twice');
    }
  });

  test('typing, joins, direct messages and the HTTP broadcast cross nodes', async () => {
    const a = await connect(nodes[0], 'ta@1');
    const b = await connect(nodes[1], 'tb@2');
    await b.join('events');
    await a.join('events');
    const joined = await b.next('user_joined', { room: 'events', user_id: a.id });
    assert.equal(joined.room, 'events');
    a.send({ type: 'typing', room: 'events', typing: true });
    const t = await b.next('typing', { room: 'events', user_id: a.id });
    assert.equal(t.typing, true);
    a.send({ type: 'direct', to: b.id, content: 'psst' });
    const d = await b.next('direct', { from: a.id });
    assert.equal(d.content, 'psst');
    const c = await connect(nodes[2], 'tc@3');
    const res = await api(nodes[0], 'POST', '/api/broadcast', { body: { message: 'to all' } });
    assert.equal(res.status, 200);
    for (const x of [a, b, c]) {
      const m = await x.next('broadcast', { content: 'to all' });
      assert.equal(m.from, 'server');
    }
    await c.sync();
    c.assertNone('broadcast', { content: 'to all' }, 'the broadcast once per client');
  });

  test('a message burst from publishers on every node arrives everywhere in one order', async () => {
    const pubs = [];
    for (let i = 0; i < 6; i++) pubs.push(await connect(nodes[i % 3], `p${i}`));
    for (const p of pubs) await p.join('burst');
    const per = 30;
    for (let k = 0; k < per; k++) for (const [i, p] of pubs.entries()) p.send({ type: 'message', room: 'burst', content: `${i}:${k}` });
    const seen = await Promise.all(pubs.map((p) => collect(p, 'burst', per * pubs.length)));
    const ids = seen[0].map(([id]) => id);
    assert.deepEqual(ids, Array.from({ length: per * pubs.length }, (_, i) => i + 1));
    for (const s of seen.slice(1)) assert.deepEqual(s, seen[0], 'the same sequence on every subscriber');
    // Each publisher's own messages keep their order.
    for (let i = 0; i < pubs.length; i++) {
      const mine = seen[0].filter(([, c]) => c.startsWith(`${i}:`)).map(([, c]) => c);
      assert.deepEqual(mine, Array.from({ length: per }, (_, k) => `${i}:${k}`));
    }
  });

  test('a client of a node killed with SIGKILL recovers what it missed on another node', async () => {
    const victim = await startNode(redisPort);
    const a = await connect(nodes[0], 'ka@1');
    const w = await connect(nodes[1], 'kw@2'); // the room is already heard on node 2
    const x = await connect(victim, 'kx@victim');
    await a.join('recover');
    await w.join('recover');
    await x.join('recover', 'kx');
    for (const c of [a, w]) {
      await c.next('user_joined', { room: 'recover', user_id: x.id });
      await c.next('presence', { user_id: x.id, status: 'online' });
    }
    for (let i = 1; i <= 3; i++) await a.say('recover', `before${i}`);
    let last = (await collect(x, 'recover', 3)).at(-1)[0];
    victim.killed = true;
    victim.proc.kill('SIGKILL');
    await victim.exited;
    await x.closed;
    // The node that reaps the dead one (within its key's TTL, 6 s, and a
    // refresh, 2 s; 15 s is the guard) tells the rooms of its users, on
    // every surviving node: user_left with the count left, then presence
    // offline (kx was online nowhere else).
    for (const c of [a, w]) {
      const left = await c.next('user_left', { room: 'recover', user_id: x.id }, { ms: 15000 });
      assert.equal(left.nickname, 'kx');
      assert.equal(left.user_count, 2, 'the members left on every node');
      const off = await c.next('presence', { user_id: x.id }, { ms: 15000 });
      assert.equal(off.status, 'offline', 'presence offline after user_left');
      assert.equal(off.nickname, 'kx');
      assert.match(off.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    // Once across the cluster: a message sent after the reap comes after
    // anything any node announced for it.
    last = (await a.say('recover', 'mark')).id;
    await w.next('message', { room: 'recover', content: 'mark' });
    for (const c of [a, w]) {
      c.assertNone('user_left', { user_id: x.id }, 'one user_left, from one node');
      c.assertNone('presence', { user_id: x.id }, 'one presence offline, from one node');
    }
    for (let i = 1; i <= 3; i++) await a.say('recover', `missed${i}`);
    const y = await connect(nodes[1], 'ky@2');
    y.send({ type: 'join', room: 'recover', since: last });
    const h = await y.next('history', { room: 'recover' });
    assert.deepEqual(h.messages.map((m) => m.content), ['missed1', 'missed2', 'missed3'],
      'exactly what it missed, in order');
    assert.deepEqual(h.messages.map((m) => m.id), [last + 1, last + 2, last + 3]);
    await a.say('recover', 'after');
    const live = await y.next('message', { room: 'recover' });
    assert.equal(live.content, 'after');
    assert.equal(live.id, last + 4);
    await y.sync();
    y.assertNone('message', { room: 'recover' }, 'nothing twice');
  });

  test('presence, counts and user lists are the same on every node', async () => {
    const a = await connect(nodes[0], 'pa@1');
    const b = await connect(nodes[1], 'pb@2');
    const c = await connect(nodes[2], 'pc@3');
    assert.notEqual(a.id, b.id, 'user ids are unique across nodes');
    await a.join('pres', 'pa');
    const jb = await b.join('pres', 'pb');
    assert.equal(jb.joined.user_count, 2, 'user_count counts the members on every node');
    assert.equal((await a.next('user_joined', { room: 'pres', user_id: b.id })).user_count, 2);
    await a.next('presence', { user_id: b.id, status: 'online' });
    const jc = await c.join('pres', 'pc');
    assert.equal(jc.joined.user_count, 3);
    for (const x of [a, b]) {
      assert.equal((await x.next('user_joined', { room: 'pres', user_id: c.id })).user_count, 3);
    }
    const want = [a.id, b.id, c.id].sort();
    for (const x of [a, b, c]) {
      const u = await x.request({ type: 'users', room: 'pres' }, 'users', { room: 'pres' });
      assert.deepEqual(ids(u.users), want, `${x.label}: users lists every node's members`);
      assert.deepEqual(u.users.map((e) => e.nickname).sort(), ['pa', 'pb', 'pc']);
    }
    const stats = [];
    for (const n of nodes) {
      const rooms = await api(n, 'GET', '/api/rooms');
      assert.equal(rooms.json.rooms.find((r) => r.name === 'pres')?.members, 3, '/api/rooms counts every node');
      const users = await api(n, 'GET', '/api/rooms/pres/users');
      assert.deepEqual(ids(users.json.users), want, '/api/rooms/{room}/users lists every node');
      stats.push((await api(n, 'GET', '/stats')).json);
    }
    assert.ok(stats[0].unique_users >= 3);
    for (const s of stats) {
      assert.equal(s.unique_users, stats[0].unique_users, '/stats unique_users is the cluster');
      assert.equal(s.rooms, stats[0].rooms, '/stats rooms is the cluster');
    }
    // A room with members only on other nodes is found too.
    const d = await connect(nodes[2], 'pd@3');
    await d.join('elsewhere');
    const u = await a.request({ type: 'users', room: 'elsewhere' }, 'users', { room: 'elsewhere' });
    assert.deepEqual(ids(u.users), [d.id]);
    await c.close();
    for (const x of [a, b]) {
      assert.equal((await x.next('user_left', { room: 'pres', user_id: c.id })).user_count, 2);
      await x.next('presence', { user_id: c.id, status: 'offline' });
    }
  });

  test('a user on two nodes is online once and offline once', async () => {
    const auth = [await startNode(redisPort, AUTH), await startNode(redisPort, AUTH)];
    const as = async (node, sub, label) => {
      const c = await HubClient.connect(node, { path: `/ws?token=${token(sub)}`, label });
      clients.push(c);
      return c;
    };
    const w = await connect(nodes[2], 'tw@3');
    await w.join('two');
    const s1 = await as(auth[0], 'someone', 's1@a');
    const s1b = await as(auth[0], 'sam', 'sam1@a');
    const s2 = await as(auth[1], 'sam', 'sam2@b');
    assert.equal(s1b.id, 'sam');
    assert.equal(s2.id, 'sam');
    await s1b.join('two');
    assert.equal((await w.next('user_joined', { room: 'two', user_id: 'sam' })).user_count, 2);
    await w.next('presence', { user_id: 'sam', status: 'online' });
    s2.send({ type: 'join', room: 'two' });
    assert.equal((await w.next('user_joined', { room: 'two', user_id: 'sam' })).user_count, 3);
    // A message published after the join comes after anything the join
    // published: when it is here, a second presence would be too.
    await s1.join('two');
    await s2.say('two', 'mark1');
    await w.next('message', { room: 'two', content: 'mark1' });
    w.assertNone('presence', { user_id: 'sam' }, 'online once, though sam is on two nodes');
    const u = await w.request({ type: 'users', room: 'two' }, 'users', { room: 'two' });
    assert.deepEqual(ids(u.users), [s1.id, 'sam', w.id].sort(), 'sam listed once');
    await s1b.close();
    assert.equal((await w.next('user_left', { room: 'two', user_id: 'sam' })).user_count, 3);
    await s2.say('two', 'mark2');
    await w.next('message', { room: 'two', content: 'mark2' });
    w.assertNone('presence', { user_id: 'sam' }, 'not offline while on another node');
    await s2.close();
    await w.next('presence', { user_id: 'sam', status: 'offline' });
    await closeAll([s1, s2, s1b]);
    for (const n of auth) await n.stop();
  });

  test('direct to a user online nowhere is unknown_user; the HTTP post reports the cluster', async () => {
    const a = await connect(nodes[0], 'da@1');
    const b = await connect(nodes[1], 'db@2');
    await a.expectError({ type: 'direct', to: 'nobody-here', content: 'x' }, 'unknown_user');
    a.send({ type: 'direct', to: b.id, content: 'across' });
    assert.equal((await b.next('direct', { from: a.id })).content, 'across');
    await b.join('posted');
    await a.join('posted');
    await b.next('user_joined', { room: 'posted', user_id: a.id });
    const res = await api(nodes[2], 'POST', '/api/rooms/posted/messages', { body: { content: 'via http' } });
    assert.equal(res.status, 201);
    assert.equal(res.json.id, null, 'the id is given by Redis after the answer');
    assert.equal(res.json.delivered, 2, 'the members on every node');
    const ma = await a.next('message', { room: 'posted', content: 'via http' });
    const mb = await b.next('message', { room: 'posted', content: 'via http' });
    assert.equal(ma.id, mb.id);
    assert.ok(ma.id >= 1);
  });

  test('nicknames are unique across nodes; direct by nickname reaches another node', async () => {
    const a = await connect(nodes[0], 'na@1');
    const b = await connect(nodes[1], 'nb@2');
    const c = await connect(nodes[2], 'nc@3');
    await b.join('nicks');
    await c.join('nicks');
    await a.join('nicks', 'nadia');
    // A change reaches a node's copy before the join event it goes with.
    for (const x of [b, c]) {
      assert.equal((await x.next('user_joined', { room: 'nicks', user_id: a.id })).nickname, 'nadia');
    }
    await b.expectError({ type: 'join', room: 'other', nickname: 'nadia' }, 'nickname_taken');
    const u = await b.request({ type: 'users', room: 'nicks' }, 'users', { room: 'nicks' });
    assert.equal(u.users.find((e) => e.user_id === b.id).nickname, b.id, 'the refused join changed nothing');
    c.send({ type: 'direct', to: 'nadia', content: 'by nickname' });
    const d = await a.next('direct', { from: c.id });
    assert.equal(d.content, 'by nickname');
    assert.equal(d.to, a.id);
    assert.equal((await c.next('direct', { from: c.id })).to, a.id, 'the sender sees what it sent');
    // The user's last connection closed: the nickname is free on every node.
    await a.close();
    await b.next('user_left', { room: 'nicks', user_id: a.id });
    await c.next('user_left', { room: 'nicks', user_id: a.id });
    await c.expectError({ type: 'direct', to: 'nadia', content: 'x' }, 'unknown_user');
    const j = await b.join('nicks2', 'nadia');
    assert.equal(j.joined.nickname, 'nadia');
    // One nickname asked for on two nodes at once: Redis gives it to one.
    const p = await connect(nodes[0], 'np@1');
    const q = await connect(nodes[2], 'nq@3');
    for (const x of [p, q]) x.send({ type: 'join', room: 'race', nickname: 'racer' });
    const outcome = async (x) => {
      const m = await x.next(null, (e) => e.type === 'error' ||
        (e.type === 'user_joined' && e.user_id === x.id));
      return m.type === 'error' ? m.code : m.nickname;
    };
    const got = [await outcome(p), await outcome(q)].sort();
    assert.deepEqual(got, ['nickname_taken', 'racer'], 'exactly one of the two joins got it');
  });

  test('the users of a node killed with SIGKILL drop out of presence within the TTL', async () => {
    const victim = await startNode(redisPort);
    const a = await connect(nodes[0], 'ga@1');
    const v = await connect(victim, 'gv@victim');
    await a.join('ghost');
    await v.join('ghost');
    await a.next('user_joined', { room: 'ghost', user_id: v.id });
    const users = async (n) => ids((await api(n, 'GET', '/api/rooms/ghost/users')).json.users);
    assert.deepEqual(await users(nodes[1]), [a.id, v.id].sort());
    const before = (await api(nodes[1], 'GET', '/stats')).json.unique_users;
    victim.killed = true;
    victim.proc.kill('SIGKILL');
    await victim.exited;
    // TTL 6 s and a refresh every 2 s: gone within 8 s; 15 s is the guard.
    for (const n of nodes) {
      await until(async () => (await users(n)).length === 1, 15000, 'the dead node\'s user is forgotten');
      assert.deepEqual(await users(n), [a.id]);
    }
    const rooms = (await api(nodes[2], 'GET', '/api/rooms')).json.rooms;
    assert.equal(rooms.find((r) => r.name === 'ghost').members, 1);
    // (Another test's dead node may be forgotten meanwhile: compare nodes.)
    const after = [];
    for (const n of nodes) after.push((await api(n, 'GET', '/stats')).json.unique_users);
    assert.ok(after[0] < before, 'unique_users lost the dead node\'s user');
    assert.deepEqual(after, [after[0], after[0], after[0]]);
    await a.expectError({ type: 'direct', to: v.id, content: 'x' }, 'unknown_user');
  });

  test('Redis stopped and restarted: local delivery goes on, cross-node delivery resumes', async () => {
    const a1 = await connect(nodes[0], 'ra1@1');
    const a2 = await connect(nodes[0], 'ra2@1');
    const b = await connect(nodes[1], 'rb@2');
    for (const x of [a1, a2, b]) await x.join('outage');
    await a1.say('outage', 'up');
    await b.next('message', { room: 'outage', content: 'up' });

    const marks = nodes.map((n) => n.logMark());
    await redis.stop();
    await Promise.all(nodes.map((n, i) => n.waitForLog(/redis: lost the connection/, { from: marks[i] })));
    for (const n of nodes) {
      const health = await api(n, 'GET', '/health');
      assert.equal(health.json.status, 'degraded', '/health says degraded while Redis is away');
      assert.equal(health.json.engine, 'redis');
      assert.match((await api(n, 'GET', '/metrics')).text, /^switchboard_engine_degraded 1$/m);
    }
    a1.send({ type: 'message', room: 'outage', content: 'while down' });
    const local = await a2.next('message', { room: 'outage', content: 'while down' });
    assert.equal(local.from, a1.id, 'members on the same node still get each other');
    a1.send({ type: 'typing', room: 'outage', typing: true });
    await a2.next('typing', { room: 'outage', user_id: a1.id });

    const back = nodes.map((n) => n.logMark());
    redis = await startRedis(redisPort);
    await Promise.all(nodes.map((n, i) => n.waitForLog(CONNECTED, { from: back[i], ms: 15000 })));
    for (const n of nodes) assert.equal((await api(n, 'GET', '/health')).json.status, 'ok');
    // Rooms are subscribed again with the connection. A join's history is
    // read only once the room is heard on that node, so a joiner on node 2
    // getting its history says node 2 listens again.
    const b2 = await connect(nodes[1], 'rb2@2');
    await b2.join('outage');
    await a1.say('outage', 'back');
    const m = await b.next('message', { room: 'outage', content: 'back' });
    assert.equal(m.from, a1.id, 'cross-node delivery resumed without restarting a node');
    // Redis came back empty: every node registers its members again, and
    // presence answers for the cluster once more.
    const want = [a1.id, a2.id, b.id, b2.id].sort();
    await until(async () => {
      const u = await b.request({ type: 'users', room: 'outage' }, 'users', { room: 'outage' });
      return JSON.stringify(ids(u.users)) === JSON.stringify(want);
    }, 10000, 'the users of every node listed again after Redis returned');
  });
});
