// server.mjs — runs the real switchboard binary on a loopback port.
//
// start(args) spawns it, waits for its one "listening" line on stdout (an
// event, not a sleep) and returns a handle; stop() sends SIGTERM and asserts
// a clean exit (code 0: under ASan a leak or an error report would change
// it), putting the server's stderr into the failure message.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './util.mjs';

export const SB_BIN =
  process.env.SB_BIN ?? fileURLToPath(new URL('../../../build-asan/switchboard', import.meta.url));

const LISTENING = /^switchboard (\S+) listening on http:\/\/127\.0\.0\.1:(\d+)\/$/;
// With TLS on, a line for the TLS port comes first.
const LISTENING_TLS = /^switchboard (\S+) listening on https:\/\/127\.0\.0\.1:(\d+)\/$/;

// The environment a server runs with. Leak detection is on unless the caller
// (scripts/test.sh, a developer) says otherwise.
export function serverEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  if (!env.ASAN_OPTIONS) env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0';
  if (!env.UBSAN_OPTIONS) env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  return env;
}

// Servers still running when the test process exits are killed, so that a
// failed test never leaves one behind.
const live = new Set();
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
});

// Keeps the last `limit` characters of a stream.
// Keeps the last `limit` characters of a stream, and lets callers wait for a
// line matching a pattern to appear after a given position.
function tailCollector(limit = 1024 * 1024) {
  let text = '';
  let dropped = 0; // characters trimmed from the front
  const waiters = new Set();
  return {
    push(chunk) {
      text += chunk;
      if (text.length > limit) {
        dropped += text.length - limit;
        text = text.slice(text.length - limit);
      }
      for (const w of waiters) w();
    },
    get text() {
      return text;
    },
    get total() {
      return dropped + text.length;
    },
    // Resolves with the match of re in the text after position `from`.
    match(re, from) {
      return new Promise((resolve) => {
        const check = () => {
          const m = re.exec(text.slice(Math.max(0, from - dropped)));
          if (m) {
            waiters.delete(check);
            resolve(m);
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

// Starts `switchboard --host 127.0.0.1 --port 0 ...args`. Resolves once the
// server is listening; rejects (with its stderr) when it exits first or says
// nothing within timeoutMs.
export async function start(args = [], { timeoutMs = 15000, env } = {}) {
  // History stays in memory unless a test names a data directory: nothing is
  // written into the source tree.
  const data = args.includes('--data-dir') ? [] : ['--data-dir', ''];
  const argv = ['--host', '127.0.0.1', '--port', '0', ...data, ...args];
  const proc = spawn(SB_BIN, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: serverEnv(env),
  });
  live.add(proc);
  const err = tailCollector();
  const out = tailCollector();
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => err.push(d));
  proc.stdout.setEncoding('utf8');

  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    });
  });
  // 'exit' can come before the pipes are drained; 'close' comes after.
  const closed = new Promise((resolve) => proc.on('close', resolve));

  let tlsPort; // the TLS port, when the server printed one
  const port = await new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${SB_BIN} printed no listening line within ${timeoutMs} ms\n` +
        `stdout: ${out.text}\nstderr:\n${err.text}`));
    }, timeoutMs);
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${SB_BIN} (set SB_BIN?): ${e.message}`));
    });
    proc.stdout.on('data', (d) => {
      out.push(d);
      buffered += d;
      let nl, line;
      for (;;) {
        nl = buffered.indexOf('\n');
        if (nl < 0) return;
        line = buffered.slice(0, nl);
        const t = tlsPort === undefined ? LISTENING_TLS.exec(line) : null;
        if (!t) break;
        tlsPort = Number(t[2]);
        buffered = buffered.slice(nl + 1);
      }
      tlsPort ??= null;
      clearTimeout(timer);
      const m = LISTENING.exec(line);
      if (m) resolve(Number(m[2]));
      else {
        proc.kill('SIGKILL');
        reject(new Error(`unexpected first line on stdout: ${JSON.stringify(line)}\n` +
          `stderr:\n${err.text}`));
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening\n` +
        `stderr:\n${err.text}`));
    });
  });

  let stopping = null;
  const server = {
    port,
    tlsPort,
    url: `http://127.0.0.1:${port}/`,
    wsUrl: `ws://127.0.0.1:${port}/`,
    proc,
    pid: proc.pid,
    exited,
    stderr: () => err.text,
    stdout: () => out.text,
    // Position in stderr, for waitForLog(re, {from}).
    logMark: () => err.total,
    // Waits for a stderr line matching re written after position `from`.
    async waitForLog(re, { from = 0, ms = 10000 } = {}) {
      let timer;
      const guard = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(
          `timed out after ${ms} ms waiting for ${re} in the server's log\nstderr:\n${err.text}`)), ms);
      });
      try {
        return await Promise.race([err.match(re, from), guard]);
      } finally {
        clearTimeout(timer);
      }
    },
    // Sends `signal` (SIGTERM by default), waits for the exit and asserts it
    // was clean. Idempotent: a second call waits for the same exit.
    stop({ signal = 'SIGTERM', timeoutMs = 15000 } = {}) {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
        let timer;
        const res = await Promise.race([
          exited,
          new Promise((resolve) => {
            timer = setTimeout(() => resolve(null), timeoutMs);
          }),
        ]);
        clearTimeout(timer);
        if (res === null) {
          proc.kill('SIGKILL');
          await exited;
          assert.fail(`server did not exit within ${timeoutMs} ms of ${signal}\n` +
            `stderr:\n${err.text}`);
        }
        await closed;
        assert.equal(res.signal, null,
          `server was killed by ${res.signal} instead of exiting\nstderr:\n${err.text}`);
        assert.equal(res.code, 0,
          `server exited with code ${res.code} (23 or 1 under ASan: a leak or a ` +
          `sanitizer report)\nstderr:\n${err.text}`);
        return res;
      })();
      return stopping;
    },
  };
  return server;
}

// Resident set size of a process in KiB, from /proc/PID/status.
export function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  assert.ok(m, `no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

// Runs the binary with args to completion (a command like --check-config, or
// a start that must fail); resolves {code, signal, stdout, stderr}.
export function runToExit(args, { env = serverEnv(), ms = 10000 } = {}) {
  const proc = spawn(SB_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  proc.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const done = new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return withTimeout(done, ms, `switchboard ${args.join(' ')} to exit`).catch((e) => {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\nstdout: ${stdout}\nstderr: ${stderr}`);
  });
}
