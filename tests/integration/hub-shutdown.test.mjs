// hub-shutdown.test.mjs — graceful shutdown (seeds 000 and 003): on SIGTERM
// every /ws client gets `server_shutdown`, then a close with 1001, and the
// process exits 0 (under ASan: no leak, no report).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertTimestamp, connectMany, startHub } from './lib/hub.mjs';
import { wsConnect } from './lib/util.mjs';

test('SIGTERM: server_shutdown to every client, then close 1001, then exit 0', async () => {
  const server = await startHub();
  const clients = await connectMany(server, 4, 'sd');
  const raw = await wsConnect(server, '/ws/raw');
  const [a, b, c] = clients;
  await a.join('general', 'stayer');
  await b.join('general');
  await c.join('other');
  // clients[3] is in no room.
  await a.next('user_joined', { user_id: b.id });

  await server.stop(); // SIGTERM; asserts exit code 0
  for (const x of clients) {
    const m = await x.next('server_shutdown');
    assert.equal(m.message, 'Server is shutting down');
    assertTimestamp(m.timestamp);
    const { code } = await x.closed;
    assert.equal(code, 1001, `${x.label}: close code`);
    assert.equal(x.received.at(-1).type, 'server_shutdown', `${x.label}: nothing after server_shutdown`);
  }
  const { code } = await raw.closed;
  assert.equal(code, 1001, 'raw clients are closed with 1001 too');
  assert.match(server.stderr(), /stopped/);
});

test('SIGTERM with no clients exits 0', async () => {
  const server = await startHub();
  await server.stop();
});
