// hub-raw.test.mjs — the raw relay at /ws/raw (seed 004): every text and
// binary message goes, unchanged and with its type, to every raw client,
// the sender included; /ws and /ws/raw do not hear each other.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HubClient, startHub } from './lib/hub.mjs';
import { randomUtf8, wsClose, wsConnect, wsNext } from './lib/util.mjs';

describe('/ws/raw', () => {
  let server;
  before(async () => {
    server = await startHub();
  });
  after(async () => {
    await server?.stop();
  });

  test('text and binary are relayed unchanged to every raw client, the sender included', async () => {
    const raws = [];
    for (let i = 0; i < 3; i++) raws.push(await wsConnect(server, '/ws/raw'));
    try {
      const payloads = [
        [Buffer.from('Hello Server!'), false],
        [Buffer.from('{"type":"message","content":"not parsed here"}'), false],
        [Buffer.from('not JSON at all {'), false],
        [randomUtf8(3000), false],
        [Buffer.alloc(0), false],
        [Buffer.from([0, 1, 2, 0xfe, 0xff]), true],
        [randomBytes(100 * 1024), true],
        [Buffer.alloc(0), true],
      ];
      for (const [data, binary] of payloads) {
        for (const sender of raws) {
          sender.send(data, { binary });
          for (const r of raws) {
            const m = await wsNext(r, 5000, `the relay of ${data.length} bytes`);
            assert.equal(m.isBinary, binary, 'same type');
            assert.ok(m.data.equals(data), `same ${data.length} bytes`);
          }
        }
      }
      for (const r of raws) assert.equal(r.inbox.length, 0, 'one copy each');
    } finally {
      for (const r of raws) await wsClose(r);
    }
  });

  test('/ws clients do not get raw traffic, and raw clients do not get /ws traffic', async () => {
    const raw = await wsConnect(server, '/ws/raw');
    const json = await HubClient.connect(server, { label: 'json' });
    try {
      await json.join('general');
      raw.send('plain text for raw clients only');
      assert.equal((await wsNext(raw)).data.toString(), 'plain text for raw clients only');
      json.send({ type: 'broadcast', content: 'for /ws only' });
      await json.next('broadcast');
      await json.say('general', 'room talk');
      await json.sync();
      assert.deepEqual(json.queue, [], `/ws got nothing else: ${JSON.stringify(json.queue)}`);
      // The raw client's own relay comes next, with nothing of /ws before it.
      raw.send('marker');
      assert.equal((await wsNext(raw)).data.toString(), 'marker');
      assert.equal(raw.inbox.length, 0);
    } finally {
      await json.close();
      await wsClose(raw);
    }
  });

  test('a raw client that leaves is no longer relayed to; the others carry on', async () => {
    const a = await wsConnect(server, '/ws/raw');
    const b = await wsConnect(server, '/ws/raw');
    const c = await wsConnect(server, '/ws/raw');
    try {
      await wsClose(b);
      // The close handshake is done; whether the server has reaped b yet
      // or not, a and c must keep getting everything.
      for (let i = 0; i < 20; i++) {
        const sender = i % 2 ? a : c;
        sender.send(`after-leave ${i}`);
        for (const r of [a, c]) assert.equal((await wsNext(r)).data.toString(), `after-leave ${i}`);
      }
      a.terminate();
      await a.closed;
      c.send('alone');
      assert.equal((await wsNext(c)).data.toString(), 'alone');
    } finally {
      await wsClose(c);
    }
  });
});
