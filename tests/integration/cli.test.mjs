// cli.test.mjs — the command line: help, version, usage errors (exit 2 with
// a message naming the problem), a busy port (exit 1), and signals.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { runToExit, start } from './lib/server.mjs';
import { OP, RawClient, rawConnect } from './lib/raw.mjs';
import { httpGet, withTimeout, wsConnect } from './lib/util.mjs';

// Runs the binary to completion; resolves {code, signal, stdout, stderr}.
const run = (args, ms) => runToExit(args, { ms });

describe('command line', () => {
  for (const flag of ['--help', '-h']) {
    test(`${flag} prints the usage with every option and exits 0`, async () => {
      const r = await run([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Usage: switchboard/);
      for (const opt of ['--host', '--port', '--log-level', '--no-echo', '--max-message-size',
        '--ping-interval', '--pong-timeout', '--write-timeout', '--help', '--version']) {
        assert.ok(r.stdout.includes(opt), `--help mentions ${opt}`);
      }
      assert.equal(r.stderr, '');
    });
  }

  for (const flag of ['--version', '-V']) {
    test(`${flag} prints the version and exits 0`, async () => {
      const r = await run([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^switchboard \d+\.\d+\.\d+\n$/);
    });
  }

  test('the version printed matches the one in the listening line and /health', async () => {
    const v = (await run(['--version'])).stdout.trim().split(' ')[1];
    const s = await start([]);
    try {
      assert.ok(s.stdout().startsWith(`switchboard ${v} listening on `));
      assert.equal(JSON.parse((await httpGet(s, '/health')).body).version, v);
    } finally {
      await s.stop();
    }
  });

  // [args, what stderr must say]
  const USAGE_ERRORS = [
    [['--bogus'], /unknown option '--bogus'/],
    [['-x'], /unknown option '-x'/],
    [['--port', 'abc'], /--port wants a number from 0 to 65535, not 'abc'/],
    [['--port', '70000'], /--port wants a number from 0 to 65535, not '70000'/],
    [['--port', '-1'], /--port wants a number/],
    [['--port'], /option '--port' needs a value/],
    [['--log-level', 'loud'], /--log-level wants error, warn, info or debug, not 'loud'/],
    [['--log-level'], /option '--log-level' needs a value/],
    [['--max-message-size', 'big'], /--max-message-size wants a size in bytes.*not 'big'/],
    [['--max-message-size', '0'], /--max-message-size wants a size/],
    [['--ping-interval', '5x'], /duration .* not '5x'/],
    [['--pong-timeout', '0'], /duration .* not '0'/],
    [['--write-timeout', '-1s'], /duration .* not '-1s'/],
    [['stray'], /unexpected argument 'stray'/],
  ];
  for (const [args, message] of USAGE_ERRORS) {
    test(`switchboard ${args.join(' ')} exits 2 and says what is wrong`, async () => {
      const r = await run(args);
      assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /Try 'switchboard --help'/);
      assert.equal(r.stdout, '', 'nothing on stdout');
    });
  }

  test('a port already in use exits 1 with a message naming the port', async () => {
    const blocker = net.createServer();
    await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address();
    try {
      const r = await run(['--host', '127.0.0.1', '--port', String(port)]);
      assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1 port ${port}: address already in use`, "i"));
      assert.match(r.stderr, /switchboard: cannot start/);
      assert.equal(r.stdout, '', 'no listening line');
    } finally {
      blocker.close();
    }
  });

  test('a host that is not an IP address exits 1 saying so', async () => {
    const r = await run(['--host', 'not-an-ip', '--port', '0']);
    assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, /cannot listen on not-an-ip: not an IP address/);
  });

  test('SIGINT stops the server gracefully with exit 0', async () => {
    const s = await start([]);
    const ws = await wsConnect(s);
    const stopped = s.stop({ signal: 'SIGINT' });
    const closed = await withTimeout(ws.closed, 10000, 'the close on SIGINT');
    assert.equal(closed.code, 1001);
    await stopped;
    assert.match(s.stderr(), /switchboard: stopped/);
  });

  test('SIGTERM with unresponsive clients still exits 0 after the 5 s stop timeout', async () => {
    const s = await start([]);
    // A WebSocket that never answers the server's close, and an HTTP request
    // whose head never ends: neither can finish on its own.
    const ws = await RawClient.connect(s.port, { allowHalfOpen: true });
    const http = await rawConnect(s.port);
    http.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const stopped = s.stop({ timeoutMs: 15000 });
    const close = await ws.nextFrame({ ms: 5000, what: 'the 1001 close' });
    assert.equal(close.opcode, OP.CLOSE);
    assert.equal(close.code, 1001);
    await stopped;
    assert.match(s.stderr(), /shutdown timeout: closing [12] remaining connection\(s\)/);
    ws.destroy();
    http.destroy();
  });

  test('--no-echo leaves /echo unserved (404) while /health answers', async () => {
    const s = await start(['--no-echo']);
    try {
      assert.equal((await httpGet(s, '/echo')).status, 404);
      assert.equal((await httpGet(s, '/health')).status, 200);
    } finally {
      await s.stop();
    }
  });

  test('--max-message-size is enforced: one byte over gets 1009', async () => {
    const s = await start(['--max-message-size', '1k']);
    try {
      const c = await RawClient.connect(s.port);
      await c.roundTrip(Buffer.alloc(1024, 1));
      await c.send({ opcode: OP.BINARY, payload: Buffer.alloc(1025, 2) });
      await c.expectClose(1009);
    } finally {
      await s.stop();
    }
  });
});
