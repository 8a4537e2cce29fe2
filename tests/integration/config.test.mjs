// config.test.mjs — the configuration: a YAML file (--config), SWITCHBOARD_*
// environment variables and flags, with flags over environment over file
// over defaults; every kind of error named with its file, line and key and
// what the key wants; --check-config; --print-config; the example file and
// the docs covering every setting; and SIGHUP reloading what may change at
// run time, logging each change, and keeping the running configuration
// when the new file is not valid.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { runToExit, serverEnv, start } from './lib/server.mjs';
import { HubClient, tempDir } from './lib/hub.mjs';
import { httpGet, withTimeout } from './lib/util.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// The environment without any SWITCHBOARD_* variable of the caller's, plus extra.
function cleanEnv(extra = {}) {
  const env = serverEnv();
  for (const k of Object.keys(env)) if (k.startsWith('SWITCHBOARD_')) delete env[k];
  return { ...env, ...extra };
}

// Runs the binary to completion; resolves {code, signal, stdout, stderr}.
const run = (args, env = {}, ms) => runToExit(args, { env: cleanEnv(env), ms });

const dir = tempDir('sb-config-');
let fileSeq = 0;
// Writes text into a fresh .yaml file; returns its path.
function yamlFile(text) {
  const path = join(dir.dir, `c${++fileSeq}.yaml`);
  writeFileSync(path, text);
  return path;
}

// --print-config as {key: {value, source}}.
async function printConfig(args, env) {
  const r = await run(['--print-config', ...args], env);
  assert.equal(r.code, 0, `--print-config failed: ${r.stderr}`);
  const out = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^(\w+): (.*?)  # (.*)$/.exec(line);
    if (m) out[m[1]] = { value: m[2], source: m[3] };
  }
  return out;
}

// Every setting's name, from --help-config.
async function settingNames() {
  const r = await run(['--help-config']);
  assert.equal(r.code, 0, r.stderr);
  const names = [...r.stdout.matchAll(/^([a-z][a-z0-9_]*)$/gm)].map((m) => m[1]);
  assert.ok(names.length >= 40, `--help-config lists the settings (got ${names.length})`);
  return names;
}

describe('precedence: flags over environment over file over defaults', () => {
  test('--print-config shows each value and where it came from', async () => {
    const file = yamlFile([
      '# a comment',
      'max_content: 100',
      'presence_limit: 7',
      'history_size: 9',
      'stats_interval: 2s',
      '',
    ].join('\n'));
    const cfg = await printConfig(['--config', file, '--max-content', '300'], {
      SWITCHBOARD_MAX_CONTENT: '200',
      SWITCHBOARD_PRESENCE_LIMIT: '8',
    });
    assert.deepEqual(cfg.max_content, { value: '300', source: 'flag --max-content' });
    assert.deepEqual(cfg.presence_limit, { value: '8',
      source: 'environment SWITCHBOARD_PRESENCE_LIMIT' });
    assert.deepEqual(cfg.history_size, { value: '9', source: `file ${file}:4` });
    assert.deepEqual(cfg.stats_interval, { value: '2s', source: `file ${file}:5` });
    assert.deepEqual(cfg.history_max, { value: '10000', source: 'default' });
    assert.deepEqual(cfg.ping_interval, { value: '54s', source: 'default' });
  });

  test('the running server uses the winner: file < environment < flag', async () => {
    const file = yamlFile('max_content: 5\necho: false\n');
    const say = async (s, n) => {
      const c = await HubClient.connect(s);
      await c.join('general');
      c.send({ type: 'message', room: 'general', content: 'x'.repeat(n) });
      const m = await c.next(null, (x) => x.type === 'error' || x.type === 'message');
      await c.close();
      return m.type === 'error' ? m.code : 'ok';
    };
    // file only: 5 bytes, no /echo
    let s = await start(['--config', file], { env: cleanEnv() });
    try {
      assert.equal(await say(s, 5), 'ok');
      assert.equal(await say(s, 6), 'content_too_long');
      assert.equal((await httpGet(s, '/echo')).status, 404, 'echo: false from the file');
    } finally {
      await s.stop();
    }
    // the environment over the file
    s = await start(['--config', file], {
      env: cleanEnv({ SWITCHBOARD_MAX_CONTENT: '10', SWITCHBOARD_ECHO: 'true' }),
    });
    try {
      assert.equal(await say(s, 10), 'ok');
      assert.equal(await say(s, 11), 'content_too_long');
      assert.equal((await httpGet(s, '/echo')).status, 426, '/echo served again (426 to a GET)');
    } finally {
      await s.stop();
    }
    // a flag over both
    s = await start(['--config', file, '--max-content', '20', '--no-echo'], {
      env: cleanEnv({ SWITCHBOARD_MAX_CONTENT: '10', SWITCHBOARD_ECHO: 'true' }),
    });
    try {
      assert.equal(await say(s, 20), 'ok');
      assert.equal(await say(s, 21), 'content_too_long');
      assert.equal((await httpGet(s, '/echo')).status, 404, '--no-echo over SWITCHBOARD_ECHO');
    } finally {
      await s.stop();
    }
  });

  test('lists: a YAML list in the file, comma-separated in the environment and flags', async () => {
    const file = yamlFile('rooms:\n  - general\n  - random\nallowed_origins: ["https://a.example"]\n');
    let cfg = await printConfig(['--config', file]);
    assert.equal(cfg.rooms.value, '["general", "random"]');
    assert.equal(cfg.allowed_origins.value, '["https://a.example"]');
    cfg = await printConfig(['--config', file, '--rooms', 'x,y.z'], {
      SWITCHBOARD_ALLOWED_ORIGINS: 'https://b.example, http://localhost:3000',
    });
    assert.equal(cfg.rooms.value, '["x", "y.z"]');
    assert.equal(cfg.allowed_origins.value, '["https://b.example", "http://localhost:3000"]');
    assert.equal(cfg.allowed_origins.source, 'environment SWITCHBOARD_ALLOWED_ORIGINS');
  });

  test('app_security_t settings come from the environment under their field names', async () => {
    const cfg = await printConfig([], {
      SWITCHBOARD_AUTH_REQUIRED: 'true',
      SWITCHBOARD_JWT_SECRET: 'hunter2-secret',
      SWITCHBOARD_MAX_CONNECTIONS: '100',
      SWITCHBOARD_MAX_CONNECTIONS_PER_IP: '2',
      SWITCHBOARD_RATE_MESSAGES: '2.5',
      SWITCHBOARD_RATE_BYTES: '64k',
      SWITCHBOARD_PROTECT_STATS: 'yes',
      SWITCHBOARD_TOKEN_WARNING_MS: '1500',
    });
    assert.equal(cfg.auth_required.value, 'true');
    assert.equal(cfg.jwt_secret.value, '"***"', 'secrets are not printed');
    assert.equal(cfg.max_connections.value, '100');
    assert.equal(cfg.max_connections_per_ip.value, '2');
    assert.equal(cfg.rate_messages.value, '2.5');
    assert.equal(cfg.rate_bytes.value, '65536');
    assert.equal(cfg.protect_stats.value, 'true');
    assert.equal(cfg.token_warning.value, '1500ms', 'token_warning_ms: a bare number is ms');
  });

  test('a null value in the file ("key:" or "key: ~") means the default', async () => {
    const file = yamlFile('api_key:\nmax_content: ~\n');
    const cfg = await printConfig(['--config', file]);
    assert.equal(cfg.api_key.value, '~');
    assert.equal(cfg.max_content.value, '4096');
  });
});

describe('errors name the file, line and key, and what the key wants', () => {
  // [file text, what stderr must say (the file name is put in front of ':LINE:')]
  const CASES = [
    ['unknown key, with a suggestion', 'port: 8080\nmax_conections: 10\n',
      /:2: unknown setting 'max_conections' \(did you mean 'max_connections'\?\); 'switchboard --help-config' lists every setting/],
    ['unknown key, nothing close', 'port: 8080\n\nfrobnicate: 1\n',
      /:3: unknown setting 'frobnicate'; 'switchboard --help-config' lists every setting/],
    ['wrong type: text for a number', 'host: 127.0.0.1\nport: abc\n',
      /:2: port wants a number from 0 to 65535, not 'abc'/],
    ['out of range', 'port: 70000\n', /:1: port wants a number from 0 to 65535, not '70000'/],
    ['a choice not among the valid ones', 'log_level: loud\n',
      /:1: log_level wants error, warn, info or debug, not 'loud'/],
    ['negative timeout', 'ping_interval: 10s\npong_timeout: -5s\n',
      /:2: pong_timeout wants a duration like 500ms, 54s, 2m, 1h or 7d, at least 1ms, not '-5s' \(it cannot be negative\)/],
    ['zero where a duration must be positive', 'write_timeout: 0\n',
      /:1: write_timeout wants a duration .*at least 1ms, not '0'/],
    ['a duration with a unit that does not exist', 'shutdown_timeout: 5 minutes\n',
      /:1: shutdown_timeout wants a duration like 500ms, 54s, 2m, 1h or 7d, or 0, not '5 minutes'/],
    ['a size with a bad suffix', 'max_message_size: 16q\n',
      /:1: max_message_size wants a size in bytes \(like 65536, 512k or 16m\) from 1 to 1t, not '16q'/],
    ['a boolean that is not one', 'echo: maybe\n', /:1: echo wants true or false, not 'maybe'/],
    ['a list for a single value', 'port:\n  - 1\n  - 2\n',
      /:2: port wants a number from 0 to 65535, not a list/],
    ['a mapping for a single value', 'max_content:\n  bytes: 10\n',
      /:2: max_content wants a number from 1 to 100000000, not a mapping/],
    ['a bad list item', 'rooms:\n  - general\n  - "no spaces"\n',
      /:3: rooms wants room names of 1 to 64 letters, digits, '_', '-', '\.' or ':', not 'no spaces'/],
    ['an origin with a path', 'allowed_origins: ["https://ok.example", "https://x.example/app"]\n',
      /:1: allowed_origins wants origins like https:\/\/chat\.example\.com .* not 'https:\/\/x\.example\/app'/],
    ['an empty secret', 'api_key: ""\n', /:1: api_key wants a non-empty text, not ''/],
    ['a key set twice', 'port: 1\nhost: ::1\nport: 2\n',
      /:3: port is set twice \(first on line 1\); keep one/],
    ['YAML syntax', 'port: 8080\nrooms: [general, random\nhost: x\n',
      /:\d+:\d+: not valid YAML: /],
    ['not a mapping', '- port\n- 8080\n',
      /:1: the file must be a mapping of settings \("port: 8080" lines\), not a list/],
    ['two documents', 'port: 1\n---\nport: 2\n',
      /:2: a second YAML document \('---'\); put every setting in one/],
    ['an alias', 'ping_interval: &p 10s\npong_timeout: *p\n',
      /:2: pong_timeout: aliases \(\*name\) are not supported/],
    ['pong_timeout not longer than ping_interval', 'ping_interval: 30s\npong_timeout: 30s\n',
      /:2: pong_timeout: pong_timeout \(30s\) must be longer than ping_interval \(30s\), or silent clients are closed before they are pinged/],
    ['authentication without a key', 'port: 0\nauth_required: true\n',
      /:2: auth_required: auth_required needs jwt_secret \(HS256\) or jwt_public_key \(RS256\)/],
    ['a public key that is not PEM', 'jwt_public_key: "abc"\n',
      /:1: jwt_public_key wants a PEM public key/],
    ['a burst below one message', 'rate_messages: 5\nrate_burst: 0.5\n',
      /:2: rate_burst: rate_burst \(0\.5\) must be at least 1 message/],
  ];
  for (const [what, text, message] of CASES) {
    test(`${what}: --check-config exits 1 and says so; the server refuses to start`, async () => {
      const file = yamlFile(text);
      const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const where = new RegExp(`switchboard: ${esc}${message.source}`);
      const r = await run(['--check-config', file]);
      assert.equal(r.code, 1, `--check-config exit code (stderr: ${r.stderr})`);
      assert.match(r.stderr, where);
      assert.match(r.stderr, new RegExp(`switchboard: ${esc}: \\d+ error\\(s\\); the server would refuse to start`));
      assert.equal(r.stdout, '');
      const s = await run(['--config', file, '--port', '0', '--data-dir', '']);
      assert.equal(s.code, 2, `the server refuses to start (stderr: ${s.stderr})`);
      assert.match(s.stderr, where);
      assert.equal(s.stdout, '', 'no listening line');
    });
  }

  test('every error of a file is reported at once, in order', async () => {
    const file = yamlFile('port: x\nlog_level: loud\nmax_rooms: -1\nbogus: 1\n');
    const r = await run(['--check-config', file]);
    assert.equal(r.code, 1);
    const lines = r.stderr.split('\n').filter((l) => /\.yaml:\d+:/.test(l));
    assert.deepEqual(lines.map((l) => Number(/\.yaml:(\d+):/.exec(l)[1])), [1, 2, 3, 4]);
    assert.match(r.stderr, /4 error\(s\)/);
  });

  test('a file that cannot be read is named with the reason', async () => {
    const missing = join(dir.dir, 'missing.yaml');
    const r = await run(['--check-config', missing]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${missing}: cannot read the configuration file: No such file or directory`));
    const s = await run(['--config', missing]);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /cannot read the configuration file/);
  });

  test('environment errors name the variable', async () => {
    let r = await run(['--print-config'], { SWITCHBOARD_PORT: 'abc' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /switchboard: SWITCHBOARD_PORT wants a number from 0 to 65535, not 'abc'/);
    r = await run(['--print-config'], { SWITCHBOARD_MAX_CONECTIONS: '5' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /SWITCHBOARD_MAX_CONECTIONS: unknown setting 'max_conections' \(did you mean SWITCHBOARD_MAX_CONNECTIONS\?\)/);
    r = await run(['--print-config'], { SWITCHBOARD_ALLOWED_ORIGINS: 'https://a.example,,x' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /SWITCHBOARD_ALLOWED_ORIGINS wants origins like .*\(a comma-separated list\)/);
  });

  test('flag errors name the flag; a mistyped flag gets a suggestion', async () => {
    let r = await run(['--max-connections', '-3']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--max-connections wants a number from 0 to 1000000000, not '-3' \(it cannot be negative\)/);
    r = await run(['--shutdown-timout', '3s']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--shutdown-timout' \(did you mean '--shutdown-timeout'\?\)/);
    r = await run(['--pong-timeout', '10s']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--pong-timeout: pong_timeout \(10s\) must be longer than ping_interval \(54s\)/);
  });
});

describe('--check-config on valid files', () => {
  test('a valid file: exit 0 and a message saying so', async () => {
    const file = yamlFile('# production\nport: 9000\nlog_level: warn\nrooms: [general, random]\n' +
      'ping_interval: 25s\npong_timeout: 30s\nmax_connections: 10000\n');
    const r = await run(['--check-config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `switchboard: ${file}: the configuration is valid (6 setting(s) from the file, the rest default)\n`);
    assert.equal(r.stderr, '');
  });

  test('an empty file (or only comments) is valid: everything default', async () => {
    for (const text of ['', '# nothing here\n', '---\n']) {
      const r = await run(['--check-config', yamlFile(text)]);
      assert.equal(r.code, 0, `${JSON.stringify(text)}: ${r.stderr}`);
      assert.match(r.stdout, /valid \(0 setting\(s\) from the file/);
    }
  });

  test('--check-config reads the file alone, not the environment', async () => {
    const r = await run(['--check-config', yamlFile('port: 1\n')], { SWITCHBOARD_PORT: 'abc' });
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('the example file and the docs cover every setting', () => {
  test('switchboard.example.yaml is valid, sets every setting, each to its default', async () => {
    const example = join(ROOT, 'switchboard.example.yaml');
    const r = await run(['--check-config', example]);
    assert.equal(r.code, 0, r.stderr);
    const names = await settingNames();
    const fromFile = await printConfig(['--config', example]);
    const defaults = await printConfig([]);
    for (const name of names) {
      assert.ok(fromFile[name], `--print-config shows ${name}`);
      assert.match(fromFile[name].source, /^file /, `the example file sets ${name}`);
      assert.equal(fromFile[name].value, defaults[name].value,
        `the example's ${name} is the default`);
    }
    const text = readFileSync(example, 'utf8');
    for (const name of names) {
      assert.match(text, new RegExp(`#[^\\n]*\\n${name}:`), `a comment above ${name} in the example`);
    }
  });

  test('docs/configuration.md lists every setting with its environment name and default', async () => {
    const doc = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    const help = (await run(['--help-config'])).stdout;
    for (const name of await settingNames()) {
      const env = `SWITCHBOARD_${name.toUpperCase()}`;
      const def = new RegExp(`^${name}\\n    .*; default (.*)$`, 'm').exec(help)[1];
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${name}\``));
      assert.ok(row, `docs/configuration.md has a table row for ${name}`);
      assert.ok(row.includes(`\`${env}\``), `its row names ${env}`);
      const shown = def === 'none' ? 'none' : `\`${def}\``;
      assert.ok(row.includes(shown), `its row gives the default ${shown}: ${row}`);
    }
  });
});

describe('SIGHUP', () => {
  test('reloads the file: applies what may change, logs each change, names what needs a restart', async () => {
    const file = yamlFile('log_level: info\nmax_content: 100\n');
    const s = await start(['--config', file], { env: cleanEnv() });
    try {
      const c = await HubClient.connect(s);
      await c.join('general');
      await c.say('general', 'x'.repeat(50));

      writeFileSync(file, 'log_level: debug\nmax_content: 10\nhistory_max: 5\napi_key: "s3cret-value"\n');
      let mark = s.logMark();
      process.kill(s.pid, 'SIGHUP');
      const line = (await s.waitForLog(/^.* config_reloaded .*$/m, { from: mark }))[0];
      assert.match(line, new RegExp(`^\\S+Z info config_reloaded file=${file.replace(/[.]/g, '\\.')} ` +
        'changed="log_level info -> debug, max_content 100 -> 10, api_key \\(none\\) -> \\*\\*\\*\\(new\\)" ' +
        'needs_restart="history_max 10000 -> 5"$'));
      await s.waitForLog(/warn config_needs_restart keys="history_max 10000 -> 5"/, { from: mark });
      assert.ok(!s.stderr().includes('s3cret-value'), 'a secret never reaches the log');

      // max_content applies to the next message, on a connection opened before
      await c.expectError({ type: 'message', room: 'general', content: 'x'.repeat(11) },
        'content_too_long');
      await c.say('general', 'x'.repeat(10));
      // the api key applies to the next request
      assert.equal((await httpGet(s, '/api/rooms')).status, 401);
      assert.equal((await httpGet(s, '/api/rooms',
        { headers: { Authorization: 'Bearer s3cret-value' } })).status, 200);
      // debug lines now appear: the library's "WebSocket open"
      mark = s.logMark();
      const d = await HubClient.connect(s);
      await s.waitForLog(/ debug lib msg="c-\w+: WebSocket open on \/ws"/, { from: mark });
      await d.close();

      // the same file again: nothing changed, and history_max still needs a restart
      mark = s.logMark();
      process.kill(s.pid, 'SIGHUP');
      await s.waitForLog(/info config_reloaded file=\S+ changed=nothing needs_restart="history_max 10000 -> 5"/,
        { from: mark });
      await c.close();
    } finally {
      await s.stop();
    }
  });

  test('an invalid file on SIGHUP: an error naming the problem, and the running configuration stays', async () => {
    const file = yamlFile('max_content: 10\n');
    const s = await start(['--config', file], { env: cleanEnv() });
    try {
      const c = await HubClient.connect(s);
      await c.join('general');
      writeFileSync(file, 'max_content: -1\nlog_level: debug\n"a\\"b": 1\n');
      const mark = s.logMark();
      process.kill(s.pid, 'SIGHUP');
      await s.waitForLog(/error config_reload_failed file=\S+ errors=2 msg="the new configuration is not valid; keeping the running one"/,
        { from: mark });
      await s.waitForLog(new RegExp(`error config_error msg="${file.replace(/[.]/g, '\\.')}:1: ` +
        "max_content wants a number from 1 to 100000000, not '-1' \\(it cannot be negative\\)\""), { from: mark });
      // a quote inside a value is escaped, so the line stays one field
      await s.waitForLog(/error config_error msg=".*:3: unknown setting 'a\\"b';/, { from: mark });
      assert.doesNotMatch(s.stderr().slice(mark), /config_reloaded/);
      // still 10 bytes, still info (the valid log_level of the bad file was not applied)
      await c.expectError({ type: 'message', room: 'general', content: 'x'.repeat(11) },
        'content_too_long');
      await c.say('general', 'x'.repeat(10));
      const m2 = s.logMark();
      const d = await HubClient.connect(s);
      await d.close();
      await s.waitForLog(/info access proto=ws /, { from: m2 });
      assert.doesNotMatch(s.stderr().slice(m2), / debug /, 'the log level stayed info');
      await c.close();
    } finally {
      await s.stop();
    }
  });

  test('SIGHUP applies app_security_t settings: max_connections takes effect for the next upgrade', async () => {
    const file = yamlFile('max_connections: 0\n');
    const s = await start(['--config', file], { env: cleanEnv() });
    try {
      const a = await HubClient.connect(s);
      writeFileSync(file, 'max_connections: 1\n');
      const mark = s.logMark();
      process.kill(s.pid, 'SIGHUP');
      await s.waitForLog(/config_reloaded \S+ changed="max_connections 0 -> 1"/, { from: mark });
      const ws = new WebSocket(`ws://127.0.0.1:${s.port}/ws`);
      const status = await withTimeout(new Promise((resolve, reject) => {
        ws.on('unexpected-response', (req, res) => resolve(res.statusCode));
        ws.on('open', () => resolve(101));
        ws.on('error', reject);
      }), 5000, 'the answer to a second connection');
      ws.terminate();
      assert.equal(status, 503, 'over max_connections after the reload');
      await a.close();
    } finally {
      await s.stop();
    }
  });

  test('settings that need a restart keep their running values across reloads (rooms)', async () => {
    const file = yamlFile('rooms: [general, random]\n');
    const s = await start(['--config', file], { env: cleanEnv() });
    try {
      // the same list again, then another list: neither replaces the running one
      for (const [text, restart] of [
        ['rooms: [general, random]\n', null],
        ['rooms: [other]\n', 'rooms general,random -> other'],
      ]) {
        writeFileSync(file, text);
        const mark = s.logMark();
        process.kill(s.pid, 'SIGHUP');
        const line = (await s.waitForLog(/^.* config_reloaded .*$/m, { from: mark }))[0];
        if (restart) assert.ok(line.endsWith(`needs_restart="${restart}"`), line);
        else assert.ok(line.endsWith('changed=nothing'), line);
        const c = await HubClient.connect(s);
        await c.join('random');
        await c.expectError({ type: 'join', room: 'other' }, 'room_not_found');
        await c.close();
      }
    } finally {
      await s.stop();
    }
  });

  test('without --config, SIGHUP re-reads the environment and reports no change', async () => {
    const s = await start([], { env: cleanEnv({ SWITCHBOARD_MAX_CONTENT: '50' }) });
    try {
      const mark = s.logMark();
      process.kill(s.pid, 'SIGHUP');
      await s.waitForLog(/info config_reloaded changed=nothing$/m, { from: mark });
    } finally {
      await s.stop();
    }
  });
});

test('cleanup', () => dir.remove());
