// hub-errors.test.mjs — every error code of docs/protocol.md's table: the
// bad message gets an `error` with that code and a text in plain words, and
// the connection stays open and served (a ping after each error gets its
// pong).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAll, HubClient, startHub, uniqueNick } from './lib/hub.mjs';

describe('errors on a server with --rooms general,random --max-content 100', () => {
  let server;
  let c;     // joined to general
  let peer;  // also in general: errors must not reach it
  before(async () => {
    server = await startHub(['--rooms', 'general,random', '--max-content', '100']);
    c = await HubClient.connect(server, { label: 'err' });
    peer = await HubClient.connect(server, { label: 'peer' });
    await c.join('general');
    await peer.join('general');
    await c.next('user_joined', { user_id: peer.id });
    await c.next('presence', { user_id: peer.id });
  });
  after(async () => {
    // Nothing of c's mistakes reached the other member.
    if (peer) {
      await peer.sync();
      peer.assertNone('error');
      peer.assertNone('message');
    }
    await closeAll([c, peer]);
    await server?.stop();
  });

  test('invalid_json: the text says what is wrong', async () => {
    for (const bad of ['not json', '{"type":"ping"', '{"type":}', '', '{"type":"ping"} trailing',
      "{'type':'ping'}"]) {
      const e = await c.expectError(bad, 'invalid_json');
      assert.match(e.error, /JSON/, 'the text names the problem');
    }
  });

  test('not_object: JSON that is not an object', async () => {
    for (const bad of ['[1,2,3]', '"ping"', '42', 'null', 'true', '[{"type":"ping"}]']) {
      await c.expectError(bad, 'not_object');
    }
  });

  test('missing_field: no type; a message without content or data; direct without to', async () => {
    await c.expectError({}, 'missing_field');
    await c.expectError({ room: 'general', content: 'no type' }, 'missing_field');
    await c.expectError({ type: 'message', room: 'general' }, 'missing_field');
    await c.expectError({ type: 'message' }, 'missing_field');
    await c.expectError({ type: 'broadcast' }, 'missing_field');
    await c.expectError({ type: 'direct', content: 'to nobody in particular' }, 'missing_field');
    await c.expectError({ type: 'direct', to: peer.id }, 'missing_field');
  });

  test('invalid_field: a field of the wrong type', async () => {
    await c.expectError({ type: 'join', room: 5 }, 'invalid_field');
    await c.expectError({ type: 'join', room_id: ['general'] }, 'invalid_field');
    await c.expectError({ type: 'join', room: 'general', nickname: 7 }, 'invalid_field');
    await c.expectError({ type: 'message', room: 'general', content: 5 }, 'invalid_field');
    await c.expectError({ type: 'message', room: 'general', message: { text: 'x' } }, 'invalid_field');
    await c.expectError({ type: 'typing', room: 'general', typing: 'yes' }, 'invalid_field');
    await c.expectError({ type: 'typing', room: 'general', data: 1 }, 'invalid_field');
    await c.expectError({ type: 'history', room: 'general', since: -1 }, 'invalid_field');
    await c.expectError({ type: 'history', room: 'general', since: 'yesterday' }, 'invalid_field');
    await c.expectError({ type: 'history', room: 'general', limit: 0 }, 'invalid_field');
    await c.expectError({ type: 'users', room: null }, 'invalid_field');
  });

  test('unknown_type: a type the server does not know', async () => {
    for (const type of ['dance', 'chat_message', 'JOIN', '']) {
      await c.expectError({ type }, 'unknown_type');
    }
  });

  test('binary_not_supported: a binary message on /ws', async () => {
    await c.expectError(Buffer.from('{"type":"ping"}'), 'binary_not_supported', { binary: true });
    await c.expectError(Buffer.from([0, 1, 2, 255]), 'binary_not_supported', { binary: true });
  });

  test('invalid_nickname: too long, bad characters, empty', async () => {
    for (const nick of ['x'.repeat(33), 'bad name', 'semi;colon', 'ünï', 'a.b', '', 'tab\t']) {
      await c.expectError({ type: 'join', room: 'random', nickname: nick }, 'invalid_nickname');
    }
    // A refused nickname does not join: c is still not in random.
    await c.expectError({ type: 'message', room: 'random', content: 'x' }, 'not_member');
    // 32 of the allowed characters is fine.
    const ok = `${uniqueNick('ok')}_-`.padEnd(32, 'Z9');
    assert.equal(ok.length, 32);
    const { joined } = await c.join('random', ok);
    assert.equal(joined.nickname, ok);
    c.send({ type: 'leave', room: 'random' });
    await c.next('user_left', { room: 'random' });
  });

  test('invalid_room: not 1-64 letters, digits, _ - . :', async () => {
    for (const room of ['x'.repeat(65), 'has space', '', 'a/b', 'ünï', 'semi;colon']) {
      await c.expectError({ type: 'join', room }, 'invalid_room');
      await c.expectError({ type: 'message', room, content: 'x' }, 'invalid_room');
    }
  });

  test('room_not_found: a room not on the --rooms list; history and users of it', async () => {
    await c.expectError({ type: 'join', room: 'lobby' }, 'room_not_found');
    await c.expectError({ type: 'join_room', room_id: 'x'.repeat(64) }, 'room_not_found');
    await c.expectError({ type: 'history', room: 'lobby' }, 'room_not_found');
    await c.expectError({ type: 'users', room: 'lobby' }, 'room_not_found');
    await c.expectError({ type: 'message', room: 'lobby', content: 'x' }, 'room_not_found');
  });

  test('not_member: message, typing or leave for a room you are not in', async () => {
    await c.expectError({ type: 'message', room: 'random', content: 'x' }, 'not_member');
    await c.expectError({ type: 'typing', room: 'random', typing: true }, 'not_member');
    await c.expectError({ type: 'leave', room: 'random' }, 'not_member');
    await c.expectError({ type: 'leave_room', room_id: 'random' }, 'not_member');
  });

  test('content_too_long: content over --max-content bytes (bytes, not characters)', async () => {
    await c.expectError({ type: 'message', room: 'general', content: 'x'.repeat(101) }, 'content_too_long');
    // 34 x '€' is 34 characters but 102 bytes.
    await c.expectError({ type: 'message', room: 'general', content: '€'.repeat(34) }, 'content_too_long');
    await c.expectError({ type: 'broadcast', content: 'y'.repeat(101) }, 'content_too_long');
    await c.expectError({ type: 'direct', to: peer.id, content: 'z'.repeat(101) }, 'content_too_long');
    // At the limit it goes through.
    for (const content of ['x'.repeat(100), '€'.repeat(33)]) {
      const m = await c.say('general', content);
      assert.equal(m.content, content);
      assert.equal((await peer.next('message', { id: m.id })).content, content);
    }
  });

  test('unknown_user: direct to nobody online', async () => {
    await c.expectError({ type: 'direct', to: 'nobody', content: 'hello?' }, 'unknown_user');
    // The user id of a client that has left.
    const gone = await HubClient.connect(server, { label: 'gone' });
    await gone.join('random');
    c.send({ type: 'join', room: 'random' });
    await c.next('history', { room: 'random' });
    await gone.close();
    await c.next('user_left', { room: 'random', user_id: gone.id });
    await c.expectError({ type: 'direct', to: gone.id, content: 'x' }, 'unknown_user');
    c.send({ type: 'leave', room: 'random' });
    await c.next('user_left', { room: 'random', user_id: c.id });
  });
});

describe('nickname_taken', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('a nickname held by someone online is refused, and free again once its holder is gone', async () => {
    const a = await HubClient.connect(server, { label: 'holder' });
    const b = await HubClient.connect(server, { label: 'wanter' });
    try {
      await a.join('general', 'zed');
      await b.join('general');
      await b.expectError({ type: 'join', room: 'general', nickname: 'zed' }, 'nickname_taken');
      await b.expectError({ type: 'join', room: 'other', name: 'zed' }, 'nickname_taken');
      // The holder may set its own nickname again.
      a.send({ type: 'join', room: 'general', nickname: 'zed' });
      await a.next('history', { room: 'general' });
      await a.sync();
      a.assertNone('error');
      // A refused join changed nothing: b is not in "other".
      await b.expectError({ type: 'leave', room: 'other' }, 'room_not_found');

      await a.close();
      // user_left comes from the same step that frees the nickname.
      await b.next('user_left', { user_id: a.id });
      const { joined } = await b.join('other', 'zed');
      assert.equal(joined.nickname, 'zed');
      // Now it is b's: a newcomer is refused.
      const c = await HubClient.connect(server, { label: 'newcomer' });
      await c.expectError({ type: 'join', nickname: 'zed' }, 'nickname_taken');
      await c.close();
    } finally {
      await closeAll([a, b]);
    }
  });

  test('changing nickname frees the old one', async () => {
    const a = await HubClient.connect(server, { label: 'changer' });
    const b = await HubClient.connect(server, { label: 'taker' });
    try {
      await a.join('chg', 'first-name');
      a.send({ type: 'join', room: 'chg', nickname: 'second-name' });
      await a.next('history', { room: 'chg' });
      const { joined } = await b.join('chg', 'first-name');
      assert.equal(joined.nickname, 'first-name');
      await b.expectError({ type: 'join', room: 'chg', nickname: 'second-name' }, 'nickname_taken');
    } finally {
      await closeAll([a, b]);
    }
  });
});

describe('a refused request changes nothing', () => {
  let server;
  before(async () => {
    server = await startHub(['--rooms', 'general,random']);
  });
  after(async () => {
    await server?.stop();
  });

  test('a join refused for its room neither takes the nickname nor joins', async () => {
    const a = await HubClient.connect(server, { label: 'refused' });
    const b = await HubClient.connect(server, { label: 'other' });
    try {
      await a.expectError({ type: 'join', room: 'lobby', nickname: 'wanted' }, 'room_not_found');
      await a.expectError({ type: 'join', room: 'bad room', nickname: 'wanted' }, 'invalid_room');
      await a.expectError({ type: 'join', room: 5, nickname: 'wanted' }, 'invalid_field');
      // The nickname is still free, and a is still anonymous.
      const { joined } = await b.join('general', 'wanted');
      assert.equal(joined.nickname, 'wanted');
      const { joined: aj } = await a.join('general');
      assert.equal(aj.nickname, a.id);
    } finally {
      await closeAll([a, b]);
    }
  });

  test('a join refused for its nickname does not join the room', async () => {
    const a = await HubClient.connect(server, { label: 'holder2' });
    const b = await HubClient.connect(server, { label: 'refused2' });
    try {
      await a.join('general', 'mine');
      await b.expectError({ type: 'join', room: 'random', nickname: 'mine' }, 'nickname_taken');
      await b.expectError({ type: 'message', room: 'random', content: 'x' }, 'not_member');
      const users = await a.request({ type: 'users', room: 'random' }, 'users');
      assert.deepEqual(users.users, []);
    } finally {
      await closeAll([a, b]);
    }
  });
});

describe('user ids and nicknames do not collide', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test("another online user's id is not available as a nickname", async () => {
    const a = await HubClient.connect(server, { label: 'anon' });
    const b = await HubClient.connect(server, { label: 'mimic' });
    try {
      // a shows as its user id; b may not take that name ...
      await b.expectError({ type: 'join', nickname: a.id }, 'nickname_taken');
      // ... but a may set its own id as its nickname.
      const { joined } = await a.join('general', a.id);
      assert.equal(joined.nickname, a.id);
    } finally {
      await closeAll([a, b]);
    }
  });

  test('a direct to a user id reaches that user even if someone has it as a nickname', async () => {
    // A nickname taken before a user of that id existed: ids are c-N, so
    // pick the id the next connection will get.
    const early = await HubClient.connect(server, { label: 'early' });
    const n = Number(/^c-(\d+)$/.exec(early.id)?.[1]);
    assert.ok(Number.isInteger(n), `connection ids look like c-N (${early.id}); update this test`);
    const future = `c-${n + 1}`;
    const { joined } = await early.join('ids', future);
    assert.equal(joined.nickname, future);
    const target = await HubClient.connect(server, { label: 'target' });
    const sender = await HubClient.connect(server, { label: 'sender' });
    try {
      assert.equal(target.id, future);
      sender.send({ type: 'direct', to: future, content: 'for the user with that id' });
      const d = await target.next('direct');
      assert.equal(d.to, target.id);
      await early.sync();
      early.assertNone('direct', null, 'the nickname holder does not get a direct meant for the id');
    } finally {
      await closeAll([early, target, sender]);
    }
  });
});

describe('room_not_found without --rooms', () => {
  test('history and users of a room that does not exist', async () => {
    const server = await startHub();
    const c = await HubClient.connect(server, { label: 'dyn' });
    try {
      await c.expectError({ type: 'history', room: 'nowhere' }, 'room_not_found');
      await c.expectError({ type: 'users', room: 'nowhere' }, 'room_not_found');
      await c.expectError({ type: 'message', room: 'nowhere', content: 'x' }, 'room_not_found');
      // Joining creates it; then both work.
      await c.join('nowhere');
      assert.equal((await c.request({ type: 'users', room: 'nowhere' }, 'users')).users.length, 1);
      assert.deepEqual((await c.request({ type: 'history', room: 'nowhere' }, 'history')).messages, []);
      // A 64-character name is a valid one.
      const long = 'L'.repeat(64);
      const { joined } = await c.join(long);
      assert.equal(joined.room, long);
    } finally {
      await c.close();
      await server.stop();
    }
  });
});
