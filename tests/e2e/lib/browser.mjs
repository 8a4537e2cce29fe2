// browser.mjs — Debian's Chromium driven by playwright-core, and helpers for
// the chat and the dashboard pages.
//
// Waiting is event-driven: waitFor() polls DOM state inside the page
// (page.waitForFunction) until it holds; its timeout is a failure guard.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const WAIT_MS = 10000; // failure guard for one expected page state

// Screenshots land here on every run, for a person to look at.
export const OUTPUT = fileURLToPath(new URL('../output/', import.meta.url));
mkdirSync(OUTPUT, { recursive: true });

// No network beyond loopback: everything Chromium would fetch on its own
// (updates, safe browsing, sync) is turned off.
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A page in a fresh context (its own storage: a separate person). Errors
// thrown in the page, and console errors other than the expected network
// ones, are collected in page.problems; checkPage() asserts there are none.
export async function newPage(browser, { viewport = { width: 1280, height: 800 }, allowNetworkErrors = false } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`uncaught in the page: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // A reconnecting page logs its failed attempts; tests that stop the
    // server expect them.
    if (allowNetworkErrors && /WebSocket connection to .* failed|ERR_CONNECTION|net::/.test(text)) return;
    page.problems.push(`console error: ${text}`);
  });
  page.on('dialog', (d) => {
    page.problems.push(`the page opened a ${d.type()} dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  return page;
}

export function checkPage(page, what = 'the page') {
  assert.deepEqual(page.problems, [], `${what} had errors`);
}

export async function closePage(page) {
  await page.context().close();
}

// Waits until fn(arg), run in the page, returns something truthy; returns it.
export async function waitFor(page, fn, arg, what, ms = WAIT_MS) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
    const value = await handle.jsonValue();
    await handle.dispose();
    return value;
  } catch (e) {
    throw new Error(`timed out after ${ms} ms waiting for ${what}\n${e.message.split('\n')[0]}`);
  }
}

export async function screenshot(page, name, opts = {}) {
  await page.screenshot({ path: `${OUTPUT}${name}.png`, ...opts });
}

/* ---- the chat ---------------------------------------------------------- */

// Opens the chat at url, enters nick and waits until #general is on screen.
export async function openChat(browser, url, nick, opts = {}) {
  const page = await newPage(browser, opts);
  await page.goto(url);
  await login(page, nick);
  return page;
}

export async function login(page, nick) {
  await page.fill('#nick', nick);
  await page.press('#nick', 'Enter');
  await page.waitForSelector('#app:not([hidden])');
  await waitFor(page, () => document.querySelector('#conv-title').textContent === '# general',
    null, `${nick}: #general on screen`);
}

// Types text in the composer, sends it with Enter, and waits for our own
// copy (marked as ours) in the list.
export async function say(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  await waitForMessage(page, text, { own: true });
}

// Waits for a message with this text in the conversation on screen.
export async function waitForMessage(page, text, { own } = {}) {
  return waitFor(page, ({ text, own }) => [...document.querySelectorAll('#messages .msg')].some((li) =>
    li.querySelector('.text')?.textContent === text &&
    (own === undefined || li.classList.contains('own') === own)), { text, own },
  `a message ${JSON.stringify(text)}${own === undefined ? '' : own ? ' marked as ours' : ' not marked as ours'}`);
}

// The messages of the conversation on screen: [{id, nick, text, own}].
export function messages(page) {
  return page.evaluate(() => [...document.querySelectorAll('#messages .msg')].map((li) => ({
    id: li.dataset.id ? Number(li.dataset.id) : null,
    nick: li.dataset.from,
    text: li.querySelector('.text')?.textContent ?? null,
    own: li.classList.contains('own'),
  })));
}

// The texts of the notices (joins, leaves) of the conversation on screen.
export function notices(page) {
  return page.evaluate(() => [...document.querySelectorAll('#messages .notice')].map((n) => n.textContent));
}

export async function waitForNotice(page, text) {
  return waitFor(page, (text) => [...document.querySelectorAll('#messages .notice')]
    .some((n) => n.textContent === text), text, `the notice ${JSON.stringify(text)}`);
}

// The member list on screen: [{nick, status}].
export function members(page) {
  return page.evaluate(() => [...document.querySelectorAll('#user-list .user')].map((u) => ({
    nick: u.dataset.nick, status: u.dataset.status })));
}

export async function waitForMembers(page, nicks) {
  const want = [...nicks].sort();
  return waitFor(page, (want) => {
    const got = [...document.querySelectorAll('#user-list .user')].map((u) => u.dataset.nick).sort();
    return JSON.stringify(got) === JSON.stringify(want);
  }, want, `the member list ${JSON.stringify(want)}`);
}

export function connectionState(page) {
  return page.$eval('#status', (el) => el.dataset.state);
}

export async function waitForState(page, state, ms = WAIT_MS) {
  return waitFor(page, (state) => document.querySelector('#status').dataset.state === state, state,
    `connection state ${state}`, ms);
}
