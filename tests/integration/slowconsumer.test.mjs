// Slow consumers: by default a client that stops reading is closed with 1008
// once its queue passes max_queued_bytes, while the others keep receiving;
// with slow_consumer_policy drop it stays connected, misses what did not
// fit, and is told how many messages it missed once it has caught up.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { start } from './lib/server.mjs';
import { RawClient, OP } from './lib/raw.mjs';
import { HubClient, api } from './lib/hub.mjs';
import { withTimeout } from './lib/util.mjs';

const CONTENT = 'x'.repeat(3900);
const BURST = 3000; // about 12 MB: more than the kernel's socket buffers hold

async function joinRaw(server, room, nickname) {
  const c = await RawClient.connect(server.port, { path: '/ws' });
  c.send({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify({ type: 'join', room, nickname })) });
  for (;;) {
    const m = await c.nextMessage();
    if (JSON.parse(m.data.toString()).type === 'history') return c;
  }
}

// Publishes BURST messages, 50 at a time, each window waited for at the
// reader (a member that reads as fast as it can): the server has handed every
// message to every member's queue by then, and the reader never falls far
// behind, so only the member that stopped reading is a slow consumer.
async function burst(pub, room, reader = pub) {
  for (let i = 0; i < BURST; i += 50) {
    for (let k = 0; k < 50; k++) pub.send({ type: 'message', room, content: CONTENT });
    for (let k = 0; k < 50; k++) await reader.next('message', { room });
    if (reader !== pub) for (let k = 0; k < 50; k++) await pub.next('message', { room });
  }
}

async function stats(server) {
  return (await api(server, 'GET', '/stats')).json;
}

describe('slow consumers', () => {
  test('closed with 1008 by default while the others keep receiving', async () => {
    const server = await start(['--max-queued-bytes', '64k']);
    try {
      const slow = await joinRaw(server, 'busy', 'slow');
      slow.socket.pause();
      const pub = await HubClient.connect(server, { label: 'pub' });
      await pub.join('busy', 'pub');
      const reader = await HubClient.connect(server, { label: 'reader' });
      await reader.join('busy', 'reader');
      await burst(pub, 'busy', reader);
      assert.equal((await stats(server)).slow_consumers, 1);
      slow.socket.resume();
      await withTimeout(slow.endPromise, 10000, 'the slow consumer to be cut off');
      await Promise.all([pub.close(), reader.close()]);
    } finally {
      await server.stop();
    }
  });

  test('with slow_consumer_policy drop: kept, told what it missed, able to catch up', async () => {
    const server = await start(['--max-queued-bytes', '64k', '--slow-consumer-policy', 'drop']);
    try {
      const slow = await joinRaw(server, 'busy', 'slow');
      slow.socket.pause();
      const pub = await HubClient.connect(server, { label: 'pub' });
      await pub.join('busy', 'pub');
      await burst(pub, 'busy');
      const dropped = (await stats(server)).messages_dropped;
      assert.ok(dropped > 0, 'messages were dropped');
      assert.equal((await stats(server)).slow_consumers, 0, 'nobody was closed');

      slow.socket.resume();
      let received = 0;
      let lastId = 0;
      let notice;
      while (!notice) {
        const m = JSON.parse((await slow.nextMessage()).data.toString());
        if (m.type === 'message') {
          assert.ok(m.id > lastId, 'ids increase');
          lastId = m.id;
          received++;
        } else if (m.type === 'error') {
          notice = m;
        }
      }
      assert.equal(notice.code, 'messages_dropped');
      assert.equal(notice.count, dropped);
      assert.equal(received + dropped, BURST, 'every message arrived or was counted as dropped');

      // Still connected, and the history fills the gap.
      slow.send({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify(
        { type: 'history', room: 'busy', since: 0, limit: 10 })) });
      for (;;) {
        const m = JSON.parse((await slow.nextMessage()).data.toString());
        if (m.type === 'history') {
          assert.equal(m.messages.length, 10);
          break;
        }
      }
      slow.destroy();
      await pub.close();
    } finally {
      await server.stop();
    }
  });
});
