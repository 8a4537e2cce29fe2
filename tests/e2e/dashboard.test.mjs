// The dashboard at /dashboard in a real Chromium: live figures that match
// what is open, a rate that moves with traffic, charts, the room table, and
// the announcement form reaching the open chat pages (asking for the API
// key when the server has one).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startHub } from '../integration/lib/hub.mjs';
import {
  checkPage, closePage, launch, newPage, openChat, say, screenshot, waitFor, waitForMessage,
} from './lib/browser.mjs';

const RATE_MS = 20000; // failure guard for the rate to show the traffic

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

async function openDashboard(url, viewport = { width: 1280, height: 900 }) {
  const page = await newPage(browser, { viewport });
  await page.goto(`${url}dashboard`);
  await waitFor(page, () => document.querySelector('#status').dataset.state === 'connected', null,
    'the dashboard is live');
  return page;
}

function stat(page, id) {
  return page.$eval(`#${id}`, (el) => Number(el.dataset.value));
}

async function waitForStat(page, id, value) {
  return waitFor(page, ({ id, value }) => document.getElementById(id).dataset.value === String(value),
    { id, value }, `${id} = ${value}`);
}

test('the figures match the open pages, the message rate moves with traffic, the charts and the room table fill', async () => {
  const server = await startHub();
  const pages = [];
  try {
    const dash = await openDashboard(server.url);
    pages.push(dash);
    // The dashboard's own live connection is one of the open pages.
    await waitForStat(dash, 'stat-connections', 1);
    const ann = await openChat(browser, server.url, 'ann');
    const ben = await openChat(browser, server.url, 'ben');
    pages.push(ann, ben);
    await waitForStat(dash, 'stat-connections', 3);
    await waitForStat(dash, 'stat-users', 3);
    await waitFor(dash, () => document.querySelector('#rooms-body tr[data-room="general"] td:nth-child(2)')
      ?.textContent === '2', null, 'general with 2 members in the room table');

    await closePage(ben);
    pages.pop();
    await waitForStat(dash, 'stat-connections', 2);
    await waitForStat(dash, 'stat-users', 2);

    // Quiet first: the pages' own polling stays well under the threshold.
    const THRESHOLD = 10;
    const quiet = await stat(dash, 'stat-in-rate');
    assert.ok(quiet < THRESHOLD, `a quiet server shows a low rate (${quiet}/s)`);
    // Then one message typed in the chat, and bursts of 30 through the
    // page's client (what the composer calls), until the dashboard shows
    // the rate (bounded in time).
    await say(ann, 'load 0');
    const t0 = Date.now();
    let sent = 0;
    let shown = quiet;
    while (shown < THRESHOLD && Date.now() - t0 < RATE_MS) {
      sent = await ann.evaluate(async (from) => {
        const sb = window.switchboardChat.client;
        const all = [];
        for (let i = 1; i <= 30; i++) all.push(sb.send('general', `load ${from + i}`));
        await Promise.all(all);
        return from + 30;
      }, sent);
      shown = await stat(dash, 'stat-in-rate');
    }
    assert.ok(shown >= THRESHOLD, `the in rate moved from ${quiet}/s to ${shown}/s (${sent} messages sent)`);
    const out = await stat(dash, 'stat-out-rate');
    assert.ok(out > quiet, `the out rate moved too (${out}/s)`);
    await waitForMessage(ann, `load ${sent}`);
    await waitFor(dash, (n) => Number(document.querySelector('#rooms-body tr[data-room="general"] td:nth-child(3)')
      .textContent.replace(/,/g, '')) >= n, sent, 'the room table counts the messages');
    await waitFor(dash, () => Number(document.querySelector('#chart-rates').dataset.points) >= 3, null,
      'the charts have points');
    const inked = await dash.evaluate(() => ['chart-connections', 'chart-rates'].map((id) => {
      const c = document.getElementById(id);
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
      return n;
    }));
    assert.ok(inked.every((n) => n > 500), `both charts are drawn (${inked} inked pixels)`);
    assert.ok(await stat(dash, 'stat-uptime') >= 0);
    assert.equal(await stat(dash, 'stat-rooms'), 1);

    await screenshot(dash, 'dashboard', { fullPage: true });
    const phone = await openDashboard(server.url, { width: 375, height: 740 });
    pages.push(phone);
    const width = await phone.evaluate(() => document.scrollingElement.scrollWidth);
    assert.ok(width <= 375, `the dashboard fits a phone (width ${width})`);
    await screenshot(phone, 'dashboard-phone', { fullPage: true });
    for (const p of pages) checkPage(p);
  } finally {
    for (const p of pages) await closePage(p).catch(() => {});
    await server.stop();
  }
});

test('the broadcast form reaches the open chat pages, to everyone or to one room', async () => {
  const server = await startHub();
  const pages = [];
  try {
    const cat = await openChat(browser, server.url, 'cat');
    const dog = await openChat(browser, server.url, 'dog');
    const dash = await openDashboard(server.url);
    pages.push(cat, dog, dash);
    await waitForStat(dash, 'stat-connections', 3);

    const text = 'Maintenance at 18:00 <b>not bold</b>';
    await dash.fill('#bc-message', text);
    await dash.click('#bc-send');
    await waitFor(dash, () => document.querySelector('#bc-result').textContent === 'Sent to 3 connections.',
      null, '"Sent to 3 connections."');
    for (const p of [cat, dog]) {
      await waitFor(p, (text) => [...document.querySelectorAll('#messages .announcement .text')]
        .some((t) => t.textContent === text), text, 'the announcement in the chat');
    }
    await waitFor(dash, (text) => document.querySelector('#feed li').textContent.endsWith(`server: ${text}`),
      text, 'the announcement in the dashboard\'s live feed');
    await screenshot(cat, 'chat-announcement');

    // To one room: stored, so it arrives as a message of that room.
    await waitFor(dash, () => [...document.querySelectorAll('#bc-room option')].some((o) => o.value === 'general'),
      null, 'general offered as a target');
    await dash.selectOption('#bc-room', 'general');
    await dash.fill('#bc-message', 'Only for #general');
    await dash.click('#bc-send');
    await waitFor(dash, () => document.querySelector('#bc-result').textContent === 'Sent to 2 connections.',
      null, '"Sent to 2 connections."');
    await waitForMessage(cat, 'Only for #general', { own: false });
    for (const p of pages) checkPage(p);
  } finally {
    for (const p of pages) await closePage(p).catch(() => {});
    await server.stop();
  }
});

test('with an API key configured, the form asks for it and sends once it is right', async () => {
  const server = await startHub(['--api-key', 's3cret']);
  const pages = [];
  try {
    const eel = await openChat(browser, server.url, 'eel');
    const dash = await openDashboard(server.url);
    pages.push(eel, dash);
    assert.equal(await dash.$eval('#key-row', (el) => el.hidden), true, 'no key asked for before it is needed');

    await dash.fill('#bc-message', 'Keyed announcement');
    await dash.click('#bc-send');
    await waitFor(dash, () => !document.querySelector('#key-row').hidden &&
      /asks for its API key/.test(document.querySelector('#bc-result').textContent), null, 'the form asks for the key');
    await dash.fill('#bc-key', 'wrong');
    await dash.click('#bc-send');
    await waitFor(dash, () => /API key is not right/.test(document.querySelector('#bc-result').textContent), null,
      'a wrong key is refused');
    await dash.fill('#bc-key', 's3cret');
    await dash.click('#bc-send');
    await waitFor(dash, () => document.querySelector('#bc-result').textContent === 'Sent to 2 connections.',
      null, 'sent with the key');
    await waitFor(eel, () => [...document.querySelectorAll('#messages .announcement .text')]
      .some((t) => t.textContent === 'Keyed announcement'), null, 'the announcement in the chat');
    await screenshot(dash, 'dashboard-api-key', { fullPage: true });
    // The 401 answers are the only console errors the browser reports.
    dash.problems = dash.problems.filter((p) => !/status of 401/.test(p));
    for (const p of pages) checkPage(p);
  } finally {
    for (const p of pages) await closePage(p).catch(() => {});
    await server.stop();
  }
});
