// hub-chat.test.mjs — the JSON protocol at /ws (docs/protocol.md): the
// greeting, join and leave with their events, room messages with ids,
// broadcast, typing, the user list, direct messages and ping, each checked
// at every client that must (and must not) see it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  assertTimestamp, closeAll, connectMany, HubClient, startHub, uniqueNick,
} from './lib/hub.mjs';

let roomSeq = 0;
const freshRoom = (base = 'room') => `${base}-${++roomSeq}`;

describe('on connect', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('welcome has connection_id, user_id and server_time; a system welcome follows', async () => {
    const [a, b] = await connectMany(server, 2, 'greet');
    try {
      for (const c of [a, b]) {
        assert.deepEqual(Object.keys(c.welcome).sort(),
          ['connection_id', 'server_time', 'type', 'user_id']);
        assert.equal(typeof c.welcome.connection_id, 'string');
        assert.ok(c.welcome.connection_id.length > 0);
        assert.equal(c.welcome.user_id, c.welcome.connection_id,
          'in anonymous mode the user id is the connection id');
        assertTimestamp(c.welcome.server_time, 'server_time');
        assert.equal(c.system.type, 'system');
        assert.match(c.system.content, /join/i, 'the system message tells how to join');
        assertTimestamp(c.system.timestamp, 'system timestamp');
        // The welcome and the system message come first, in that order.
        assert.deepEqual(c.received.slice(0, 2).map((m) => m.type), ['welcome', 'system']);
      }
      assert.notEqual(a.welcome.connection_id, b.welcome.connection_id,
        'every connection gets its own id');
    } finally {
      await closeAll([a, b]);
    }
  });
});

describe('join and leave', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('join with a nickname: user_joined and presence to every member, history to the joiner', async () => {
    // The default room is general; this server's general is empty so far.
    const [a, b, out] = await connectMany(server, 3, 'j');
    try {
      a.send({ type: 'join', nickname: 'alice' });
      const aj = await a.next('user_joined');
      assert.deepEqual({ ...aj, timestamp: undefined }, {
        type: 'user_joined', room: 'general', nickname: 'alice', user_id: a.id, user_count: 1,
        timestamp: undefined,
      });
      assertTimestamp(aj.timestamp);
      const ap = await a.next('presence');
      assert.deepEqual({ ...ap, timestamp: undefined }, {
        type: 'presence', user_id: a.id, nickname: 'alice', status: 'online', timestamp: undefined,
      });
      assertTimestamp(ap.timestamp);
      const ah = await a.next('history');
      assert.deepEqual(ah, { type: 'history', room: 'general', messages: [] });
      assert.deepEqual(a.received.slice(2).map((m) => m.type),
        ['user_joined', 'presence', 'history'], 'the joiner gets user_joined, presence, history in order');

      b.send({ type: 'join', room: 'general', nickname: 'bob' });
      for (const c of [a, b]) {
        const j = await c.next('user_joined');
        assert.equal(j.room, 'general');
        assert.equal(j.nickname, 'bob');
        assert.equal(j.user_id, b.id);
        assert.equal(j.user_count, 2, `${c.label} sees the new count`);
        const p = await c.next('presence');
        assert.equal(p.user_id, b.id);
        assert.equal(p.nickname, 'bob');
        assert.equal(p.status, 'online');
      }
      await b.next('history', { room: 'general' });
      // A client in no room hears nothing of it; a, already in, gets no history.
      await out.sync();
      out.assertNone('user_joined');
      out.assertNone('presence');
      await a.sync();
      a.assertNone('history');
    } finally {
      await closeAll([a, b, out]);
    }
  });

  test('join_room with room_id and name is the same as join with room and nickname', async () => {
    const room = freshRoom('spell');
    const [a, b] = await connectMany(server, 2, 'sp');
    try {
      const nick = uniqueNick('carol');
      await a.join(room, uniqueNick('dave'));
      b.send({ type: 'join_room', room_id: room, name: nick });
      for (const c of [a, b]) {
        const j = await c.next('user_joined', { room });
        assert.equal(j.nickname, nick);
        assert.equal(j.user_id, b.id);
        assert.equal(j.user_count, 2);
      }
      const h = await b.next('history');
      assert.equal(h.room, room);
    } finally {
      await closeAll([a, b]);
    }
  });

  test('joining a room you are in only resends history', async () => {
    const room = freshRoom('again');
    const [a, b] = await connectMany(server, 2, 'ag');
    try {
      await a.join(room);
      await b.join(room);
      await a.next('user_joined', { user_id: b.id });
      await a.next('presence', { user_id: b.id });
      b.send({ type: 'join', room });
      const h = await b.next('history');
      assert.equal(h.room, room);
      await a.sync();
      await b.sync();
      for (const c of [a, b]) {
        c.assertNone('user_joined');
        c.assertNone('presence');
      }
      const users = await a.request({ type: 'users', room }, 'users');
      assert.equal(users.users.length, 2, 'still two members');
    } finally {
      await closeAll([a, b]);
    }
  });

  test('leave and leave_room: user_left with the new count to the rest and to the leaver', async () => {
    const room = freshRoom('leave');
    const [a, b, c] = await connectMany(server, 3, 'lv');
    try {
      await a.join(room, uniqueNick('la'));
      await b.join(room, uniqueNick('lb'));
      await c.join(room);
      await a.next('user_joined', { user_id: c.id, user_count: 3 });

      c.send({ type: 'leave', room });
      for (const x of [a, b, c]) {
        const l = await x.next('user_left', { user_id: c.id });
        assert.equal(l.room, room);
        assert.equal(l.nickname, c.id, 'without a nickname the display name is the user id');
        assert.equal(l.user_count, 2, `${x.label} sees 2 left`);
        assertTimestamp(l.timestamp);
      }

      b.send({ type: 'leave_room', room_id: room });
      for (const x of [a, b]) {
        const l = await x.next('user_left', { user_id: b.id });
        assert.equal(l.nickname, b.nickname);
        assert.equal(l.user_count, 1);
      }
      await c.sync();
      c.assertNone('user_left', null, 'a client that left hears no more leaves of the room');

      // Those who left get no more of the room's messages.
      const m = await a.say(room, 'only a is here');
      assert.equal(m.room, room);
      await b.sync();
      await c.sync();
      b.assertNone('message');
      c.assertNone('message');
    } finally {
      await closeAll([a, b, c]);
    }
  });

  test('leave without a room leaves general', async () => {
    const s = await startHub();
    const [a, b] = await connectMany(s, 2, 'lg');
    try {
      await a.join();
      await b.join();
      b.send({ type: 'leave' });
      for (const x of [a, b]) {
        const l = await x.next('user_left', { user_id: b.id });
        assert.equal(l.room, 'general');
        assert.equal(l.user_count, 1);
      }
    } finally {
      await closeAll([a, b]);
      await s.stop();
    }
  });

  test('a closed connection leaves its rooms: user_left and presence offline to their members only', async () => {
    const r1 = freshRoom('gone');
    const r2 = freshRoom('gone');
    const [a, b, x, out] = await connectMany(server, 4, 'gc');
    try {
      const nick = uniqueNick('leaver');
      await x.join(r1, nick);
      await x.join(r2);
      await a.join(r1);
      await b.join(r2);

      await x.close();
      for (const [c, room] of [[a, r1], [b, r2]]) {
        const l = await c.next('user_left', { user_id: x.id });
        assert.equal(l.room, room);
        assert.equal(l.nickname, nick);
        assert.equal(l.user_count, 1, `${c.label}: only it is left in ${room}`);
        const p = await c.next('presence', { user_id: x.id, status: 'offline' });
        assert.equal(p.nickname, nick);
        assertTimestamp(p.timestamp);
      }
      // An abrupt end (no close handshake) is a close too.
      const y = await HubClient.connect(server, { label: 'abrupt' });
      await y.join(r1);
      await a.next('user_joined', { user_id: y.id });
      await y.terminate();
      const l = await a.next('user_left', { user_id: y.id });
      assert.equal(l.user_count, 1);
      await a.next('presence', { user_id: y.id, status: 'offline' });

      // Presence goes to the rooms of the user, not to every client.
      await out.sync();
      out.assertNone('user_left');
      out.assertNone('presence');
    } finally {
      await closeAll([a, b, out]);
    }
  });
});

describe('messages', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('a message goes to every member, the sender included, with per-room increasing ids', async () => {
    const room = freshRoom('talk');
    const other = freshRoom('talk');
    const [a, b, c, out] = await connectMany(server, 4, 'm');
    try {
      const na = uniqueNick('ann');
      await a.join(room, na);
      await b.join(room);
      await c.join(room);
      await out.join(other);

      const sent = [];
      for (let i = 0; i < 5; i++) {
        const sender = [a, b, c][i % 3];
        sender.send({ type: 'message', room, content: `hello ${i}` });
        sent.push(sender);
      }
      const seen = {};
      for (const x of [a, b, c]) {
        seen[x.label] = [];
        for (let i = 0; i < 5; i++) {
          const m = await x.next('message', { room });
          seen[x.label].push(m);
        }
      }
      // Connections are not ordered against each other, but every member
      // sees the same sequence, in id order, and each sender's messages in
      // the order it sent them.
      const first = seen[a.label];
      for (let i = 0; i < 5; i++) {
        const m = first[i];
        const k = Number(/^hello (\d)$/.exec(m.content)[1]);
        assert.equal(m.room, room);
        assert.equal(m.from, sent[k].id);
        assert.equal(m.nickname, sent[k] === a ? na : sent[k].id);
        assertTimestamp(m.timestamp);
        assert.equal(typeof m.id, 'number');
        if (i) assert.ok(m.id > first[i - 1].id, `ids strictly increase: ${first[i - 1].id} < ${m.id}`);
      }
      assert.deepEqual(first.map((m) => m.content).sort(), [0, 1, 2, 3, 4].map((i) => `hello ${i}`));
      for (const x of [a, b, c]) {
        const own = first.filter((m) => m.from === x.id).map((m) => m.content);
        assert.deepEqual(own, [...own].sort(), `${x.label}'s messages in the order it sent them`);
      }
      assert.equal(first[0].id, 1, 'a new room starts at id 1');
      for (const x of [b, c]) assert.deepEqual(seen[x.label], first, `${x.label} gets the same messages`);

      // Ids are per room: another room starts over.
      const m = await out.say(other, 'elsewhere');
      assert.equal(m.id, 1);

      // Non-members get none of it.
      await out.sync();
      out.assertNone('message', { room });
      for (const x of [a, b, c]) {
        await x.sync();
        x.assertNone('message', { room: other });
      }
    } finally {
      await closeAll([a, b, c, out]);
    }
  });

  test('message (the field) spells content; data and metadata are relayed unchanged', async () => {
    const room = freshRoom('data');
    const [a, b] = await connectMany(server, 2, 'd');
    try {
      await a.join(room);
      await b.join(room);
      const data = {
        n: 42, f: -1.5, t: true, nil: null, s: 'üñí©ødé ✓ 𝄞', arr: [1, 'two', { three: [3] }],
        nested: { deep: { deeper: { deepest: 'x' } } },
      };
      const metadata = { k: 'v', tags: ['a', 'b'] };
      a.send({ type: 'message', room, message: 'spelled message', data, metadata });
      for (const x of [a, b]) {
        const m = await x.next('message', { room });
        assert.equal(m.content, 'spelled message');
        assert.deepEqual(m.data, data, 'data is relayed unchanged');
        assert.deepEqual(m.metadata, metadata, 'metadata is relayed unchanged');
      }
      // data alone, of any JSON type, makes a message.
      for (const d of [[1, 2, 3], 'just a string', 0, false]) {
        a.send({ type: 'message', room, data: d });
        for (const x of [a, b]) {
          const m = await x.next('message', { room });
          assert.deepEqual(m.data, d);
          assert.equal(m.content, undefined);
        }
      }
    } finally {
      await closeAll([a, b]);
    }
  });

  test('fields the message does not need are ignored: a client timestamp, a forged from', async () => {
    const room = freshRoom('extra');
    const [a, b] = await connectMany(server, 2, 'x');
    try {
      await a.join(room);
      await b.join(room);
      a.send({
        type: 'message', room, content: 'mine', timestamp: '2024-01-01T12:00:00Z',
        from: 'someone-else', id: 999, nickname: 'impostor', sender: 7,
      });
      const m = await b.next('message', { room });
      assert.equal(m.content, 'mine');
      assert.equal(m.from, a.id, 'from is the sender, not what the client claims');
      assert.equal(m.nickname, a.id);
      assert.notEqual(m.id, 999, 'the server numbers messages');
      assertTimestamp(m.timestamp, 'the server timestamp');
      assert.notEqual(m.timestamp, '2024-01-01T12:00:00Z');
      assert.equal(m.sender, undefined, 'unknown fields are not relayed');
    } finally {
      await closeAll([a, b]);
    }
  });

  test('a message without a room goes to general', async () => {
    const [a, b] = await connectMany(server, 2, 'dg');
    try {
      await a.join();
      await b.join();
      a.send({ type: 'message', content: 'to the default room' });
      const m = await b.next('message', { content: 'to the default room' });
      assert.equal(m.room, 'general');
    } finally {
      await closeAll([a, b]);
    }
  });
});

describe('broadcast, typing, users, direct, ping', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('broadcast reaches every /ws client, the sender and clients in no room included', async () => {
    const room = freshRoom('bc');
    const [a, b, c] = await connectMany(server, 3, 'bc');
    try {
      const nick = uniqueNick('announcer');
      await a.join(room, nick);
      await b.join(freshRoom('bc'));
      // c is in no room.
      a.send({ type: 'broadcast', content: 'Announcement', data: { level: 'info' } });
      for (const x of [a, b, c]) {
        const m = await x.next('broadcast');
        assert.equal(m.content, 'Announcement');
        assert.equal(m.from, a.id);
        assert.equal(m.nickname, nick);
        assert.deepEqual(m.data, { level: 'info' });
        assertTimestamp(m.timestamp);
        assert.equal(m.room, undefined, 'a broadcast belongs to no room');
      }
      // The message spelling works for broadcast too.
      c.send({ type: 'broadcast', message: 'from c' });
      for (const x of [a, b, c]) assert.equal((await x.next('broadcast')).from, c.id);
    } finally {
      await closeAll([a, b, c]);
    }
  });

  test('typing goes to every member but the sender, with typing or data (seed 003) as the flag', async () => {
    const room = freshRoom('typing');
    const [a, b, c, out] = await connectMany(server, 4, 't');
    try {
      const nick = uniqueNick('typist');
      await a.join(room, nick);
      await b.join(room);
      await c.join(room);
      await out.join(freshRoom('typing'));

      const cases = [
        [{ typing: true }, true],
        [{ typing: false }, false],
        [{ data: true }, true],
        [{ data: false }, false],
      ];
      for (const [flag, expected] of cases) {
        a.send({ type: 'typing', room, ...flag });
        for (const x of [b, c]) {
          const t = await x.next('typing');
          assert.deepEqual(t, { type: 'typing', room, user_id: a.id, nickname: nick, typing: expected },
            `typing for ${JSON.stringify(flag)}`);
        }
      }
      // room_id spelling, from another member.
      b.send({ type: 'typing', room_id: room, typing: true });
      assert.equal((await a.next('typing')).user_id, b.id);
      assert.equal((await c.next('typing')).user_id, b.id);

      for (const x of [a, b, out]) await x.sync();
      a.assertNone('typing', { user_id: a.id }, 'the sender never gets its own typing');
      b.assertNone('typing', { user_id: b.id }, 'the sender never gets its own typing');
      out.assertNone('typing', null, 'a non-member gets no typing');
    } finally {
      await closeAll([a, b, c, out]);
    }
  });

  test('users lists the members of a room with nickname and status', async () => {
    const room = freshRoom('users');
    const [a, b, c] = await connectMany(server, 3, 'us');
    try {
      const na = uniqueNick('uma');
      const nb = uniqueNick('ubo');
      await a.join(room, na);
      await b.join(room, nb);
      await c.join(room); // anonymous: its nickname is its user id
      const res = await c.request({ type: 'users', room }, 'users');
      assert.equal(res.room, room);
      const byId = (u) => [...u].sort((x, y) => x.user_id.localeCompare(y.user_id));
      assert.deepEqual(byId(res.users), byId([
        { user_id: a.id, nickname: na, status: 'online' },
        { user_id: b.id, nickname: nb, status: 'online' },
        { user_id: c.id, nickname: c.id, status: 'online' },
      ]));
      // room_id spelling; after a leave the list is shorter.
      b.send({ type: 'leave', room });
      await a.next('user_left', { user_id: b.id });
      const res2 = await a.request({ type: 'users', room_id: room }, 'users');
      assert.deepEqual(res2.users.map((u) => u.user_id).sort(), [a.id, c.id].sort());
      // A client need not be a member to ask.
      const res3 = await b.request({ type: 'users', room }, 'users');
      assert.equal(res3.users.length, 2);
    } finally {
      await closeAll([a, b, c]);
    }
  });

  test('direct by nickname and by user id reaches the target; the sender gets its copy', async () => {
    const [a, b, c] = await connectMany(server, 3, 'dm');
    try {
      const na = uniqueNick('sender');
      const nb = uniqueNick('target');
      // Nicknames are set by join.
      await a.join(freshRoom('dm'), na);
      await b.join(freshRoom('dm'), nb);

      a.send({ type: 'direct', to: nb, content: 'psst', data: { secret: 1 } });
      for (const x of [b, a]) {
        const d = await x.next('direct');
        assert.equal(d.from, a.id);
        assert.equal(d.nickname, na);
        assert.equal(d.to, b.id, 'to is resolved to the user id');
        assert.equal(d.content, 'psst');
        assert.deepEqual(d.data, { secret: 1 });
        assertTimestamp(d.timestamp);
      }
      // By user id, to an anonymous user, with the message spelling.
      b.send({ type: 'direct', to: c.id, message: 'hello c' });
      for (const x of [c, b]) {
        const d = await x.next('direct');
        assert.equal(d.from, b.id);
        assert.equal(d.to, c.id);
        assert.equal(d.content, 'hello c');
      }
      // Nobody else sees them.
      await a.sync();
      a.assertNone('direct');
      await c.sync();
      c.assertNone('direct');
      // To oneself: one copy.
      c.send({ type: 'direct', to: c.id, content: 'note to self' });
      await c.next('direct', { content: 'note to self' });
      await c.sync();
      c.assertNone('direct', null, 'one copy of a direct to oneself');
    } finally {
      await closeAll([a, b, c]);
    }
  });

  test('ping answers pong with a timestamp, without joining', async () => {
    const c = await HubClient.connect(server, { label: 'pinger' });
    try {
      for (let i = 0; i < 3; i++) {
        const pong = await c.sync();
        assert.deepEqual(Object.keys(pong).sort(), ['timestamp', 'type']);
      }
    } finally {
      await c.close();
    }
  });
});

describe('--presence-limit', () => {
  // Past the limit, a room's joins and leaves are not announced to every
  // member (that would cost the square of the room's size); the joiner still
  // gets its own confirmation and history, and messages flow as before.
  test('rooms over the limit stop announcing joins and leaves', async () => {
    const s = await startHub(['--presence-limit', '2']);
    const [a, b, c] = await connectMany(s, 3, 'pl');
    try {
      await a.join('big', 'pl_a');
      await b.join('big', 'pl_b');
      await a.next('user_joined', { user_id: b.id });

      c.send({ type: 'join', room: 'big', nickname: 'pl_c' });
      const own = await c.next('user_joined', { user_id: c.id });
      assert.equal(own.user_count, 3);
      await c.next('history', { room: 'big' });

      c.send({ type: 'message', room: 'big', content: 'hello big room' });
      for (const x of [a, b, c]) await x.next('message', { content: 'hello big room' });
      await a.sync();
      a.assertNone('user_joined', { user_id: c.id }, 'no join notice past the limit');
      a.assertNone('presence', { user_id: c.id }, 'no presence past the limit');

      // Leaving a room of three (over the limit) is not announced either;
      // back at two members, it is again.
      c.send({ type: 'leave', room: 'big' });
      await c.next('user_left', { user_id: c.id });
      b.send({ type: 'leave', room: 'big' });
      await a.next('user_left', { user_id: b.id });
      await a.sync();
      a.assertNone('user_left', { user_id: c.id }, 'no leave notice past the limit');
    } finally {
      await closeAll([a, b, c]);
      await s.stop();
    }
  });
});
