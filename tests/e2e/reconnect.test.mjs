// Connection loss in a real Chromium: the server restarts while pages are
// open; they show it, come back by themselves, and show every message sent
// while they were away exactly once (switchboard.js rejoins with `since`).
//
// The pages reach the server through a TCP relay (lib/proxy.mjs), so the
// test decides how long they stay away: long enough to restart the server
// and send messages they must catch up on.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { HubClient, startHub, tempDir } from '../integration/lib/hub.mjs';
import {
  checkPage, closePage, launch, messages, newPage, openChat, say, screenshot, waitFor,
  waitForMessage, waitForState,
} from './lib/browser.mjs';
import { startProxy } from './lib/proxy.mjs';

const RECONNECT_MS = 20000; // failure guard: backoff is at most 10 s

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

// The texts of the messages on screen, in order.
async function texts(page) {
  return (await messages(page)).map((m) => m.text);
}

test('a server restart: both pages reconnect by themselves and show what was sent meanwhile exactly once', async () => {
  const data = tempDir('sb-e2e-restart-');
  let server = await startHub([], { dataDir: data.dir });
  const proxy = await startProxy(server.port);
  const pages = [];
  let carol;
  try {
    const opts = { allowNetworkErrors: true };
    const alice = await openChat(browser, proxy.url, 'alice', opts);
    const bob = await openChat(browser, proxy.url, 'bob', opts);
    pages.push(alice, bob);
    await say(alice, 'before 1');
    await say(bob, 'before 2');
    await waitForMessage(alice, 'before 2');

    // The server stops while the pages are open, and they cannot reach
    // the new one until the test lets them.
    proxy.pause();
    await server.stop();
    for (const p of pages) {
      await waitForState(p, 'reconnecting');
      await waitFor(p, () => /^Reconnecting/.test(document.querySelector('#status').textContent) &&
        !document.querySelector('#banner').hidden, null, '"Reconnecting" and the banner');
    }
    await screenshot(alice, 'chat-reconnecting');

    server = await startHub([], { dataDir: data.dir });
    carol = await HubClient.connect(server, { label: 'carol' });
    const { history } = await carol.join('general', 'carol');
    assert.deepEqual(history.messages.map((m) => m.content), ['before 1', 'before 2'],
      'the history survived the restart');
    const during = ['during 1', 'during 2', 'during 3 <b>not bold</b>', 'during 4', 'during 5'];
    for (const text of during) await carol.say('general', text);
    // Still away: the pages have not seen any of it.
    for (const p of pages) {
      assert.equal(await p.$eval('#status', (el) => el.dataset.state), 'reconnecting');
      assert.ok(!(await texts(p)).includes('during 1'));
    }

    proxy.resume(server.port);
    for (const p of pages) await waitForState(p, 'connected', RECONNECT_MS);
    await carol.say('general', 'after');
    const want = ['before 1', 'before 2', ...during, 'after'];
    for (const [i, p] of pages.entries()) {
      await waitForMessage(p, 'after');
      const shown = await messages(p);
      assert.deepEqual(shown.map((m) => m.text), want,
        `page ${i + 1} shows every message once, in order`);
      const ids = shown.map((m) => m.id);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in id order');
      assert.equal(new Set(ids).size, ids.length, 'no id twice');
      assert.equal(await p.$eval('#banner', (el) => el.hidden), true, 'the banner is gone');
    }
    // The connection works both ways again: same nicknames, live messages.
    await say(bob, 'bob is back');
    await waitForMessage(alice, 'bob is back', { own: false });
    assert.deepEqual(await texts(alice), [...want, 'bob is back']);
    const roster = await carol.request({ type: 'users', room: 'general' }, 'users');
    assert.deepEqual(roster.users.map((u) => u.nickname).sort(), ['alice', 'bob', 'carol'],
      'both pages rejoined #general under their nicknames');
    await screenshot(alice, 'chat-reconnected');
    for (const p of pages) checkPage(p);
  } finally {
    await carol?.close().catch(() => {});
    for (const p of pages) await closePage(p);
    await proxy.close();
    await server.stop();
    data.remove();
  }
});

test('switchboard.js catches up on more than one history page (over 500 missed messages) without gap or duplicate', async () => {
  const server = await startHub();
  const proxy = await startProxy(server.port);
  let page;
  const bot = await HubClient.connect(server, { label: 'bot' });
  try {
    await bot.join('busy', 'bot');
    for (let i = 1; i <= 3; i++) await bot.say('busy', `m${i}`);

    // The example page (it has the library), with a client of our own.
    page = await newPage(browser, { allowNetworkErrors: true });
    await page.goto(`${proxy.url}examples/client.html`);
    await page.evaluate(() => new Promise((resolve, reject) => {
      window.got = [];
      window.states = [];
      const sb = new window.Switchboard({ url: `ws://${location.host}/ws`, nickname: 'reader', minDelay: 100, maxDelay: 1000 });
      window.sb = sb;
      sb.on('message', (m, info) => window.got.push({ id: m.id, content: m.content, how: info.how }));
      sb.on('status', (s) => window.states.push(s.state));
      sb.join('busy').then(resolve, reject);
    }));
    assert.deepEqual(await page.evaluate(() => window.got.map((m) => [m.content, m.how])),
      [['m1', 'history'], ['m2', 'history'], ['m3', 'history']]);

    // Cut the page off; 520 messages go by; let it back.
    proxy.pause({ cut: true });
    await waitFor(page, () => window.sb.state === 'reconnecting', null, 'the client notices');
    const N = 520;
    for (let i = 1; i <= N; i++) bot.send({ type: 'message', room: 'busy', content: `x${i}` });
    await bot.next('message', { content: `x${N}` }, { ms: 20000 });
    proxy.resume();
    await waitFor(page, (n) => window.got.length === 3 + n, N, `${N} missed messages`, RECONNECT_MS);
    await bot.say('busy', 'live');
    await waitFor(page, () => window.got.some((m) => m.content === 'live'), null, 'the next live message');

    const got = await page.evaluate(() => window.got);
    const contents = got.map((m) => m.content);
    assert.deepEqual(contents, ['m1', 'm2', 'm3', ...Array.from({ length: N }, (_, i) => `x${i + 1}`), 'live'],
      'every message once, in order');
    assert.deepEqual(got.slice(3, 3 + N).map((m) => m.how), Array(N).fill('missed'));
    assert.equal(got.at(-1).how, 'live');
    const ids = got.map((m) => m.id);
    for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1, `no gap at ${i}`);
    assert.deepEqual(await page.evaluate(() => window.states.slice(-2)), ['reconnecting', 'connected']);
    checkPage(page);
  } finally {
    await bot.close();
    if (page) await closePage(page);
    await proxy.close();
    await server.stop();
  }
});
