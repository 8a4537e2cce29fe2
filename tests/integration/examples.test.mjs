// examples.test.mjs — the embedding examples in examples/ build and work:
// broadcast (seed 004) relays to everyone, rooms (seed 003) scopes messages
// to rooms, keeps typing from the sender, and sends to one user.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';

import { SB_BIN, serverEnv } from './lib/server.mjs';

const EXAMPLES = join(dirname(SB_BIN), 'examples');

// Starts an example on a free port; resolves with {port, stop}. stop()
// asserts a clean exit (0: no leak under ASan).
function startExample(name) {
  const proc = spawn(join(EXAMPLES, name), ['0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: serverEnv(),
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    proc.on('error', reject);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)\/ws/.exec(out);
      if (m)
        resolve({
          port: Number(m[1]),
          async stop() {
            proc.kill('SIGTERM');
            assert.equal(await exited, 0, `${name} did not exit cleanly:\n${stderr}`);
          },
        });
    });
    exited.then((code) => reject(new Error(`${name} exited with ${code}:\n${stderr}`)));
  });
}

// A client that queues what it receives, parsed as JSON (raw: as text).
async function client(port, query = '', raw = false) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws${query}`);
  const inbox = [];
  const waiters = [];
  ws.on('message', (data, binary) => {
    inbox.push(raw || binary ? data.toString() : JSON.parse(data.toString()));
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return {
    ws,
    send: (obj) => ws.send(JSON.stringify(obj)),
    // The next message matching pred (earlier ones that do not are dropped).
    async next(pred = () => true) {
      for (;;) {
        const i = inbox.findIndex(pred);
        if (i >= 0) return inbox.splice(0, i + 1)[i];
        await new Promise((resolve) => waiters.push(resolve));
      }
    },
    inbox,
  };
}

test('broadcast example relays every message to every client', async () => {
  const ex = await startExample('broadcast');
  const a = await client(ex.port, '', true);
  const b = await client(ex.port, '', true);
  a.ws.send('hello from a');
  for (const c of [a, b]) assert.equal(await c.next(), 'hello from a');
  a.ws.close();
  b.ws.close();
  await ex.stop();
});

test('rooms example: room messages, typing, send-to-user, shutdown notice', async () => {
  const ex = await startExample('rooms');
  const alice = await client(ex.port, '?user=alice');
  const bob = await client(ex.port, '?user=bob');
  const carol = await client(ex.port, '?user=carol');
  alice.send({ type: 'join_room', room: 'general' });
  bob.send({ type: 'join_room', room: 'general' });
  const joined = await alice.next((m) => m.type === 'user_joined' && m.user_id === 'bob');
  assert.equal(joined.count, 2);

  bob.send({ type: 'typing', room: 'general', data: true });
  alice.send({ type: 'message', room: 'general', data: 'hi all' });
  const typing = await alice.next((m) => m.type === 'typing');
  assert.deepEqual([typing.user_id, typing.typing], ['bob', true]);
  for (const c of [alice, bob]) {
    const m = await c.next((x) => x.type === 'chat_message');
    assert.deepEqual([m.user_id, m.message, m.room], ['alice', 'hi all', 'general']);
  }
  // bob never gets his own typing event; carol (not in the room) gets no chat.
  assert.ok(!bob.inbox.some((m) => m.type === 'typing'));

  carol.send({ type: 'send_to_user', user: 'bob', data: 'psst' });
  const note = await bob.next((m) => m.type === 'notification');
  assert.deepEqual([note.from, note.message], ['carol', 'psst']);
  assert.ok(!carol.inbox.some((m) => m.type === 'chat_message'));

  const closed = Promise.all(
    [alice, bob, carol].map((c) => new Promise((r) => c.ws.once('close', (code) => r(code)))),
  );
  const bye = alice.next((m) => m.type === 'server_shutdown');
  await Promise.all([ex.stop(), bye]);
  assert.deepEqual(await closed, [1001, 1001, 1001]);
});
