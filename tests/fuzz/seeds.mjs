// seeds.mjs — writes the seed corpus of every fuzz target into
// tests/fuzz/corpus/<target>/ (run: node tests/fuzz/seeds.mjs). The seeds are
// small, real inputs in each target's input format (see the comment at the
// top of each fuzz_<name>.c): valid frames of each kind, fragmented
// messages, close frames, real HTTP requests, every message of
// docs/protocol.md, and some invalid ones. Inputs libFuzzer found and
// `make fuzz-merge` added (named by their SHA-1) are left alone.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CORPUS = join(dirname(fileURLToPath(import.meta.url)), 'corpus');

function write(target, name, bytes) {
  const dir = join(CORPUS, target);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), Buffer.from(bytes));
}

const b = (x) => (Buffer.isBuffer(x) ? x : Buffer.from(x));

// ---- WebSocket frames --------------------------------------------------

const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };
const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

// One frame; masked unless mask is false. bits forces the length encoding.
function frame(opcode, payload = '', { fin = true, rsv = 0, mask = true, bits, len } = {}) {
  payload = b(payload);
  const n = BigInt(len ?? payload.length);
  const enc = bits ?? (n < 126n ? 7 : n < 65536n ? 16 : 64);
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (enc === 7) head.push(m | Number(n));
  else if (enc === 16) {
    head.push(m | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(Number(n));
  } else {
    head.push(m | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(n);
  }
  const body = Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= KEY[i & 3];
  return Buffer.concat([Buffer.from(head), ext, mask ? KEY : Buffer.alloc(0), body]);
}

function close(code, reason = '', opts) {
  const r = b(reason);
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code);
  r.copy(p, 2);
  return frame(OP.CLOSE, p, opts);
}

// ---- fuzz_frame: 4 settings bytes, then the stream ----------------------

// masked: the server side; rsv1: permessage-deflate negotiated; chunk: 0
// byte at a time, 1 up to 7, 2 up to 300, 3 at once; limits index
// {0, 1, 10, 125, 126, 200, 65535, 65536}.
function frameSettings({ masked = true, rsv1 = false, chunk = 1, maxMessage = 0, maxFrame = 0,
  seed = 0x1234 } = {}) {
  return Buffer.from([(masked ? 1 : 0) | (rsv1 ? 2 : 0) | (chunk << 2) | (maxMessage << 4),
    maxFrame, seed >> 8, seed & 0xff]);
}

function frameSeed(name, stream, settings) {
  write('fuzz_frame', name, Buffer.concat([frameSettings(settings), ...stream]));
}

const euro = Buffer.from('€'); // e2 82 ac
frameSeed('text', [frame(OP.TEXT, 'Hello, Switchboard!')]);
frameSeed('text-bytewise', [frame(OP.TEXT, 'Hello')], { chunk: 0 });
frameSeed('text-unmasked-client-side', [frame(OP.TEXT, 'Hello', { mask: false })],
  { masked: false, chunk: 2 });
frameSeed('binary', [frame(OP.BINARY, Buffer.from([0, 1, 2, 0xfe, 0xff]))], { chunk: 3 });
frameSeed('empty-text-and-binary', [frame(OP.TEXT), frame(OP.BINARY)]);
frameSeed('fragmented-with-ping', [
  frame(OP.TEXT, 'Hel', { fin: false }), frame(OP.PING, 'are you there'),
  frame(OP.CONT, 'lo ', { fin: false }), frame(OP.CONT, '', { fin: false }),
  frame(OP.CONT, 'world'),
]);
frameSeed('utf8-split-across-fragments', [
  frame(OP.TEXT, Buffer.concat([b('price: '), euro.subarray(0, 1)]), { fin: false }),
  frame(OP.CONT, euro.subarray(1, 2), { fin: false }),
  frame(OP.CONT, Buffer.concat([euro.subarray(2), b(' 😀')])),
]);
frameSeed('len16', [frame(OP.BINARY, Buffer.alloc(300, 0x61))], { chunk: 2 });
frameSeed('len64-nonminimal', [frame(OP.TEXT, 'x'.repeat(130), { bits: 64 })], { chunk: 2 });
frameSeed('len16-nonminimal', [frame(OP.TEXT, 'short', { bits: 16 })]);
frameSeed('ping-pong', [frame(OP.PING, 'hi'), frame(OP.PONG, 'unsolicited'), frame(OP.PING)]);
frameSeed('close-1000', [close(1000, 'bye')]);
frameSeed('close-empty', [frame(OP.CLOSE)]);
frameSeed('close-4000-utf8-reason', [close(4000, 'done ✓')]);
frameSeed('close-1-byte', [frame(OP.CLOSE, Buffer.from([3]))]);
frameSeed('close-bad-code', [close(1005)]);
frameSeed('close-bad-reason', [close(1000, Buffer.from([0xc3, 0x28]))]);
frameSeed('pipelined', [frame(OP.TEXT, 'one'), frame(OP.BINARY, 'two'), frame(OP.PING, 'p'),
  frame(OP.TEXT, 'three'), close(1001, 'going')], { chunk: 1, seed: 7 });
frameSeed('compressed-rsv1', [frame(OP.TEXT, Buffer.from([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0]),
  { rsv: 4 })], { rsv1: true });
frameSeed('compressed-fragmented', [frame(OP.BINARY, 'abc', { rsv: 4, fin: false }),
  frame(OP.CONT, 'def')], { rsv1: true });
frameSeed('rsv-not-negotiated', [frame(OP.TEXT, 'x', { rsv: 4 })]);
frameSeed('rsv-on-continuation', [frame(OP.TEXT, 'x', { rsv: 4, fin: false }),
  frame(OP.CONT, 'y', { rsv: 4 })], { rsv1: true });
frameSeed('reserved-opcode-3', [frame(3, 'x')]);
frameSeed('reserved-opcode-11', [frame(11)]);
frameSeed('unmasked-on-server-side', [frame(OP.TEXT, 'x', { mask: false })]);
frameSeed('masked-on-client-side', [frame(OP.TEXT, 'x')], { masked: false });
frameSeed('control-too-long', [frame(OP.PING, Buffer.alloc(126, 0x70))]);
frameSeed('control-fragmented', [frame(OP.PING, 'x', { fin: false })]);
frameSeed('continuation-alone', [frame(OP.CONT, 'x')]);
frameSeed('new-message-inside-fragmented', [frame(OP.TEXT, 'a', { fin: false }),
  frame(OP.TEXT, 'b')]);
frameSeed('invalid-utf8', [frame(OP.TEXT, Buffer.from([0x61, 0xed, 0xa0, 0x80]))]);
frameSeed('invalid-utf8-after-chunks', [frame(OP.TEXT,
  Buffer.concat([Buffer.alloc(40, 0x61), Buffer.from([0xf4, 0x90])]))], { chunk: 1, seed: 99 });
frameSeed('text-ends-inside-character', [frame(OP.TEXT, euro.subarray(0, 2))]);
frameSeed('message-too-big', [frame(OP.TEXT, 'x'.repeat(11))], { maxMessage: 2 });
frameSeed('fragments-too-big', [frame(OP.BINARY, 'x'.repeat(8), { fin: false }),
  frame(OP.CONT, 'y'.repeat(8))], { maxMessage: 2, maxFrame: 2 });
frameSeed('frame-too-big', [frame(OP.BINARY, 'x'.repeat(20))], { maxFrame: 2 });
frameSeed('len64-top-bit', [Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1])]);
frameSeed('truncated-header', [Buffer.from([0x81, 0xfe, 0x01])]);

// ---- fuzz_utf8: 2 bytes of split point, then the text -------------------

function utf8Seed(name, text, split = 3) {
  write('fuzz_utf8', name, Buffer.concat([Buffer.from([split >> 8, split & 0xff]), b(text)]));
}
utf8Seed('ascii', 'Hello, world! A plain ASCII line of some length.', 9);
utf8Seed('mixed', 'aé€😀 ünïcödé ✓ — 漢字 𝄞', 5);
utf8Seed('char-at-word-boundary', Buffer.concat([b('abcdefg'), euro, b('abcdefgh'), euro]), 8);
utf8Seed('overlong-2', Buffer.from([0xc0, 0xaf]));
utf8Seed('overlong-3', Buffer.from([0xe0, 0x80, 0xaf]));
utf8Seed('overlong-4', Buffer.from([0xf0, 0x80, 0x80, 0xaf]));
utf8Seed('surrogate', Buffer.from([0xed, 0xa0, 0x80]));
utf8Seed('above-10ffff', Buffer.from([0xf4, 0x90, 0x80, 0x80]));
utf8Seed('max-10ffff', Buffer.from([0xf4, 0x8f, 0xbf, 0xbf]), 2);
utf8Seed('truncated', Buffer.from([0x61, 0xf0, 0x9f, 0x98]), 2);
utf8Seed('stray-continuation', Buffer.from([0x61, 0x80, 0x62]));
utf8Seed('bad-lead-f8', Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]));
utf8Seed('bad-continuation', Buffer.from([0xe2, 0x28, 0xa1]));

// ---- fuzz_http: 3 settings bytes, then the stream -----------------------

// chunk as for frames; head index {48, 256, 1024, 8192}; body {0, 10, 100, 1 MiB}.
function httpSeed(name, text, { chunk = 1, head = 3, body = 3, seed = 0x2345 } = {}) {
  // latin1: every character is one byte, so '\x81' is the byte 0x81.
  write('fuzz_http', name, Buffer.concat([Buffer.from([chunk | (head << 2) | (body << 4),
    seed >> 8, seed & 0xff]), Buffer.from(text, 'latin1')]));
}
const wsHandshake = 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n' +
  'Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n' +
  'Origin: http://example.com\r\n\r\n';
httpSeed('get', 'GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88\r\n' +
  'Accept: */*\r\n\r\n');
httpSeed('websocket-handshake', wsHandshake, { chunk: 2 });
httpSeed('websocket-handshake-and-frame', wsHandshake + '\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58',
  { chunk: 3 });
httpSeed('pipelined', 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n' +
  'POST /api/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\n' +
  'Host: x\r\nConnection: close\r\n\r\n', { chunk: 1 });
httpSeed('post-json', 'POST /api/broadcast HTTP/1.1\r\nHost: localhost:8080\r\n' +
  'Content-Type: application/json\r\nContent-Length: 31\r\n\r\n{"message": "Hello everyone!"}\n');
httpSeed('chunked-body', 'POST /api/rooms/general/messages HTTP/1.1\r\nHost: x\r\n' +
  'Transfer-Encoding: chunked\r\n\r\n5\r\n{"con\r\n11;ext=1\r\ntent":"hi there"}\r\n' +
  '0\r\nX-Trailer: t\r\n\r\n', { chunk: 1, seed: 5 });
httpSeed('http10', 'GET / HTTP/1.0\r\n\r\n');
httpSeed('http10-keepalive', 'GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n');
httpSeed('absolute-uri', 'GET http://example.com:8080/api/rooms?x=1#frag HTTP/1.1\r\nHost: example.com\r\n\r\n');
httpSeed('no-host', 'GET / HTTP/1.1\r\n\r\n');
httpSeed('empty-header-value', 'GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Blank:   \r\n\r\n');
httpSeed('blanks-around-values', 'GET / HTTP/1.1\r\nHost:   x  \r\nUpgrade:\twebsocket \t\r\n\r\n');
httpSeed('obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  folded\r\n\r\n');
httpSeed('space-in-header-name', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n');
httpSeed('head-too-large', 'GET /' + 'a'.repeat(300) + ' HTTP/1.1\r\nHost: x\r\n\r\n', { head: 1 });
httpSeed('leading-blank-lines', '\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n', { head: 0, chunk: 0 });
// Blank lines are not handed to a callback: the raw head bound must refuse
// this (48-byte head limit) whether it comes at once or in pieces.
httpSeed('leading-blank-lines-over-limit', '\r\n'.repeat(30) + 'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
  { head: 0, chunk: 1 });
httpSeed('many-headers', 'GET / HTTP/1.1\r\n' +
  Array.from({ length: 70 }, (_, i) => `H${i}: ${i}\r\n`).join('') + '\r\n');
httpSeed('body-too-large', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n' + 'b'.repeat(50),
  { body: 1 });
httpSeed('chunked-too-large', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
  '20\r\n' + 'c'.repeat(32) + '\r\n0\r\n\r\n', { body: 1 });
httpSeed('bad-request-line', 'GET\r\n\r\n');
httpSeed('bad-method', 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n');
httpSeed('http2-preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
httpSeed('version-9', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n');
httpSeed('content-length-and-chunked', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n' +
  'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
httpSeed('duplicate-content-length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n' +
  'Content-Length: 2\r\n\r\nab');
httpSeed('connect', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
httpSeed('options-star', 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n');

// ---- fuzz_handshake: value \n token \n subprotocols... -------------------

function handshakeSeed(name, ...parts) {
  write('fuzz_handshake', name, parts.join('\n'));
}
handshakeSeed('rfc-key', 'dGhlIHNhbXBsZSBub25jZQ==', 'websocket', 'chat', 'superchat');
handshakeSeed('key-with-blanks', ' \tdGhlIHNhbXBsZSBub25jZQ== ', 'Upgrade');
handshakeSeed('key-too-short', 'dGhlIHNhbXBsZSBub25jZQ=', 'upgrade');
handshakeSeed('key-not-base64', 'dGhlIHNhbXBsZSBub25jZ!==', 'upgrade');
handshakeSeed('key-24-bytes', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'upgrade');
handshakeSeed('connection-list', 'keep-alive, Upgrade', 'upgrade', 'chat');
handshakeSeed('connection-list-blanks', ' keep-alive ,\tUPGRADE\t, ,', 'upgrade');
handshakeSeed('upgrade-list', 'h2c, websocket/13, WebSocket', 'websocket');
handshakeSeed('subprotocols', 'superchat, chat', 'websocket', 'chat', 'superchat');
handshakeSeed('subprotocol-case', 'Chat, SUPERCHAT', 'websocket', 'chat', 'superchat');
handshakeSeed('subprotocol-none', 'v1.json, v2.json', 'websocket', 'v3.json');
handshakeSeed('empty', '', '');

// ---- fuzz_protocol: settings byte, then segments separated by 0xff -------

// A WebSocket message from client c (0-2 on /ws, 3 on /ws/raw) with flags
// (0x04 binary, 0x08 fragmented, 0x10 reconnect first, 0x20 close after).
const ws = (c, msg, flags = 0) =>
  Buffer.concat([Buffer.from([c | flags]), b(typeof msg === 'string' ? msg : JSON.stringify(msg))]);
// An API request (0..7: broadcast, room messages, rooms, room users, stats,
// metrics, health, messages to the room named first) with a JSON body.
const api = (which, body = '', auth = false) =>
  Buffer.concat([Buffer.from([0xc0 | which | (auth ? 8 : 0)]),
    b(typeof body === 'string' ? body : JSON.stringify(body))]);
const http = (text) => Buffer.concat([Buffer.from([0x80]), b(text)]);

function protocolSeed(name, segments, settings = 0) {
  const parts = [Buffer.from([settings])];
  segments.forEach((s, i) => {
    if (s.includes(0xff)) throw new Error(`${name}: segment ${i} holds the separator 0xff`);
    if (i) parts.push(Buffer.from([0xff]));
    parts.push(s);
  });
  write('fuzz_protocol', name, Buffer.concat(parts));
}

const joinMsg = (nickname, room) => ({ type: 'join', ...(room ? { room } : {}), ...(nickname ? { nickname } : {}) });
protocolSeed('join-and-chat', [
  ws(0, joinMsg('alice', 'general')), ws(1, joinMsg('bob')),
  ws(0, { type: 'message', room: 'general', content: 'Hi!' }),
  ws(1, { type: 'message', content: 'Hello', data: { x: 1 }, metadata: { k: 'v' } }),
]);
protocolSeed('spellings', [
  ws(0, { type: 'join_room', room_id: 'lobby', name: 'carol' }),
  ws(0, { type: 'message', room_id: 'lobby', message: 'seed spelling' }),
  ws(0, { type: 'typing', room_id: 'lobby', data: true }),
  ws(0, { type: 'leave_room', room_id: 'lobby' }),
]);
protocolSeed('leave', [ws(0, joinMsg('dave', 'r1')), ws(1, joinMsg(null, 'r1')),
  ws(0, { type: 'leave', room: 'r1' }), ws(1, { type: 'users', room: 'r1' })]);
protocolSeed('broadcast', [ws(0, { type: 'broadcast', content: 'Announcement' }),
  ws(1, { type: 'broadcast', data: [1, 2, 3] })]);
protocolSeed('typing', [ws(0, joinMsg('a')), ws(1, joinMsg('b')),
  ws(0, { type: 'typing', room: 'general', typing: true }),
  ws(1, { type: 'typing', room: 'general', typing: false })]);
protocolSeed('ping', [ws(0, { type: 'ping' }), ws(2, { type: 'ping', timestamp: 'x' })]);
protocolSeed('history', [ws(0, joinMsg('h')), ws(0, { type: 'message', content: 'one' }),
  ws(0, { type: 'message', content: 'two' }),
  ws(1, { type: 'history', room: 'general', since: 1, limit: 50 }),
  ws(1, { type: 'history', room: 'general' }),
  ws(2, { type: 'join', room: 'general', since: 1 })]);
protocolSeed('users', [ws(0, joinMsg('u1')), ws(1, joinMsg('u2')), ws(2, { type: 'users', room: 'general' })]);
protocolSeed('direct', [ws(0, joinMsg('alice')), ws(1, joinMsg('bob')),
  ws(0, { type: 'direct', to: 'bob', content: 'psst' }),
  ws(1, { type: 'direct', to: 'c-1', content: 'by id' }),
  ws(2, { type: 'direct', to: 'nobody', content: 'x' })]);
protocolSeed('nickname-taken', [ws(0, joinMsg('same')), ws(1, joinMsg('same')), ws(1, joinMsg('c-1')),
  ws(2, joinMsg('bad nick!'))]);
protocolSeed('errors', [ws(0, '{not json'), ws(0, '42'), ws(0, '[]'), ws(0, '{}'),
  ws(0, { type: 7 }), ws(0, { type: 'nope' }), ws(0, { type: 'message', content: 'x' }),
  ws(0, { type: 'join', room: 'bad room!' }), ws(0, { type: 'join', room: 5 }),
  ws(0, { type: 'history', room: 'general', since: -1 }),
  ws(0, { type: 'typing', room: 'general', typing: 'yes' }),
  ws(0, { type: 'users', room: 'missing' }), ws(0, { type: 'direct' }),
  ws(0, { type: 'message', room: 'general' }),
  ws(0, '{"type":"join","type":"join"}')]);
protocolSeed('binary-on-ws', [ws(0, '{"type":"ping"}', 0x04)]);
protocolSeed('content-too-long', [ws(0, joinMsg('long')),
  ws(0, { type: 'message', content: 'x'.repeat(40) })], 0x02);
protocolSeed('fixed-rooms', [ws(0, joinMsg('f', 'lobby')), ws(0, joinMsg('f', 'other')),
  ws(1, { type: 'history', room: 'other' })], 0x01);
protocolSeed('fragmented', [ws(0, joinMsg('frag'), 0x08),
  ws(0, { type: 'message', content: 'in three frames with a ping' }, 0x08)]);
protocolSeed('reconnect-and-close', [ws(0, joinMsg('x', 'r')), ws(0, joinMsg('x', 'r'), 0x10),
  ws(1, joinMsg('y', 'r'), 0x20), ws(1, { type: 'users', room: 'r' })]);
protocolSeed('invalid-utf8', [ws(0, joinMsg('z')),
  Buffer.concat([Buffer.from([1]), Buffer.from('{"type":"message","content":"\xed\xa0\x80"}', 'latin1')]),
  ws(1, { type: 'users', room: 'general' })]);
protocolSeed('raw-relay', [ws(3, 'plain text for raw clients'), ws(3, Buffer.from([0, 1, 2]), 0x04),
  ws(3, 'fragmented raw text', 0x08)]);
protocolSeed('echo', [ws(3, 'to raw', 0x10), ws(3, 'echo me'), ws(3, 'echo fragmented', 0x0c)]);
protocolSeed('raw-frames', [Buffer.concat([Buffer.from([0x40]), frame(OP.PING, 'raw ping'),
  frame(OP.TEXT, '{"type":"ping"}')]), Buffer.concat([Buffer.from([0x41]), frame(3, 'reserved')])]);
protocolSeed('api', [ws(0, joinMsg('api')), api(0, { message: 'Hello everyone!' }),
  api(0, { message: 'to a room', room: 'general' }), api(1, { content: 'bot says', nickname: 'bot' }),
  api(2), api(3), api(4), api(5), api(6), api(7, 'newroom{"content":"created by the API"}')]);
protocolSeed('api-errors', [api(0, 'not json'), api(0, { room: 'general' }),
  api(0, { message: 'x', room: 'missing' }), api(1, { data: null }), api(1, { content: 5 }),
  api(7, 'bad!room{"content":"x"}')]);
protocolSeed('presence-limit', [ws(0, joinMsg('p1')), ws(1, joinMsg('p2')), ws(2, joinMsg('p3')),
  ws(2, { type: 'leave' }), ws(1, joinMsg('p2'), 0x10)], 0x08);
protocolSeed('api-key', [api(2), api(2, '', true), api(0, { message: 'authorized' }, true)], 0x04);
protocolSeed('http', [http('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'),
  http('GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/"x", *\r\n\r\n'),
  http('GET /ws HTTP/1.1\r\nHost: x\r\n\r\n'),
  http('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'),
  http('GET /missing HTTP/1.1\r\nHost: x\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n'),
  http('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 13\r\n\r\n'),
  http('GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n'),
  http('GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
  http('GET / HTTP/2.0\r\n\r\n')]);
