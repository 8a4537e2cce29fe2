// hub-seeds.test.mjs — the five systems Switchboard stands in for
// (/work/shared/seeds), each driven the way its document describes it,
// with the messages spelled exactly as the document spells them.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api, assertTimestamp, closeAll, connectMany, HubClient, startHub,
} from './lib/hub.mjs';
import { until, wsClose, wsConnect, wsNext } from './lib/util.mjs';

describe('seed 000: hub with status, broadcast API and metrics', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('connect, /status counts the client, curl broadcast reaches it, disconnect cleans up', async () => {
    const before = (await api(server, 'GET', '/status')).json;
    const a = await HubClient.connect(server, { label: 'browser' });
    const st = (await api(server, 'GET', '/status')).json;
    assert.equal(st.connections, before.connections + 1, 'Current connections');
    assert.equal(st.total_connections, before.total_connections + 1, 'Total connections');
    // curl -X POST http://localhost:8082/api/broadcast \
    //   -H "Content-Type: application/json" -d '{"message": "Hello everyone!"}'
    const res = await api(server, 'POST', '/api/broadcast', {
      headers: { 'Content-Type': 'application/json' }, raw: '{"message": "Hello everyone!"}',
    });
    assert.equal(res.status, 200);
    assert.equal(res.json.delivered, 1);
    assert.equal((await a.next('broadcast')).content, 'Hello everyone!');
    const st2 = (await api(server, 'GET', '/status')).json;
    assert.ok(st2.messages_sent > st.messages_sent, 'Messages sent');
    await a.close();
    await until(async () => (await api(server, 'GET', '/status')).json.connections === before.connections,
      5000, 'the hub to clean up the closed client');
  });
});

describe('seed 001: join, leave, message, broadcast, ping', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('the message table, spelled as in the document', async () => {
    const [c1, c2, c3] = await connectMany(server, 3, 'client');
    try {
      // ws.onopen: join a room.
      for (const c of [c1, c2]) {
        c.send('{"type":"join","room":"general"}');
        await c.next('history', { room: 'general' });
      }
      await c1.next('user_joined', { user_id: c2.id, user_count: 2 });

      // { "type": "message", "room": "room1", "from": "user123", "content": ..., "timestamp": ... }
      c1.send('{"type":"message","room":"general","content":"Hi"}');
      for (const c of [c1, c2]) {
        const m = await c.next('message');
        assert.equal(m.type, 'message');
        assert.equal(m.room, 'general');
        assert.equal(m.from, c1.id);
        assert.equal(m.content, 'Hi');
        assertTimestamp(m.timestamp);
      }
      // Client 3 is in no room: the room message is not for it ...
      await c3.sync();
      c3.assertNone('message');
      // ... but a broadcast is to all.
      c3.send('{"type":"broadcast","content":"Announcement"}');
      for (const c of [c1, c2, c3]) assert.equal((await c.next('broadcast')).content, 'Announcement');

      // Heartbeat.
      c3.send('{"type":"ping"}');
      await c3.next('pong');

      // Leave.
      c2.send('{"type":"leave","room":"general"}');
      for (const c of [c1, c2]) {
        const l = await c.next('user_left', { user_id: c2.id });
        assert.equal(l.user_count, 1);
      }
      c1.send(JSON.stringify({ type: 'message', room: 'general', content: 'Hello!' }));
      await c1.next('message', { content: 'Hello!' });
      await c2.sync();
      c2.assertNone('message', { content: 'Hello!' });
    } finally {
      await closeAll([c1, c2, c3]);
    }
  });
});

describe('seed 002: a chat with nicknames', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('join with a nickname, counts, the user list, messages to all, user_left', async () => {
    const [alice, bob, charlie] = await connectMany(server, 3, 'tab');
    try {
      // Connecting greets with a system message.
      for (const c of [alice, bob, charlie]) {
        assert.equal(c.system.type, 'system');
        assert.match(c.system.content, /Welcome/);
      }
      const people = [[alice, 'Alice'], [bob, 'Bob'], [charlie, 'Charlie']];
      for (const [i, [c, nick]] of people.entries()) {
        c.send({ type: 'join', nickname: nick, timestamp: '2024-01-01T12:00:00Z' });
        for (const [d] of people.slice(0, i + 1)) {
          const j = await d.next('user_joined', { nickname: nick });
          assert.equal(j.user_count, i + 1, `${d.label} sees ${i + 1} users`);
          assertTimestamp(j.timestamp);
        }
        await c.next('history');
      }
      // The user list with online status.
      const list = await alice.request({ type: 'users' }, 'users');
      assert.deepEqual(list.users.map((u) => [u.nickname, u.status]).sort(),
        [['Alice', 'online'], ['Bob', 'online'], ['Charlie', 'online']]);

      // Everyone sends; everyone sees every message.
      for (const [c, nick] of people) {
        c.send({ type: 'message', content: `Hello from ${nick}!`, timestamp: '2024-01-01T12:00:00Z' });
        for (const [d] of people) {
          const m = await d.next('message', { content: `Hello from ${nick}!` });
          assert.equal(m.nickname, nick);
          assertTimestamp(m.timestamp);
        }
      }
      // Typing indicators (optional in the seed) reach the others.
      bob.send({ type: 'typing', typing: true });
      assert.equal((await alice.next('typing')).nickname, 'Bob');
      assert.equal((await charlie.next('typing')).nickname, 'Bob');

      // Leave Chat.
      charlie.send({ type: 'leave', timestamp: '2024-01-01T12:00:00Z' });
      for (const [d] of people) {
        const l = await d.next('user_left', { nickname: 'Charlie' });
        assert.equal(l.user_count, 2);
      }
      // A closed tab counts as leaving too.
      await bob.close();
      const l = await alice.next('user_left', { nickname: 'Bob' });
      assert.equal(l.user_count, 1);

      // A newcomer gets the message history.
      const dave = await HubClient.connect(server, { label: 'late' });
      const { history } = await dave.join(undefined, 'Dave');
      assert.deepEqual(history.messages.map((m) => m.content),
        ['Hello from Alice!', 'Hello from Bob!', 'Hello from Charlie!']);
      await dave.close();

      // wscat: join and chat.
      const w = await HubClient.connect(server, { label: 'wscat' });
      w.send('{"type":"join","nickname":"test_user"}');
      await w.next('history');
      w.send('{"type":"message","content":"Hello from wscat!"}');
      assert.equal((await alice.next('message', { content: 'Hello from wscat!' })).nickname, 'test_user');
      await w.close();

      // curl http://localhost:8080/health and /stats
      assert.equal((await api(server, 'GET', '/health')).json.status, 'ok');
      assert.equal((await api(server, 'GET', '/stats')).json.status, 'ok');
    } finally {
      await closeAll([alice, bob, charlie]);
    }
  });
});

describe('seed 003: fixed rooms, broadcast-except, presence, send-to-user', () => {
  let server;
  before(async () => {
    server = await startHub(['--rooms', 'general,random']);
  });
  after(async () => {
    await server?.stop();
  });

  test('hub.CreateRoom("general"), ("random"): those two rooms and no other', async () => {
    const rooms = (await api(server, 'GET', '/api/rooms')).json.rooms.map((r) => r.name).sort();
    assert.deepEqual(rooms, ['general', 'random']);
    const c = await HubClient.connect(server, { label: 'roomless' });
    try {
      await c.expectError({ type: 'join_room', room_id: 'chat-room-1' }, 'room_not_found');
      // ErrorMessage("Unknown message type")
      await c.expectError({ type: 'chat_message', room_id: 'general', message: 'x' }, 'unknown_type');
    } finally {
      await c.close();
    }
    assert.equal((await api(server, 'GET', '/stats')).json.rooms, 2);
  });

  test('join_room / leave_room, chat with room_id and message, typing to all but the sender, presence', async () => {
    const [x, y, z] = await connectMany(server, 3, 'neon');
    try {
      for (const c of [x, y, z]) {
        c.send({ type: 'join_room', room_id: 'random' });
        await c.next('history', { room: 'random' });
      }
      // Everyone in the room sees presence online of the later joiners.
      await x.next('presence', { user_id: z.id, status: 'online' });
      await y.next('presence', { user_id: z.id, status: 'online' });

      // ChatMessage {type, room_id, message}.
      y.send({ type: 'message', room_id: 'random', message: 'hello random', time: 1700000000 });
      for (const c of [x, y, z]) assert.equal((await c.next('message', { room: 'random' })).content, 'hello random');

      // handleTypingIndicator: room.BroadcastExcept(conn.ID, {typing: msg.Data.(bool)}).
      x.send({ type: 'typing', room: 'random', data: true });
      for (const c of [y, z]) {
        const t = await c.next('typing');
        assert.equal(t.user_id, x.id);
        assert.equal(t.typing, true);
      }
      await x.sync();
      x.assertNone('typing');

      // Leave: the others see user_left with the new count.
      z.send({ type: 'leave_room', room_id: 'random' });
      for (const c of [x, y]) assert.equal((await c.next('user_left', { user_id: z.id })).user_count, 2);

      // Unregister: presence offline to the rooms of the user.
      await y.close();
      await x.next('user_left', { user_id: y.id });
      const off = await x.next('presence', { user_id: y.id, status: 'offline' });
      assert.equal(off.nickname, y.id);
      await z.sync();
      z.assertNone('presence', { user_id: y.id, status: 'offline' });
    } finally {
      await closeAll([x, y, z]);
    }
  });

  test('SendToUser: direct reaches the user, GetConnectionCount and UserCount in /stats', async () => {
    // token := c.Query("token"): a query string on /ws is no obstacle.
    const x = await HubClient.connect(server, { path: '/ws?token=abc', label: 'dm1' });
    const y = await HubClient.connect(server, { label: 'dm2' });
    try {
      x.send({ type: 'direct', to: y.id, message: 'You have a new message' });
      assert.equal((await y.next('direct')).content, 'You have a new message');
      assert.equal((await x.next('direct')).to, y.id);
      const st = (await api(server, 'GET', '/stats')).json;
      assert.equal(st.connections, 2);
      assert.equal(st.unique_users, 2);
    } finally {
      await closeAll([x, y]);
    }
  });
});

describe('seed 004: plain-text broadcast to every connected client', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test("ws.send('Hello Server!') on /ws/raw reaches every connected client", async () => {
    const clients = [];
    for (let i = 0; i < 4; i++) clients.push(await wsConnect(server, '/ws/raw'));
    try {
      clients[0].send('Hello Server!');
      for (const c of clients) {
        const m = await wsNext(c, 5000, 'Hello Server! relayed');
        assert.equal(m.isBinary, false);
        assert.equal(m.data.toString(), 'Hello Server!');
      }
      // GetConnectedClientsCount()
      assert.equal((await api(server, 'GET', '/stats')).json.connections, 4);
      // A client that goes away is cleaned up; the rest still get everything.
      await wsClose(clients.pop());
      clients[2].send(Buffer.from('Hello all clients!'), { binary: true });
      for (const c of clients) {
        const m = await wsNext(c);
        assert.equal(m.isBinary, true);
        assert.equal(m.data.toString(), 'Hello all clients!');
      }
    } finally {
      for (const c of clients) await wsClose(c);
    }
  });
});
