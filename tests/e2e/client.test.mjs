// switchboard.js for other web apps, and the assets: the example of
// docs/client.md works as written, and every page loads from the binary
// alone, with nothing fetched from anywhere else.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { HubClient, api, startHub } from '../integration/lib/hub.mjs';
import { checkPage, closePage, launch, newPage, waitFor } from './lib/browser.mjs';

const root = new URL('../../', import.meta.url);
let server;
let browser;

before(async () => {
  server = await startHub();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// The inline <script> blocks of an HTML text, trimmed.
function inlineScripts(html) {
  return [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1].trim());
}

test('the example of docs/client.md is the page at /examples/client.html, and it chats', async () => {
  const doc = readFileSync(new URL('docs/client.md', root), 'utf8');
  const file = readFileSync(new URL('web/examples/client.html', root), 'utf8');
  const block = /```html\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, 'docs/client.md has an html example');
  assert.deepEqual(inlineScripts(block[1]), inlineScripts(file), 'the doc shows the served example\'s code');
  assert.match(block[1], /<script src="\/switchboard.js"><\/script>/);
  const lines = inlineScripts(file)[0].split('\n').length;
  assert.ok(lines <= 12, `the example is about ten lines (${lines})`);

  const zed = await HubClient.connect(server, { label: 'zed' });
  let page;
  try {
    await zed.join('general', 'zed');
    page = await newPage(browser);
    await page.goto(`${server.url}examples/client.html`);
    const joined = await zed.next('user_joined', (m) => /^guest\d+$/.test(m.nickname));
    await zed.say('general', 'hello, example <i>page</i>');
    await waitFor(page, () => [...document.querySelectorAll('#log li')]
      .some((li) => li.textContent === 'zed: hello, example <i>page</i>'), null, 'zed\'s message in the example');
    assert.equal(await page.$$eval('#log i', (els) => els.length), 0, 'shown as text');
    await page.fill('#text', 'hi from the example');
    await page.press('#text', 'Enter');
    const m = await zed.next('message', { content: 'hi from the example' });
    assert.equal(m.nickname, joined.nickname);
    checkPage(page);
  } finally {
    await zed.close();
    if (page) await closePage(page);
  }
});

test('the pages and the library are served from the binary with their types and ETags', async () => {
  const assets = {
    '/': 'text/html; charset=utf-8',
    '/dashboard': 'text/html; charset=utf-8',
    '/switchboard.js': 'text/javascript; charset=utf-8',
    '/chat.js': 'text/javascript; charset=utf-8',
    '/dashboard.js': 'text/javascript; charset=utf-8',
    '/app.css': 'text/css; charset=utf-8',
    '/favicon.svg': 'image/svg+xml',
    '/examples/client.html': 'text/html; charset=utf-8',
  };
  for (const [path, type] of Object.entries(assets)) {
    const res = await api(server, 'GET', path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers['content-type'], type, path);
    assert.ok(res.headers.etag, `${path} has an ETag`);
    const again = await api(server, 'GET', path, { headers: { 'If-None-Match': res.headers.etag } });
    assert.equal(again.status, 304, `${path} answers 304 to its ETag`);
  }
  const js = await api(server, 'GET', '/switchboard.js');
  assert.equal(js.text, readFileSync(new URL('web/switchboard.js', root), 'utf8'));
  assert.doesNotMatch(js.text, /\b(require|import)\s*\(/, 'switchboard.js depends on nothing');
});

test('the chat and the dashboard load everything from the server itself, and never use innerHTML', async (t) => {
  for (const path of ['', 'dashboard']) {
    const page = await newPage(browser);
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    try {
      await page.goto(`${server.url}${path}`, { waitUntil: 'load' });
      await waitFor(page, () => document.querySelector('#status, #login-status')?.dataset.state === 'connected',
        null, `/${path} connected`);
      const timing = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        return { domContentLoaded: Math.round(nav.domContentLoadedEventEnd), load: Math.round(nav.loadEventEnd) };
      });
      t.diagnostic(`/${path}: DOMContentLoaded ${timing.domContentLoaded} ms, load ${timing.load} ms, ` +
        `${requests.length} requests`);
      const foreign = requests.filter((u) => !u.startsWith(server.url) && !u.startsWith(server.wsUrl) &&
        !u.startsWith('data:'));
      assert.deepEqual(foreign, [], `/${path} fetches nothing from elsewhere`);
      checkPage(page);
    } finally {
      await closePage(page);
    }
  }
  for (const file of ['chat.js', 'dashboard.js', 'switchboard.js']) {
    const text = readFileSync(new URL(`web/${file}`, root), 'utf8');
    assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/,
      `${file} builds the page from text nodes only`);
  }
});

test('switchboard.js runs in Node.js with the ws package, as docs/client.md says', async () => {
  const require = createRequire(new URL('../integration/package.json', import.meta.url));
  const Switchboard = require(new URL('web/switchboard.js', root).pathname);
  const sb = new Switchboard({ url: `ws://127.0.0.1:${server.port}/ws`, WebSocket: require('ws'), nickname: 'nodebot' });
  const zoe = await HubClient.connect(server, { label: 'zoe' });
  try {
    await zoe.join('node-room', 'zoe');
    const got = [];
    sb.on('message', (m) => got.push(m.content));
    await sb.join('node-room');
    assert.equal(sb.state, 'connected');
    const sent = await sb.send('node-room', 'from node');
    assert.equal(typeof sent.id, 'number');
    const m = await zoe.next('message', { content: 'from node' });
    assert.equal(m.nickname, 'nodebot');
    await zoe.say('node-room', 'to node');
    const users = await sb.users('node-room');
    assert.deepEqual(users.map((u) => u.nickname).sort(), ['nodebot', 'zoe']);
    assert.deepEqual(got, ['from node', 'to node']);
    // The protocol's `rooms`, as the chat's room list and the dashboard use it.
    const rooms = await sb.rooms();
    const mine = rooms.find((r) => r.name === 'node-room');
    assert.deepEqual({ ...mine, last_activity: undefined },
      { name: 'node-room', members: 2, messages: 2, last_activity: undefined });
    assert.match(mine.last_activity, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await assert.rejects(sb.send('no-such-room', 'x'), (e) => e.code === 'room_not_found' && /no room/.test(e.message),
      'a refused request rejects with the server\'s code and words');
  } finally {
    sb.close();
    await zoe.close();
  }
});

test('Chromium negotiates permessage-deflate and gets compressed messages through', async () => {
  const page = await newPage(browser);
  try {
    await page.goto(`${server.url}examples/client.html`);
    const result = await page.evaluate(() => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/echo`);
      const text = 'compress me, compress me, compress me '.repeat(200);
      ws.onerror = () => reject(new Error('WebSocket error'));
      ws.onopen = () => ws.send(text);
      ws.onmessage = (e) => {
        resolve({ extensions: ws.extensions, same: e.data === text });
        ws.close(1000);
      };
    }));
    assert.match(result.extensions, /^permessage-deflate/);
    assert.equal(result.same, true, 'the echo came back unchanged through compression');
    const stats = (await api(server, 'GET', '/stats')).json;
    assert.ok(stats.compressed_messages_received >= 1, 'the browser sent it compressed');
    assert.ok(stats.compressed_messages_sent >= 1, 'the server sent it back compressed');
    checkPage(page);
  } finally {
    await closePage(page);
  }
});
