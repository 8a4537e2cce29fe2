// hub-history.test.mjs — message history: what a joiner gets, `history`
// with since and limit, a reconnecting client catching up without gaps or
// doubles, and persistence across a graceful stop and across kill -9.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAll, HubClient, startHub, tempDir } from './lib/hub.mjs';
import { start } from './lib/server.mjs';

// Sends contents from c to room one after another without waiting, then
// collects c's own copies. Resolves the delivered messages in id order.
async function sendAll(c, room, contents) {
  for (const content of contents) c.send({ type: 'message', room, content });
  const got = [];
  for (const content of contents) got.push(await c.next('message', { room, content }));
  return got;
}

const ids = (msgs) => msgs.map((m) => m.id);

describe('history on one server', () => {
  let server;
  before(async () => {
    server = await startHub(['--history-size', '5']);
  });
  after(async () => {
    await server?.stop();
  });

  test('join delivers the last --history-size messages, oldest first, exactly as delivered', async () => {
    const a = await HubClient.connect(server, { label: 'writer' });
    const b = await HubClient.connect(server, { label: 'joiner' });
    try {
      const { history: empty } = await a.join('hist');
      assert.deepEqual(empty.messages, [], 'a new room has no history');
      const sent = await sendAll(a, 'hist', Array.from({ length: 8 }, (_, i) => `m${i + 1}`));
      assert.deepEqual(ids(sent), [1, 2, 3, 4, 5, 6, 7, 8]);
      const { history } = await b.join('hist');
      assert.equal(history.room, 'hist');
      assert.deepEqual(history.messages, sent.slice(3),
        'the last 5, in order, the same objects the members got');
    } finally {
      await closeAll([a, b]);
    }
  });

  test('history with since and limit returns exactly the later messages', async () => {
    const a = await HubClient.connect(server, { label: 'reader' });
    try {
      await a.join('since');
      const sent = await sendAll(a, 'since', Array.from({ length: 10 }, (_, i) => `s${i + 1}`));
      const ask = async (q) => {
        const h = await a.request({ type: 'history', room: 'since', ...q }, 'history');
        assert.equal(h.room, 'since');
        return h.messages;
      };
      assert.deepEqual(await ask({ since: 3 }), sent.slice(3, 8),
        'since 3 without limit: the 5 (--history-size) after 3');
      assert.deepEqual(await ask({ since: 3, limit: 50 }), sent.slice(3), 'since 3, limit 50: 4..10');
      assert.deepEqual(await ask({ since: 3, limit: 2 }), sent.slice(3, 5),
        'since 3, limit 2: the oldest two after 3');
      assert.deepEqual(await ask({ since: 0, limit: 3 }), sent.slice(7), 'since 0: the last 3');
      assert.deepEqual(await ask({ limit: 4 }), sent.slice(6), 'no since: the last 4');
      assert.deepEqual(ids(await ask({})), [6, 7, 8, 9, 10], 'no limit: --history-size');
      assert.deepEqual(await ask({ since: 10 }), [], 'since the last id: nothing');
      assert.deepEqual(await ask({ since: 1000 }), [], 'since beyond the last id: nothing');
      assert.deepEqual(await ask({ since: 9, limit: 500 }), sent.slice(9));
      // room_id spelling; a non-member may read.
      const b = await HubClient.connect(server, { label: 'outsider' });
      const h = await b.request({ type: 'history', room_id: 'since', since: 8 }, 'history');
      assert.deepEqual(h.messages, sent.slice(8));
      await b.close();
    } finally {
      await a.close();
    }
  });

  test('history beyond the in-memory cache is complete and in order; limit is capped at 500', async () => {
    const a = await HubClient.connect(server, { label: 'bulk' });
    try {
      await a.join('bulk');
      const N = 520;
      const sent = await sendAll(a, 'bulk', Array.from({ length: N }, (_, i) => `b${i + 1}`));
      assert.deepEqual(ids(sent), Array.from({ length: N }, (_, i) => i + 1));
      const ask = async (q) => (await a.request({ type: 'history', room: 'bulk', ...q }, 'history')).messages;
      assert.deepEqual(await ask({ since: 5, limit: 200 }), sent.slice(5, 205));
      assert.deepEqual(await ask({ since: 0, limit: 140 }), sent.slice(N - 140));
      assert.deepEqual(await ask({ since: 20, limit: 3 }), sent.slice(20, 23));
      assert.deepEqual(await ask({ since: 510, limit: 500 }), sent.slice(510));
      // At most 500 at a time: the oldest 500 after since, or the last 500.
      assert.deepEqual(await ask({ since: 5, limit: 1000 }), sent.slice(5, 505));
      assert.deepEqual(await ask({ limit: 100000 }), sent.slice(N - 500));
    } finally {
      await a.close();
    }
  });

  test('a reconnecting client gets exactly what it missed, nothing twice', async () => {
    const room = 'gap';
    let a = await HubClient.connect(server, { label: 'roamer' });
    const b = await HubClient.connect(server, { label: 'stayer' });
    try {
      await a.join(room, 'roamer');
      await b.join(room, 'stayer');
      await a.next('user_joined', { user_id: b.id });
      const before1 = await sendAll(b, room, ['one', 'two', 'three']);
      const seenByA = [];
      for (const m of before1) seenByA.push(await a.next('message', { id: m.id }));
      const last = seenByA.at(-1).id;

      // a drops off without a close handshake; b knows it is gone once it
      // sees user_left, and everything after that is sent while a is away.
      await a.terminate();
      await b.next('user_left', { user_id: a.id });
      const missed = await sendAll(b, room, ['four', 'five', 'six', 'seven']);

      a = await HubClient.connect(server, { label: 'roamer-again' });
      await a.join(room, 'roamer');
      const h = await a.request({ type: 'history', room, since: last }, 'history');
      assert.deepEqual(h.messages, missed, 'exactly the missed messages, in order');

      // Live delivery continues right after what the history gave.
      const live = await sendAll(b, room, ['eight']);
      const got = await a.next('message', { room });
      assert.deepEqual(got, live[0]);
      const all = [...seenByA, ...h.messages, got].map((m) => m.id);
      assert.deepEqual(all, [...new Set(all)].sort((x, y) => x - y), 'no id twice, in order');
      assert.equal(all.length, all.at(-1) - all[0] + 1, 'no gap');
      await a.sync();
      a.assertNone('message', null, 'nothing else arrives live');
    } finally {
      await closeAll([a, b]);
    }
  });
  test('join with since answers with exactly the messages after that id, in one step', async () => {
    const room = 'since-join';
    const a = await HubClient.connect(server, { label: 'writer' });
    try {
      await a.join(room, 'writer');
      const sent = await sendAll(a, room, ['s1', 's2', 's3', 's4', 's5']);
      const b = await HubClient.connect(server, { label: 'rejoiner' });
      try {
        b.send({ type: 'join', room, nickname: 'rejoiner', since: sent[1].id });
        const h = await b.next('history', { room });
        assert.deepEqual(h.messages, sent.slice(2), 'the messages after since, oldest first');
        const bad = await b.request({ type: 'join', room, since: -1 }, 'error');
        assert.equal(bad.code, 'invalid_field');
        await b.sync();
      } finally {
        await closeAll([b]);
      }
    } finally {
      await closeAll([a]);
    }
  });
});

describe('persistence', () => {
  test('after a graceful stop, a new server on the same data dir has the history and continues the ids', async () => {
    const dir = tempDir();
    try {
      let server = await startHub([], { dataDir: dir.dir });
      let a = await HubClient.connect(server, { label: 'before' });
      await a.join('keep');
      const sent = await sendAll(a, 'keep', ['k1', 'k2', 'k3', 'k4', 'k5']);
      await a.join('other');
      const other = await sendAll(a, 'other', ['o1', 'o2']);
      await server.stop();
      a = null;

      server = await startHub([], { dataDir: dir.dir });
      try {
        a = await HubClient.connect(server, { label: 'after' });
        // A room nobody has joined since the restart still answers history.
        const early = await a.request({ type: 'history', room: 'other' }, 'history');
        assert.deepEqual(early.messages, other, 'history of a room not yet joined');
        const { history } = await a.join('keep');
        assert.deepEqual(history.messages, sent, 'the history survived the restart');
        const [next] = await sendAll(a, 'keep', ['k6']);
        assert.equal(next.id, 6, 'ids continue after the old ones');
        const { history: h2 } = await a.join('other');
        assert.deepEqual(h2.messages, other);
        const [o3] = await sendAll(a, 'other', ['o3']);
        assert.equal(o3.id, 3, 'per room');
        await a.close();
      } finally {
        await server.stop();
      }

      // A third start sees the messages of the second too.
      server = await startHub([], { dataDir: dir.dir });
      try {
        a = await HubClient.connect(server, { label: 'third' });
        const { history } = await a.join('keep');
        assert.deepEqual(ids(history.messages), [1, 2, 3, 4, 5, 6]);
        await a.close();
      } finally {
        await server.stop();
      }
    } finally {
      dir.remove();
    }
  });

  test('after kill -9, every message a client received is in the history', async () => {
    const dir = tempDir();
    try {
      const K = 100;
      const server = await startHub([], { dataDir: dir.dir });
      const a = await HubClient.connect(server, { label: 'receiver' });
      const w = await HubClient.connect(server, { label: 'writer' });
      await a.join('crash');
      await w.join('crash');
      // Twice as many as we wait for: the kill comes with messages in
      // flight, stored in batches.
      for (let i = 0; i < 2 * K; i++) {
        w.send({ type: 'message', room: 'crash', content: `c${i}`, data: { i } });
      }
      for (let i = 0; i < K; i++) await a.next('message', { room: 'crash' });
      server.proc.kill('SIGKILL');
      const { signal } = await server.exited;
      assert.equal(signal, 'SIGKILL');
      await Promise.all([a.closed, w.closed]);
      // Whatever reached the client before the socket died was sent, so it
      // had been stored: all of it must be there, not only the first K.
      const received = a.received.filter((m) => m.type === 'message');
      assert.ok(received.length >= K);

      const again = await start(['--data-dir', dir.dir]);
      try {
        const c = await HubClient.connect(again, { label: 'after-crash' });
        c.send({ type: 'join', room: 'crash' });
        await c.next('history', { room: 'crash' });
        const h = await c.request({ type: 'history', room: 'crash', since: 0, limit: 500 }, 'history');
        const stored = new Map(h.messages.map((m) => [m.id, m]));
        for (const m of received) {
          assert.deepEqual(stored.get(m.id), m, `message ${m.id} (${m.content}) survived kill -9`);
        }
        const [next] = await sendAll(c, 'crash', ['after']);
        assert.ok(next.id > received.at(-1).id, 'ids are not reused after a crash');
        await c.close();
      } finally {
        await again.stop();
      }
    } finally {
      dir.remove();
    }
  });

  test("--data-dir '' keeps history in memory only", async () => {
    const s1 = await start(['--data-dir', '']);
    try {
      const a = await HubClient.connect(s1, { label: 'mem' });
      await a.join('mem');
      const sent = await sendAll(a, 'mem', ['x', 'y']);
      const h = await a.request({ type: 'history', room: 'mem' }, 'history');
      assert.deepEqual(h.messages, sent);
      await a.close();
    } finally {
      await s1.stop();
    }
  });
});
