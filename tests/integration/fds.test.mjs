// Out of file descriptors: the server's limit is lowered while it runs
// (prlimit); past it, new clients get a clean 503 instead of waiting in the
// backlog, the open ones keep being served, and once descriptors free up new
// clients get in again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import WebSocket from 'ws';

import { start } from './lib/server.mjs';
import { withTimeout } from './lib/util.mjs';
import { api } from './lib/hub.mjs';

// Opens a WebSocket to /echo: resolves {ws} once open, or {status} when the
// server answers the handshake with an HTTP error.
function tryConnect(server) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(`${server.wsUrl}echo`, { perMessageDeflate: false });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    ws.once('error', reject);
  }), 10000, 'a WebSocket handshake');
}

async function echo(ws, text) {
  const got = withTimeout(new Promise((resolve) => ws.once('message', (d) => resolve(String(d)))),
    10000, 'an echo');
  ws.send(text);
  assert.equal(await got, text);
}

test('past the descriptor limit new clients get 503, and get in again once some leave', async () => {
  const server = await start();
  const open = [];
  try {
    const used = readdirSync(`/proc/${server.pid}/fd`).length;
    const limit = used + 8;
    execFileSync('prlimit', ['--pid', String(server.pid), `--nofile=${limit}:${limit}`]);

    const refused = [];
    for (let i = 0; i < 20; i++) {
      const r = await tryConnect(server);
      if (r.ws) open.push(r.ws);
      else refused.push(r);
    }
    assert.ok(open.length >= 4 && open.length <= 9, `${open.length} connections got in`);
    assert.equal(open.length + refused.length, 20);
    for (const r of refused) {
      assert.equal(r.status, 503);
      assert.match(r.body, /at capacity/);
    }
    for (const [i, ws] of open.entries()) await echo(ws, `still served ${i}`);

    // Free three descriptors: new clients get in again, and /stats says what happened.
    for (const ws of open.splice(0, 3)) {
      const closed = new Promise((resolve) => ws.once('close', resolve));
      ws.close(1000);
      await withTimeout(closed, 10000, 'a close');
    }
    const stats = await api(server, 'GET', '/stats');
    assert.equal(stats.status, 200);
    assert.equal(stats.json.connections_shed, refused.length);
    const again = await tryConnect(server);
    assert.ok(again.ws, `a new client gets in once descriptors are free (got ${again.status})`);
    open.push(again.ws);
    await echo(again.ws, 'back in');
    assert.match(server.stderr(), /out of file descriptors/);
  } finally {
    for (const ws of open) ws.terminate();
    await server.stop();
  }
});
