// drive.mjs — a representative run of the release server under valgrind's
// leak check (scripts/test.sh runs it; not a *.test.mjs, so `node --test`
// does not pick it up).
//
//   node tests/integration/valgrind/drive.mjs [SERVER_BINARY]
//
// Starts the server (default build/switchboard) under
// `valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
// --error-exitcode=99` with history in a temporary directory, drives it with
// clients of every kind — the JSON protocol on /ws (join, chat, history,
// direct, typing, users, broadcast, leave, errors), the raw relay, echo with
// fragmented and large messages, protocol violations, the HTTP API and
// static files — leaves some connections open and some requests and frames
// half-sent, then stops it with SIGTERM. Passes ("PASS valgrind: ...", exit
// 0) when the server exits 0 and valgrind reports no error; otherwise prints
// valgrind's report and exits 1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpConn, req } from '../lib/http.mjs';
import { api, HubClient } from '../lib/hub.mjs';
import { closePayload, frame, OP, rawConnect, RawClient } from '../lib/raw.mjs';
import {
  httpGet, randomUtf8, withTimeout, wsClose, wsConnect, wsNext, wsRoundTrip,
} from '../lib/util.mjs';

const BIN = process.argv[2] ??
  fileURLToPath(new URL('../../../build/switchboard', import.meta.url));
const START_MS = 30000; // valgrind starts the server slowly
const STOP_MS = 30000;

const LISTENING = /^switchboard (\S+) listening on http:\/\/127\.0\.0\.1:(\d+)\/$/m;

// Starts the server under valgrind; resolves {port, proc, exited, logFile}.
async function startUnderValgrind(dataDir) {
  const logFile = join(dataDir, 'valgrind.log');
  const proc = spawn('valgrind', [
    '--leak-check=full', '--errors-for-leak-kinds=definite,indirect', '--error-exitcode=99',
    '--show-leak-kinds=definite,indirect', '--track-origins=yes', `--log-file=${logFile}`,
    BIN, '--host', '127.0.0.1', '--port', '0', '--data-dir', join(dataDir, 'data'),
    '--ping-interval', '1s', '--history-size', '5', '--log-level', 'warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const closed = new Promise((resolve) => proc.on('close', resolve));
  let out = '';
  proc.stdout.setEncoding('utf8');
  const port = await withTimeout(new Promise((resolve, reject) => {
    proc.on('error', (e) => reject(new Error(`cannot run valgrind: ${e.message}`)));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = LISTENING.exec(out);
      if (m) resolve(Number(m[2]));
    });
    exited.then(({ code, signal }) => reject(new Error(
      `the server exited (code ${code}, signal ${signal}) before listening\n${stderr}`)));
  }), START_MS, `${BIN} under valgrind to listen`);
  return { port, proc, exited, closed, logFile, stderr: () => stderr };
}

// ---- the run -------------------------------------------------------------

async function chat(server) {
  const alice = await HubClient.connect(server, { label: 'alice' });
  const bob = await HubClient.connect(server, { label: 'bob' });
  const carol = await HubClient.connect(server, { label: 'carol' });
  await alice.join('general', 'alice');
  await bob.join('general', 'bob');
  await carol.join('lobby', 'carol', { spelling: 'join_room', roomField: 'room_id' });

  for (let i = 0; i < 8; i++) await alice.say('general', `message ${i} ${'✓'.repeat(i)}`);
  await bob.say('general', 'with data', { data: { n: [1, 2, 3] }, metadata: { k: 'v' } });
  bob.send({ type: 'history', room: 'general', since: 2, limit: 3 });
  const h = await bob.next('history');
  assert.equal(h.messages.length, 3);
  bob.send({ type: 'history', room: 'general' });
  await bob.next('history');
  carol.send({ type: 'history', room: 'general', limit: 500 });
  await carol.next('history');

  alice.send({ type: 'typing', room: 'general', typing: true });
  await bob.next('typing');
  alice.send({ type: 'typing', room: 'general', typing: false });
  await bob.next('typing');
  carol.send({ type: 'users', room: 'general' });
  await carol.next('users');

  alice.send({ type: 'direct', to: 'bob', content: 'psst' });
  await bob.next('direct');
  await alice.next('direct');
  bob.send({ type: 'direct', to: alice.id, data: { by: 'id' } });
  await alice.next('direct');
  carol.send({ type: 'broadcast', content: 'Announcement' });
  await alice.next('broadcast');
  await bob.next('broadcast');
  await carol.next('broadcast');

  // Errors: the connection stays open after each.
  await carol.expectError('{not json', 'invalid_json');
  await carol.expectError('42', 'not_object');
  await carol.expectError({ type: 'nope' }, 'unknown_type');
  await carol.expectError({ type: 'message', room: 'general', content: 'x' }, 'not_member');
  await carol.expectError({ type: 'join', room: 'bad room!' }, 'invalid_room');
  await carol.expectError({ type: 'join', nickname: 'alice' }, 'nickname_taken');
  await carol.expectError({ type: 'direct', to: 'nobody', content: 'x' }, 'unknown_user');
  await carol.expectError({ type: 'message', room: 'lobby', content: 'x'.repeat(5000) },
    'content_too_long');
  await carol.expectError(Buffer.from([1, 2, 3]), 'binary_not_supported', { binary: true });

  // A second connection of alice's user leaves, and a rejoin with since.
  bob.send({ type: 'leave', room: 'general' });
  await bob.next('user_left');
  bob.send({ type: 'join', room: 'general', since: 5 });
  await bob.next('history');
  await carol.close();
  // alice and bob stay connected through the shutdown.
  return [alice, bob];
}

async function relayAndEcho(server) {
  const raws = [await wsConnect(server, '/ws/raw'), await wsConnect(server, '/ws/raw')];
  raws[0].send('plain text for raw clients');
  for (const r of raws) await wsNext(r);
  raws[1].send(randomBytes(70000), { binary: true });
  for (const r of raws) await wsNext(r);
  await wsClose(raws[0]);

  // Large messages, spanning many reads: reassembled.
  const echo = await wsConnect(server, '/echo');
  await wsRoundTrip(echo, randomBytes(300 * 1024), { binary: true, ms: 30000 });
  await wsRoundTrip(echo, randomUtf8(100 * 1024), { binary: false, ms: 30000 });
  await wsClose(echo);

  // Fragmented, with a ping between the fragments.
  const raw = await RawClient.connect(server.port, { path: '/echo' });
  await raw.write(Buffer.concat([
    frame({ opcode: OP.TEXT, fin: false, payload: 'frag' }),
    frame({ opcode: OP.PING, payload: 'between' }),
    frame({ opcode: OP.CONT, fin: false, payload: 'ment' }),
    frame({ opcode: OP.CONT, payload: 'ed ✓' }),
  ]));
  const pong = await raw.nextFrame();
  assert.equal(pong.opcode, OP.PONG);
  const m = await raw.nextMessage();
  assert.equal(m.data.toString(), 'fragmented ✓');
  // A frame a byte at a time.
  const f = frame({ opcode: OP.BINARY, payload: randomBytes(200) });
  for (const byte of f) await raw.write(Buffer.from([byte]));
  await raw.nextMessage();
  await raw.send({ opcode: OP.CLOSE, payload: closePayload(1000, 'bye') });
  await raw.expectClose(1000);
  return raws[1];
}

async function violations(server) {
  const cases = [
    [frame({ opcode: OP.TEXT, payload: 'unmasked', mask: false }), 1002],
    [frame({ opcode: OP.TEXT, payload: Buffer.from([0x61, 0xed, 0xa0, 0x80]) }), 1007],
    [frame({ opcode: OP.BINARY, payload: Buffer.alloc(16), lenOverride: 64n * 1024n * 1024n }), 1009],
    [frame({ opcode: 3, payload: 'reserved' }), 1002],
    // Half a large message, then a violation: the reassembly buffer is freed.
    [Buffer.concat([frame({ opcode: OP.BINARY, fin: false, payload: randomBytes(40000) }),
      frame({ opcode: OP.TEXT, payload: 'not a continuation' })]), 1002],
  ];
  for (const [bytes, code] of cases) {
    const c = await RawClient.connect(server.port, { path: '/echo' });
    await c.write(bytes);
    await c.expectClose(code);
    c.destroy();
  }
}

async function http(server) {
  for (const path of ['/health', '/stats', '/status', '/metrics', '/api/rooms',
    '/api/rooms/general/users', '/', '/nope']) {
    const res = await httpGet(server, path);
    assert.ok(res.status === 200 || (path === '/nope' && res.status === 404), `${path}: ${res.status}`);
  }
  const page = await httpGet(server, '/');
  const again = await httpGet(server, '/', { headers: { 'If-None-Match': page.headers.etag } });
  assert.equal(again.status, 304);
  let res = await api(server, 'POST', '/api/broadcast', { body: { message: 'Hello everyone!' } });
  assert.equal(res.status, 200);
  res = await api(server, 'POST', '/api/broadcast', { body: { message: 'to general', room: 'general' } });
  assert.equal(res.status, 200);
  res = await api(server, 'POST', '/api/rooms/apiroom/messages', { body: { content: 'hi', nickname: 'bot' } });
  assert.equal(res.status, 201);
  res = await api(server, 'POST', '/api/broadcast', { raw: 'not json' });
  assert.equal(res.status, 400);
  res = await api(server, 'POST', '/api/rooms/general/users', { body: {} });
  assert.equal(res.status, 405);

  // Pipelined, chunked, and malformed requests.
  const c = await HttpConn.connect(server.port);
  await c.write(req('GET', '/health') + req('HEAD', '/stats') +
    'POST /api/rooms/general/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n' +
    'Content-Type: application/json\r\n\r\n10\r\n{"content":"chun\r\n6\r\nked!"}\r\n0\r\n\r\n');
  assert.equal((await c.readResponse()).status, 200);
  assert.equal((await c.readResponse({ head: true })).status, 200);
  assert.equal((await c.readResponse()).status, 201);
  c.destroy();
  const bad = await HttpConn.connect(server.port);
  await bad.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n');
  assert.equal((await bad.readResponse()).status, 400);
  await bad.expectEnd();
  const big = await HttpConn.connect(server.port);
  await big.write(`GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.equal((await big.readResponse()).status, 431);
  big.destroy();
}

// Connections left mid-request and mid-frame when the server stops: their
// partial state must be freed too.
async function leftHalfway(server) {
  const head = await rawConnect(server.port);
  head.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Half: ');
  const body = await rawConnect(server.port);
  body.write('POST /api/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mess');
  const frameHalf = await RawClient.connect(server.port, { path: '/echo' });
  await frameHalf.write(frame({ opcode: OP.BINARY, payload: randomBytes(100000) }).subarray(0, 50000));
  const headerHalf = await RawClient.connect(server.port, { path: '/ws' });
  await headerHalf.write(frame({ opcode: OP.TEXT, payload: 'x'.repeat(300) }).subarray(0, 3));
  // Let the server read them before the stop.
  await httpGet(server, '/health');
  return [head, body, frameHalf, headerHalf];
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sb-valgrind-'));
  let server;
  let ok = false;
  const t0 = Date.now();
  try {
    server = await startUnderValgrind(dir);
    const stay = await chat(server);
    const raw = await relayAndEcho(server);
    await violations(server);
    await http(server);
    const halves = await leftHalfway(server);
    // The heartbeat (--ping-interval 1s) pings a connection gone quiet.
    const ping = await halves[2].nextFrame({ ms: 15000, what: 'a heartbeat ping' });
    assert.equal(ping.opcode, OP.PING);

    const shutdownSeen = stay.map((c) => c.next('server_shutdown', null, { ms: STOP_MS }));
    server.proc.kill('SIGTERM');
    const res = await withTimeout(server.exited, STOP_MS, 'the server to exit after SIGTERM');
    await server.closed;
    await Promise.all(shutdownSeen);
    for (const c of [...halves, raw]) (c.destroy ? c.destroy() : c.terminate());
    const report = readFileSync(server.logFile, 'utf8');
    const summary = /ERROR SUMMARY: (\d+) errors/.exec(report);
    const inUse = /in use at exit: ([\d,]+ bytes in [\d,]+ blocks)/.exec(report);
    ok = res.signal === null && res.code === 0 && summary && summary[1] === '0';
    if (!ok) {
      console.log(report);
      console.log(`server stderr:\n${server.stderr()}`);
      console.log(`FAIL valgrind: the server exited with code ${res.code} (99: valgrind found ` +
        `errors), signal ${res.signal}; ${summary ? summary[0] : 'no ERROR SUMMARY'}`);
    } else {
      console.log(`PASS valgrind: ${summary[0]}, in use at exit ${inUse ? inUse[1] : '?'}, ` +
        `server exited 0 (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
  } catch (e) {
    console.log(`FAIL valgrind: ${e.stack ?? e}`);
    if (server) {
      console.log(`server stderr:\n${server.stderr()}`);
      server.proc.kill('SIGKILL');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

main();
