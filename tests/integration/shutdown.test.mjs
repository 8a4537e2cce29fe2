// shutdown.test.mjs — graceful shutdown: SIGTERM during active chat (every
// client gets server_shutdown and a 1001 close, the process exits 0 within
// shutdown_timeout, the history is intact after a restart), the
// shutdown_timeout setting cutting clients that do not close, and a second
// signal exiting at once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { start } from './lib/server.mjs';
import { HubClient, tempDir } from './lib/hub.mjs';
import { RawClient } from './lib/raw.mjs';
import { withTimeout } from './lib/util.mjs';

// Waits for the process to exit; resolves {code, signal, ms} (ms since `since`).
async function exitOf(s, since, ms) {
  const r = await withTimeout(s.exited, ms, 'the server to exit');
  return { ...r, ms: Date.now() - since };
}

describe('graceful shutdown', () => {
  test('SIGTERM during active chat: server_shutdown and 1001 to all, exit 0 in time, history intact', async () => {
    const data = tempDir('sb-shutdown-');
    const TIMEOUT_MS = 4000;
    try {
      const s = await start(['--data-dir', data.dir, '--shutdown-timeout', `${TIMEOUT_MS}ms`]);
      const clients = [];
      for (let i = 0; i < 4; i++) {
        const c = await HubClient.connect(s, { label: `chatter${i}` });
        await c.join('general', `chatter${i}`);
        clients.push(c);
      }
      // Each client talks in a closed loop: the next message goes out when
      // the server has sent the previous one back to it (so it is stored).
      // At most 100 each, so that one history page (500) holds them all.
      const confirmed = new Map(); // content -> id, as delivered to its sender
      const fives = [];
      const loops = clients.map((c, i) => {
        let fifth;
        fives.push(new Promise((resolve) => (fifth = resolve)));
        return (async () => {
          for (let n = 0; n < 100; n++) {
            const content = `c${i}-m${n}`;
            c.send({ type: 'message', room: 'general', content });
            let m;
            try {
              m = await c.next('message', { content }, { ms: 10000 });
            } catch {
              return; // the shutdown came first: this one may or may not be stored
            }
            confirmed.set(content, m.id);
            if (n === 4) fifth();
          }
        })();
      });
      await withTimeout(Promise.all(fives), 20000, 'five messages from each client');

      const mark = s.logMark();
      const t0 = Date.now();
      process.kill(s.pid, 'SIGTERM');
      const { code, signal, ms } = await exitOf(s, t0, TIMEOUT_MS + 10000);
      assert.equal(signal, null, `killed by a signal\n${s.stderr()}`);
      assert.equal(code, 0, `exit code\n${s.stderr()}`);
      assert.ok(ms < TIMEOUT_MS + 2000, `exited ${ms} ms after SIGTERM; shutdown_timeout is ${TIMEOUT_MS} ms`);
      await Promise.all(loops);
      await s.stop(); // asserts the clean exit again, waits for the pipes
      const log = s.stderr().slice(mark);
      assert.match(log, /info shutdown_started signal=SIGTERM timeout=4000ms /);
      assert.doesNotMatch(log, /shutdown timeout: closing/, 'every client closed in time');

      for (const c of clients) {
        await c.next('server_shutdown');
        const { code: closeCode } = await withTimeout(c.closed, 5000, `${c.label} closed`);
        assert.equal(closeCode, 1001, `${c.label}: close code`);
        assert.equal(c.received.at(-1).type, 'server_shutdown',
          `${c.label}: server_shutdown is the last message`);
      }

      // Restart on the same data: every message a sender saw confirmed is in
      // the history with the id it was delivered with, ids increasing.
      const again = await start(['--data-dir', data.dir]);
      try {
        const r = await HubClient.connect(again);
        r.send({ type: 'join', room: 'general', nickname: 'reader' });
        r.send({ type: 'history', room: 'general', limit: 500 });
        const h = await r.next('history', (m) => m.messages.length > 50 ||
          m.messages.length >= confirmed.size);
        assert.ok(h.messages.length < 500, 'one page holds the whole history');
        const byContent = new Map(h.messages.map((m) => [m.content, m.id]));
        for (const [content, id] of confirmed) {
          assert.equal(byContent.get(content), id, `"${content}" is in the history with id ${id}`);
        }
        const ids = h.messages.map((m) => m.id);
        for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], 'ids increase');
        await r.close();
      } finally {
        await again.stop();
      }
    } finally {
      data.remove();
    }
  });

  test('shutdown_timeout: a client that never answers the close is cut when it runs out', async () => {
    const s = await start(['--shutdown-timeout', '300ms']);
    const raw = await RawClient.connect(s.port, { allowHalfOpen: true });
    const mark = s.logMark();
    const t0 = Date.now();
    process.kill(s.pid, 'SIGTERM');
    const close = await raw.nextFrame({ ms: 5000, what: 'the 1001 close' });
    assert.equal(close.code, 1001);
    const { code, ms } = await exitOf(s, t0, 15000);
    assert.equal(code, 0, s.stderr());
    // the library's default close wait is 5 s: exiting well before shows
    // that the setting, not the default, decided
    assert.ok(ms < 4000, `exited after ${ms} ms with a 300 ms shutdown_timeout`);
    await s.stop();
    const log = s.stderr().slice(mark);
    assert.match(log, /info shutdown_started signal=SIGTERM timeout=300ms /);
    assert.match(log, /warn lib msg="shutdown timeout: closing 1 remaining connection\(s\)"/);
    raw.destroy();
  });

  test('a second signal exits at once, without waiting for shutdown_timeout', async () => {
    const s = await start(['--shutdown-timeout', '60s']);
    const raw = await RawClient.connect(s.port, { allowHalfOpen: true });
    const mark = s.logMark();
    process.kill(s.pid, 'SIGTERM');
    await s.waitForLog(/info shutdown_started signal=SIGTERM timeout=60000ms/, { from: mark });
    await raw.nextFrame({ ms: 5000, what: 'the 1001 close' });
    const t0 = Date.now();
    process.kill(s.pid, 'SIGINT');
    const { code, signal, ms } = await exitOf(s, t0, 15000);
    assert.equal(signal, null);
    assert.equal(code, 1, 'a forced exit says so in its status');
    assert.ok(ms < 10000, `exited ${ms} ms after the second signal (shutdown_timeout 60 s)`);
    assert.match(s.stderr().slice(mark), /warn shutdown_forced signal=SIGINT msg="second signal: exiting now"/);
    raw.destroy();
  });
});
