// logging.test.mjs — the server's log on stderr: every line structured as
// "TIME LEVEL EVENT key=value ..." (values with spaces or quotes quoted), the
// library's messages mapped into it, one access line per HTTP request and
// per WebSocket session, the periodic stats line, and the log level.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { start } from './lib/server.mjs';
import { HubClient, api } from './lib/hub.mjs';
import { httpGet, wsConnect, wsClose, wsRoundTrip } from './lib/util.mjs';

const HEAD = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (error|warn|info|debug) ([a-z_]+)((?: [a-z_]+=(?:"(?:[^"\\]|\\.)*"|[^\s"=]+))*)$/;

// Parses one log line: {time, level, event, fields}; asserts its shape.
function parseLine(line) {
  const m = HEAD.exec(line);
  assert.ok(m, `a structured log line: ${JSON.stringify(line)}`);
  const fields = {};
  for (const f of m[4].matchAll(/ ([a-z_]+)=("(?:[^"\\]|\\.)*"|[^\s"=]+)/g)) {
    let v = f[2];
    if (v.startsWith('"')) {
      v = v.slice(1, -1).replace(/\\(x[0-9a-f]{2}|.)/g, (_, e) =>
        e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16))
          : e === 'n' ? '\n' : e === 't' ? '\t' : e);
    }
    fields[f[1]] = v;
  }
  return { time: m[1], level: m[2], event: m[3], fields };
}

function lines(text) {
  return text.split('\n').filter(Boolean);
}

// The access lines of the log after mark, parsed.
function accessLines(s, mark = 0) {
  return lines(s.stderr().slice(mark)).map(parseLine).filter((l) => l.event === 'access');
}

describe('log lines', () => {
  test('every line the server writes is TIME LEVEL EVENT key=value ..., at debug too', async () => {
    const s = await start(['--log-level', 'debug', '--stats-interval', '100ms']);
    const c = await HubClient.connect(s);
    await c.join('general');
    await c.say('general', 'with "quotes" and spaces');
    await httpGet(s, '/health');
    await httpGet(s, '/nope');
    await s.waitForLog(/ info stats /);
    await c.close();
    await s.stop();
    const all = lines(s.stderr()).map(parseLine);
    const events = new Set(all.map((l) => l.event));
    for (const e of ['started', 'access', 'lib', 'stats', 'shutdown_started', 'stopped']) {
      assert.ok(events.has(e), `an "${e}" line (events: ${[...events].join(', ')})`);
    }
    for (const l of all) assert.ok(Math.abs(Date.parse(l.time) - Date.now()) < 120_000, l.time);
    const started = all.find((l) => l.event === 'started');
    assert.equal(started.fields.port, String(s.port));
    assert.equal(started.fields.version, s.stdout().split(' ')[1]);
  });

  test('library messages become "lib" events with the text in msg, quoted', async () => {
    const s = await start(['--log-level', 'debug']);
    const ws = await wsConnect(s, '/echo');
    const open = await s.waitForLog(/^.* debug lib msg="(c-\w+): WebSocket open on \/echo"$/m);
    await wsClose(ws, 1000);
    await s.waitForLog(new RegExp(`debug lib msg="${open[1]}: WebSocket closed \\(1000\\)"`));
    await s.stop();
    const stop = lines(s.stderr()).map(parseLine).find((l) => l.event === 'lib' &&
      l.fields.msg.startsWith('shutting down'));
    assert.deepEqual(stop.fields, { msg: 'shutting down: closing 0 connection(s)' });
    assert.equal(stop.level, 'info');
  });

  test('--log-level warn: no info or debug line at all', async () => {
    const s = await start(['--log-level', 'warn', '--stats-interval', '50ms']);
    await httpGet(s, '/health');
    const ws = await wsConnect(s, '/echo');
    await wsRoundTrip(ws, Buffer.from('x'));
    await wsClose(ws);
    await s.stop();
    for (const l of lines(s.stderr()).map(parseLine)) {
      assert.ok(l.level === 'warn' || l.level === 'error', `only warn and error: ${l.level} ${l.event}`);
    }
  });
});

describe('access log', () => {
  test('one line per HTTP request: method, path without the query, status, bytes, duration', async () => {
    const s = await start([]);
    try {
      let mark = s.logMark();
      const health = await httpGet(s, '/health?verbose=1');
      let m = await s.waitForLog(/^.* access proto=http .*$/m, { from: mark });
      let l = parseLine(m[0]);
      assert.equal(l.level, 'info');
      assert.equal(l.fields.method, 'GET');
      assert.equal(l.fields.path, '/health');
      assert.equal(l.fields.status, '200');
      assert.equal(l.fields.bytes_in, '0');
      assert.equal(Number(l.fields.bytes_out), Buffer.byteLength(health.body));
      assert.match(l.fields.peer, /^127\.0\.0\.1:\d+$/);
      assert.match(l.fields.duration_ms, /^\d+$/);
      assert.equal(l.fields.msgs_in, undefined, 'no message counts for HTTP');

      mark = s.logMark();
      assert.equal((await httpGet(s, '/no/such/page')).status, 404);
      m = await s.waitForLog(/^.* access proto=http .*$/m, { from: mark });
      l = parseLine(m[0]);
      assert.equal(l.fields.path, '/no/such/page');
      assert.equal(l.fields.status, '404');

      mark = s.logMark();
      const body = { message: 'hello from the access-log test' };
      const res = await api(s, 'POST', '/api/broadcast', { body });
      m = await s.waitForLog(/^.* access proto=http .*$/m, { from: mark });
      l = parseLine(m[0]);
      assert.equal(l.fields.method, 'POST');
      assert.equal(l.fields.path, '/api/broadcast');
      assert.equal(l.fields.status, String(res.status));
      assert.equal(Number(l.fields.bytes_in), Buffer.byteLength(JSON.stringify(body)));

      // three requests, three lines
      assert.equal(accessLines(s).length, 3);
    } finally {
      await s.stop();
    }
  });

  test('one line per WebSocket session: duration, messages and bytes each way, close code', async () => {
    const s = await start([]);
    try {
      const mark = s.logMark();
      const c = await HubClient.connect(s);
      await c.join('general', 'logger');
      await c.say('general', 'one');
      await c.say('general', 'two');
      await c.sync();
      assert.equal(accessLines(s, mark).length, 0, 'no access line while the session is open');
      await c.close();
      const m = await s.waitForLog(/^.* access proto=ws .*$/m, { from: mark });
      const l = parseLine(m[0]);
      assert.equal(l.fields.method, 'GET');
      assert.equal(l.fields.path, '/ws');
      assert.equal(l.fields.status, '101');
      assert.equal(l.fields.close, '1000');
      assert.equal(Number(l.fields.msgs_in), c.sent.messages, 'messages received from the client');
      assert.equal(Number(l.fields.bytes_in), c.sent.bytes);
      assert.equal(Number(l.fields.msgs_out), c.got.messages, 'messages sent to the client');
      assert.equal(Number(l.fields.bytes_out), c.got.bytes);
      assert.match(l.fields.peer, /^127\.0\.0\.1:\d+$/);

      // a session cut without a close frame reports 1006
      const mark2 = s.logMark();
      const d = await HubClient.connect(s);
      await d.terminate();
      const m2 = await s.waitForLog(/^.* access proto=ws .*$/m, { from: mark2 });
      assert.equal(parseLine(m2[0]).fields.close, '1006');
    } finally {
      await s.stop();
    }
  });

  test('access_log false: no access lines, everything else still logged', async () => {
    const s = await start(['--no-access-log']);
    await httpGet(s, '/health');
    const c = await HubClient.connect(s);
    await c.close();
    await s.stop();
    const all = lines(s.stderr()).map(parseLine);
    assert.equal(all.filter((l) => l.event === 'access').length, 0);
    assert.ok(all.some((l) => l.event === 'stopped'));
  });
});

describe('stats line', () => {
  test('every stats_interval: connections, users, rooms, messages per second in and out', async () => {
    const s = await start(['--stats-interval', '200ms']);
    try {
      const first = parseLine((await s.waitForLog(/^.* info stats .*$/m))[0]);
      for (const k of ['connections', 'users', 'rooms', 'msgs_in_per_s', 'msgs_out_per_s']) {
        assert.ok(k in first.fields, `stats has ${k}`);
      }
      const a = await HubClient.connect(s, { label: 'a' });
      const b = await HubClient.connect(s, { label: 'b' });
      await a.join('general');
      await b.join('general');
      await a.join('other');
      const mark = s.logMark();
      for (let i = 0; i < 5; i++) await a.say('general', `m${i}`);
      // the next line covering these messages: a non-zero rate in and out
      const m = await s.waitForLog(
        /^.* info stats connections=2 users=2 rooms=2 msgs_in_per_s=(?!0\.0 )\S+ msgs_out_per_s=(?!0\.0 )\S+ .*$/m,
        { from: mark });
      const l = parseLine(m[0]);
      assert.ok(Number(l.fields.msgs_in_per_s) > 0);
      assert.ok(Number(l.fields.msgs_out_per_s) >= Number(l.fields.msgs_in_per_s),
        'each message goes out to two members');
      await a.close();
      await b.close();
      await s.waitForLog(/info stats connections=0 users=0 /, { from: s.logMark() });
    } finally {
      await s.stop();
    }
  });

  test('stats_interval 0: no stats line, until a reload sets an interval', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-logging-'));
    const file = join(dir, 'switchboard.yaml');
    writeFileSync(file, 'stats_interval: 0\n');
    const s = await start(['--config', file]);
    try {
      const c = await HubClient.connect(s);
      await c.join('general');
      await c.close();
      assert.doesNotMatch(s.stderr(), / stats /);
      writeFileSync(file, 'stats_interval: 100ms\n');
      const mark = s.logMark();
      process.kill(s.pid, 'SIGHUP');
      await s.waitForLog(/config_reloaded \S+ changed="stats_interval 0 -> 100ms"/, { from: mark });
      await s.waitForLog(/ info stats connections=0 users=0 rooms=1 /, { from: mark });
    } finally {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
