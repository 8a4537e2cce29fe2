// auth.test.mjs — authenticated mode (docs/protocol.md, "Authentication"):
// JWTs signed here with node:crypto (HS256 with a shared secret, RS256 with a
// key pair made for this run) are checked before the upgrade; every bad
// token gets 401 with its reason and no WebSocket; the claims sub, name,
// rooms and broadcast are applied; a token that expires while connected gets
// token_expiring and then close 1008 unless a refresh replaces it. Also:
// anonymous mode as before, and /stats, /status, /metrics behind the API key
// with protect_stats.
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { api, closeAll, HubClient } from './lib/hub.mjs';
import { start } from './lib/server.mjs';
import { withTimeout } from './lib/util.mjs';
import { wsUpgrade } from './lib/http.mjs';

const SECRET = 'a-test-secret-of-some-length';
const ISS = 'https://issuer.example';
const AUD = 'switchboard-tests';
const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PUBLIC_PEM = publicKey.export({ type: 'spki', format: 'pem' });
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function signHS(payload, { secret = SECRET, header = { alg: 'HS256', typ: 'JWT' } } = {}) {
  const input = `${b64(header)}.${b64(payload)}`;
  const hash = header.alg === 'HS512' ? 'sha512' : 'sha256';
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`;
}

function signRS(payload, { key = privateKey, header = { alg: 'RS256', typ: 'JWT' } } = {}) {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

const nowSec = () => Math.floor(Date.now() / 1000);

// Good claims for this server, with overrides (undefined removes a claim).
function claims(extra = {}) {
  const c = { sub: 'alice', name: 'Alice', iss: ISS, aud: AUD, exp: nowSec() + 600, ...extra };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}

// Asserts a 401 whose plain-text body gives the reason.
async function expect401(server, path, headers, reason, what) {
  const res = await wsUpgrade(server, path, { headers });
  assert.equal(res.status, 401, `${what}: 401, not a WebSocket (got ${res.status} ${res.body ?? ''})`);
  assert.match(res.headers['content-type'], /^text\/plain/, `${what}: plain text`);
  assert.match(res.body, /^401 Unauthorized: /, `${what}: the body starts with the status`);
  assert.match(res.body, reason, `${what}: the reason`);
  assert.match(res.headers['www-authenticate'] ?? '', /^Bearer /, `${what}: WWW-Authenticate`);
}

// A counter of /metrics (0 when the line is missing, so a wrong name fails
// the comparison that follows).
async function metric(server, name, headers) {
  const res = await api(server, 'GET', '/metrics', { headers });
  assert.equal(res.status, 200, `/metrics: ${res.text}`);
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc} (\\d+)$`, 'm').exec(res.text);
  assert.ok(m, `/metrics has ${name}`);
  return Number(m[1]);
}

const tokenPath = (token, path = '/ws') => `${path}?token=${token}`;

describe('authenticated mode with HS256 and RS256 keys, iss and aud', () => {
  let server;
  before(async () => {
    server = await start([], {
      env: {
        SWITCHBOARD_AUTH_REQUIRED: '1',
        SWITCHBOARD_JWT_SECRET: SECRET,
        SWITCHBOARD_JWT_PUBLIC_KEY: PUBLIC_PEM,
        SWITCHBOARD_JWT_ISSUER: ISS,
        SWITCHBOARD_JWT_AUDIENCE: AUD,
        SWITCHBOARD_TOKEN_WARNING: '1s',
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('every bad token gets 401 with its reason, on every WebSocket route', async () => {
    const before401 = await metric(server, 'switchboard_upgrades_refused_total{reason="unauthorized"}');
    const good = signRS(claims());
    const [gh, gp, gs] = good.split('.');
    const cases = [
      ['no token at all', '/ws', {}, /a token is required.*\?token=.*Authorization: Bearer.*cookie token/],
      ['not a JWT', tokenPath('not-a-jwt'), {}, /malformed/],
      ['two parts', tokenPath(`${gh}.${gp}`), {}, /malformed/],
      ['four parts', tokenPath(`${good}.${gs}`), {}, /malformed/],
      ['header not JSON', tokenPath(`${b64('nope')}.${gp}.${gs}`), {}, /malformed/],
      ['claims not base64url', tokenPath(`${gh}.%%%%.${gs}`), {}, /malformed/],
      ['claims a JSON array', tokenPath(`${gh}.${b64([1, 2])}.${gs}`), {}, /malformed/],
      ['alg none', tokenPath(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`), {},
        /alg none/],
      ['alg NONE', tokenPath(`${b64({ alg: 'NONE' })}.${b64(claims())}.`), {}, /alg none/],
      ['alg HS512', tokenPath(signHS(claims(), { header: { alg: 'HS512' } })), {},
        /algorithm is not accepted: use HS256 or RS256/],
      ['HS256 with the wrong secret', tokenPath(signHS(claims(), { secret: 'wrong' })), {},
        /signature does not verify/],
      ['HS256 signed with the RSA public key (algorithm confusion)',
        tokenPath(signHS(claims(), { secret: PUBLIC_PEM })), {}, /signature does not verify/],
      ['RS256 from another key', tokenPath(signRS(claims(), { key: other.privateKey })), {},
        /signature does not verify/],
      ['RS256 with changed claims', tokenPath(`${gh}.${b64(claims({ sub: 'root' }))}.${gs}`), {},
        /signature does not verify/],
      ['RS256 signature removed', tokenPath(`${gh}.${gp}.`), {}, /signature does not verify/],
      ['expired', tokenPath(signHS(claims({ exp: nowSec() - 5 }))), {}, /expired/],
      ['not valid yet (nbf)', tokenPath(signHS(claims({ nbf: nowSec() + 300 }))), {},
        /not valid yet/],
      ['exp not a number', tokenPath(signHS(claims({ exp: 'tomorrow' }))), {},
        /exp and nbf must be numbers/],
      ['wrong issuer', tokenPath(signHS(claims({ iss: 'https://evil.example' }))), {}, /issuer/],
      ['no issuer', tokenPath(signHS(claims({ iss: undefined }))), {}, /issuer/],
      ['wrong audience', tokenPath(signHS(claims({ aud: 'someone-else' }))), {}, /audience/],
      ['audience list without this server', tokenPath(signHS(claims({ aud: ['x', 'y'] }))), {},
        /audience/],
      ['no sub', tokenPath(signHS(claims({ sub: undefined }))), {}, /sub/],
      ['sub not a string', tokenPath(signHS(claims({ sub: 42 }))), {}, /sub/],
      ['empty sub', tokenPath(signHS(claims({ sub: '' }))), {}, /sub/],
      ['name not a string', tokenPath(signHS(claims({ name: ['A'] }))), {}, /name/],
      ['rooms not a list', tokenPath(signHS(claims({ rooms: 'lobby' }))), {}, /rooms/],
      ['rooms with a number', tokenPath(signHS(claims({ rooms: ['lobby', 7] }))), {}, /rooms/],
      ['broadcast not a boolean', tokenPath(signHS(claims({ broadcast: 'yes' }))), {},
        /broadcast/],
      ['bad token as Authorization: Bearer', '/ws',
        { Authorization: `Bearer ${signHS(claims(), { secret: 'wrong' })}` },
        /signature does not verify/],
      ['expired token in the cookie', '/ws',
        { Cookie: `theme=dark; token=${signHS(claims({ exp: nowSec() - 1 }))}` }, /expired/],
      ['no token on /ws/raw', '/ws/raw', {}, /a token is required/],
      ['no token on /echo', '/echo', {}, /a token is required/],
      ['expired token on /ws/raw', tokenPath(signHS(claims({ exp: nowSec() - 5 })), '/ws/raw'), {},
        /expired/],
    ];
    for (const [what, path, headers, reason] of cases) await expect401(server, path, headers, reason, what);
    assert.equal(
      await metric(server, 'switchboard_upgrades_refused_total{reason="unauthorized"}'),
      before401 + cases.length, 'every 401 is counted in /metrics');
    const stats = await api(server, 'GET', '/stats');
    assert.equal(stats.json.upgrades_refused_unauthorized, before401 + cases.length,
      '/stats counts them too');
  });

  test('a good HS256 token in ?token=: sub is the user id, name the display name', async () => {
    const c = await HubClient.connect(server, {
      path: tokenPath(signHS(claims({ sub: 'alice', name: 'Alice' }))), label: 'alice',
    });
    try {
      assert.equal(c.welcome.user_id, 'alice', 'the welcome names the token\'s sub');
      // The token's name is the display name: a nickname in join does not replace it.
      const { joined } = await c.join('lobby', 'mallory');
      assert.equal(joined.user_id, 'alice');
      assert.equal(joined.nickname, 'Alice');
      const m = await c.say('lobby', 'hello');
      assert.equal(m.from, 'alice');
      assert.equal(m.nickname, 'Alice');
    } finally {
      await c.close();
    }
  });

  test('a good RS256 token as Authorization: Bearer, and one in the cookie', async () => {
    const bob = await HubClient.connect(server, {
      label: 'bob',
      headers: { Authorization: `Bearer ${signRS(claims({ sub: 'bob', name: 'Bob', aud: ['x', AUD] }))}` },
    });
    const carol = await HubClient.connect(server, {
      label: 'carol',
      headers: { Cookie: `theme=dark; token=${signHS(claims({ sub: 'carol', name: undefined }))}; x=1` },
    });
    try {
      assert.equal(bob.welcome.user_id, 'bob');
      assert.equal(carol.welcome.user_id, 'carol');
      // Without a name claim, the nickname of join applies as in anonymous mode.
      const { joined } = await carol.join('lobby', 'caro');
      assert.equal(joined.nickname, 'caro');
      await bob.join('lobby');
      const m = await bob.say('lobby', 'from bob');
      assert.equal(m.nickname, 'Bob');
      await carol.next('message', { from: 'bob', content: 'from bob' });
    } finally {
      await closeAll([bob, carol]);
    }
  });

  test('/ws/raw and /echo accept a good token', async () => {
    for (const path of ['/ws/raw', '/echo']) {
      const res = await wsUpgrade(server, tokenPath(signRS(claims()), path));
      assert.equal(res.status, 101, `${path} with a good token: ${res.body ?? ''}`);
    }
  });

  test('rooms claim: the user may join and read only the rooms it lists', async () => {
    const owner = await HubClient.connect(server, { path: tokenPath(signHS(claims({ sub: 'owner' }))) });
    const c = await HubClient.connect(server, {
      path: tokenPath(signHS(claims({ sub: 'dave', name: 'Dave', rooms: ['lobby', 'ops'] }))),
      label: 'dave',
    });
    const none = await HubClient.connect(server, {
      path: tokenPath(signHS(claims({ sub: 'erin', rooms: [] }))), label: 'erin',
    });
    try {
      await owner.join('secret');
      await c.join('lobby');
      await c.join('ops');
      const forbidden = await c.expectError({ type: 'join', room: 'secret' }, 'forbidden');
      assert.match(forbidden.error, /token/);
      await c.expectError({ type: 'join', room: 'general' }, 'forbidden');
      await c.expectError({ type: 'history', room: 'secret' }, 'forbidden');
      await c.expectError({ type: 'users', room: 'secret' }, 'forbidden');
      await none.expectError({ type: 'join', room: 'lobby' }, 'forbidden');
      // What was refused did not happen: dave is not in secret.
      const users = await owner.request({ type: 'users', room: 'secret' }, 'users');
      assert.deepEqual(users.users.map((u) => u.user_id), ['owner']);
    } finally {
      await closeAll([owner, c, none]);
    }
  });

  test('broadcast needs broadcast: true in the token', async () => {
    const plain = await HubClient.connect(server, { path: tokenPath(signHS(claims({ sub: 'frank' }))) });
    const boss = await HubClient.connect(server, {
      path: tokenPath(signHS(claims({ sub: 'grace', broadcast: true }))),
    });
    const no = await HubClient.connect(server, {
      path: tokenPath(signHS(claims({ sub: 'heidi', broadcast: false }))),
    });
    try {
      const e = await plain.expectError({ type: 'broadcast', content: 'everyone!' }, 'forbidden');
      assert.match(e.error, /broadcast/);
      await no.expectError({ type: 'broadcast', content: 'everyone!' }, 'forbidden');
      boss.send({ type: 'broadcast', content: 'hear ye' });
      const got = await plain.next('broadcast');
      assert.equal(got.from, 'grace');
      assert.equal(got.content, 'hear ye');
      await plain.sync();
      plain.assertNone('broadcast', { content: 'everyone!' }, 'the refused broadcast went nowhere');
    } finally {
      await closeAll([plain, boss, no]);
    }
  });

  test('a token that expires while connected: token_expiring, then close 1008 at exp', async () => {
    const exp = Math.ceil(Date.now() / 1000) + 2;
    const c = await HubClient.connect(server, { path: tokenPath(signHS(claims({ sub: 'ivan', exp }))) });
    const warning = await c.next('token_expiring', null, { ms: 5000 });
    const warnedAt = Date.now();
    assert.equal(warning.expires_at, new Date(exp * 1000).toISOString());
    assert.ok(warnedAt >= exp * 1000 - 1000 - 50, 'the warning comes token_warning (1 s) before exp');
    const { code, reason } = await withTimeout(c.closed, 5000, 'close at exp');
    assert.equal(code, 1008);
    assert.match(reason, /expired/);
    assert.ok(Date.now() >= exp * 1000 - 50, 'closed at exp, not before');
  });

  test('refresh with a new token for the same sub extends the connection', async () => {
    const exp1 = Math.ceil(Date.now() / 1000) + 2;
    const exp2 = exp1 + 2;
    const refreshesBefore = await metric(server, 'switchboard_token_refreshes_total{result="ok"}');
    const c = await HubClient.connect(server, { path: tokenPath(signHS(claims({ sub: 'judy', exp: exp1 }))) });
    await c.join('lobby');
    await c.next('token_expiring', { expires_at: new Date(exp1 * 1000).toISOString() }, { ms: 5000 });
    c.send({ type: 'refresh', token: signRS(claims({ sub: 'judy', exp: exp2, rooms: ['lobby'] })) });
    const refreshed = await c.next('token_refreshed');
    assert.equal(refreshed.expires_at, new Date(exp2 * 1000).toISOString());
    // The next warning is for the new expiry; it comes after the old one passed.
    await c.next('token_expiring', { expires_at: new Date(exp2 * 1000).toISOString() }, { ms: 5000 });
    assert.ok(Date.now() > exp1 * 1000, 'past the first token\'s exp');
    assert.ok(c.open, 'the connection outlived the first token');
    await c.sync();
    // The refreshed token's claims apply: now only lobby.
    await c.expectError({ type: 'join', room: 'elsewhere' }, 'forbidden');
    const { code } = await withTimeout(c.closed, 5000, 'close at the new exp');
    assert.equal(code, 1008);
    assert.ok(Date.now() >= exp2 * 1000 - 50, 'closed at the new exp');
    assert.equal(await metric(server, 'switchboard_token_refreshes_total{result="ok"}'),
      refreshesBefore + 1);
  });

  test('a bad refresh gets an error and the old expiry stays', async () => {
    const exp = Math.ceil(Date.now() / 1000) + 2;
    const refusedBefore = await metric(server, 'switchboard_token_refreshes_total{result="refused"}');
    const expiredBefore = await metric(server, 'switchboard_token_expired_closes_total');
    const c = await HubClient.connect(server, { path: tokenPath(signHS(claims({ sub: 'ken', exp }))) });
    const bad = [
      ['garbage', 'not.a.token', /malformed/],
      ['another user', signHS(claims({ sub: 'mallory', exp: exp + 600 })), /another user/],
      ['expired', signHS(claims({ sub: 'ken', exp: nowSec() - 1 })), /expired/],
      ['bad signature', signHS(claims({ sub: 'ken', exp: exp + 600 }), { secret: 'x' }),
        /signature/],
    ];
    for (const [what, token, reason] of bad) {
      const e = await c.expectError({ type: 'refresh', token }, 'invalid_token');
      assert.match(e.error, reason, what);
    }
    await c.expectError({ type: 'refresh' }, 'invalid_field');
    await c.expectError({ type: 'refresh', token: 5 }, 'invalid_field');
    const { code } = await withTimeout(c.closed, 5000, 'close at the old exp');
    assert.equal(code, 1008);
    assert.ok(Date.now() >= exp * 1000 - 50);
    assert.equal(await metric(server, 'switchboard_token_refreshes_total{result="refused"}'),
      refusedBefore + bad.length);
    assert.equal(await metric(server, 'switchboard_token_expired_closes_total'), expiredBefore + 1);
  });
});

describe('a server with only an RS256 public key', () => {
  let server;
  before(async () => {
    server = await start([], {
      env: { SWITCHBOARD_AUTH_REQUIRED: 'true', SWITCHBOARD_JWT_PUBLIC_KEY: PUBLIC_PEM },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('an HS256 token signed with the public key is refused (algorithm confusion)', async () => {
    await expect401(server, tokenPath(signHS(claims(), { secret: PUBLIC_PEM })), {},
      /algorithm is not accepted: use RS256/, 'HS256 with the PEM as secret');
    await expect401(server, tokenPath(signHS(claims())), {}, /use RS256/, 'HS256');
  });

  test('an RS256 token without iss or aud is fine when none is configured', async () => {
    const c = await HubClient.connect(server, {
      path: tokenPath(signRS({ sub: 'zed', exp: nowSec() + 60 })),
    });
    assert.equal(c.welcome.user_id, 'zed');
    await c.close();
  });
});

describe('anonymous mode (the default) with an API key and protect_stats', () => {
  let server;
  before(async () => {
    server = await start(['--api-key', 'k3y'], {
      env: { SWITCHBOARD_PROTECT_STATS: '1', SWITCHBOARD_JWT_SECRET: SECRET },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('no token needed; broadcast allowed; refresh has nothing to refresh', async () => {
    const a = await HubClient.connect(server);
    const b = await HubClient.connect(server);
    try {
      assert.match(a.welcome.user_id, /^c-/, 'an anonymous user is its connection');
      a.send({ type: 'broadcast', content: 'anyone may' });
      await b.next('broadcast', { content: 'anyone may' });
      await a.expectError({ type: 'refresh', token: signHS(claims()) }, 'not_authenticated');
      // A token offered in anonymous mode changes nothing.
      const t = await HubClient.connect(server, { path: tokenPath(signHS(claims({ sub: 'x' }))) });
      assert.match(t.welcome.user_id, /^c-/);
      await t.close();
    } finally {
      await closeAll([a, b]);
    }
  });

  test('/stats, /status and /metrics need the API key; /health does not', async () => {
    for (const path of ['/stats', '/status', '/metrics']) {
      const none = await api(server, 'GET', path);
      assert.equal(none.status, 401, `${path} without the key`);
      assert.equal(none.json?.code, 'unauthorized');
      const wrong = await api(server, 'GET', path, { headers: { Authorization: 'Bearer nope' } });
      assert.equal(wrong.status, 401, `${path} with a wrong key`);
      const ok = await api(server, 'GET', path, { headers: { Authorization: 'Bearer k3y' } });
      assert.equal(ok.status, 200, `${path} with the key`);
    }
    assert.equal((await api(server, 'GET', '/health')).status, 200);
  });
});

describe('protect_stats without an API key', () => {
  test('nobody gets the statistics: 403 that says to set api_key', async () => {
    const server = await start([], { env: { SWITCHBOARD_PROTECT_STATS: 'yes' } });
    try {
      for (const path of ['/stats', '/metrics']) {
        const res = await api(server, 'GET', path, { headers: { Authorization: 'Bearer x' } });
        assert.equal(res.status, 403, path);
        assert.match(res.json.error, /api_key/);
      }
    } finally {
      await server.stop();
    }
  });
});
