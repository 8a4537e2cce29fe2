// The chat at / in a real Chromium, as people use it: nicknames, messages,
// notices, typing, members, history, rooms, unread counts, direct messages,
// HTML shown as text, a phone-sized screen.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { HubClient, startHub } from '../integration/lib/hub.mjs';
import {
  checkPage, closePage, launch, members, messages, newPage, notices, openChat, say, screenshot,
  waitFor, waitForMembers, waitForMessage, waitForNotice,
} from './lib/browser.mjs';

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

// Closes pages (asserting they had no errors) even when a test failed.
async function done(...pages) {
  for (const p of pages.filter(Boolean)) {
    try {
      checkPage(p);
    } finally {
      await closePage(p);
    }
  }
}

test('two people chat: messages both ways, join and leave notices, typing, member list', async () => {
  let alice;
  let bob;
  try {
    alice = await openChat(browser, server.url, 'alice');
    await waitForMembers(alice, ['alice']);
    assert.equal(await alice.$eval('#status', (el) => el.textContent), 'Connected');

    bob = await openChat(browser, server.url, 'bob');
    await waitForNotice(alice, 'bob joined · 2 members here');
    await waitForMembers(alice, ['alice', 'bob']);
    await waitForMembers(bob, ['alice', 'bob']);
    assert.deepEqual(await members(alice), [
      { nick: 'alice', status: 'online' }, { nick: 'bob', status: 'online' }],
    'alice first (that is you), then the others, all online');

    await say(alice, 'Hello Bob!');
    await waitForMessage(bob, 'Hello Bob!', { own: false });
    await say(bob, 'Hi Alice, how are you?');
    await waitForMessage(alice, 'Hi Alice, how are you?', { own: false });
    const seen = await messages(bob);
    assert.deepEqual(seen.map((m) => [m.nick, m.text, m.own]), [
      ['alice', 'Hello Bob!', false], ['bob', 'Hi Alice, how are you?', true]]);
    assert.ok(seen[0].id < seen[1].id, 'messages carry their ids, in order');
    const time = await bob.$eval('#messages .msg time', (t) => ({ dt: t.getAttribute('datetime'), text: t.textContent }));
    assert.match(time.dt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'each message has its time');
    assert.match(time.text, /\d\d?:\d\d/);

    // Typing: shown to the other one, and gone when the message is sent.
    await bob.type('#input', 'Fine');
    await waitFor(alice, () => document.querySelector('#typing').textContent === 'bob is typing…',
      null, 'alice sees "bob is typing…"');
    await waitFor(alice, () => document.querySelector('#user-list [data-nick="bob"]').dataset.status === 'typing',
      null, 'bob shows as typing in the member list');
    assert.equal(await bob.$eval('#typing', (el) => el.textContent), '', 'no one types for bob');
    await bob.press('#input', 'Enter');
    await waitForMessage(alice, 'Fine');
    await waitFor(alice, () => document.querySelector('#typing').textContent === '', null,
      'the typing indicator clears when the message arrives');
    // Typing, then emptying the composer, says "stopped".
    await bob.type('#input', 'hm');
    await waitFor(alice, () => document.querySelector('#typing').textContent !== '', null, 'typing again');
    await bob.fill('#input', '');
    await waitFor(alice, () => document.querySelector('#typing').textContent === '', null,
      'the indicator clears when bob empties the composer');

    await screenshot(alice, 'chat-desktop');

    // Leaving and coming back.
    await bob.click('#leave-room');
    await waitForNotice(alice, 'bob left · 1 member here');
    await waitForMembers(alice, ['alice']);
    await waitFor(bob, () => document.querySelector('#room-list [data-room="general"]')
      ?.classList.contains('not-joined'), null, 'general is listed as a room bob can join');
    await bob.click('#room-list [data-room="general"]');
    await waitFor(alice, () => [...document.querySelectorAll('#messages .notice')]
      .filter((n) => n.textContent === 'bob joined · 2 members here').length === 2, null,
    'a second "bob joined" notice');
    await waitForMembers(alice, ['alice', 'bob']);
  } finally {
    await done(alice, bob);
  }
});

test('someone who joins later sees the history, in order, not marked as theirs', async () => {
  let dan;
  let eve;
  let fay;
  try {
    dan = await openChat(browser, server.url, 'dan');
    eve = await openChat(browser, server.url, 'eve');
    await say(dan, 'history one');
    await say(eve, 'history two');
    await say(dan, 'history three');
    fay = await openChat(browser, server.url, 'fay');
    await waitForMessage(fay, 'history three', { own: false });
    const texts = (await messages(fay)).filter((m) => m.text.startsWith('history'));
    assert.deepEqual(texts.map((m) => [m.nick, m.text, m.own]), [
      ['dan', 'history one', false], ['eve', 'history two', false], ['dan', 'history three', false]]);
    assert.equal((await notices(fay)).filter((n) => / joined /.test(n)).length, 0,
      'history is messages only: no old notices');
    await waitForMembers(fay, ['dan', 'eve', 'fay']);
    // And the newcomer is part of the conversation at once.
    await say(fay, 'hello from fay');
    await waitForMessage(dan, 'hello from fay', { own: false });
  } finally {
    await done(dan, eve, fay);
  }
});

test('an invalid or taken nickname shows the server\'s error, and a good one gets in', async () => {
  let gus;
  let page;
  const probe = await HubClient.connect(server, { label: 'probe' });
  try {
    gus = await openChat(browser, server.url, 'gus');
    page = await newPage(browser);
    await page.goto(server.url);
    await waitFor(page, () => document.querySelector('#login-status').dataset.state === 'connected',
      null, 'the login card shows the connection');

    // What the server says to the same requests.
    probe.send({ type: 'join', nickname: 'bad name!' });
    const invalid = await probe.next('error');
    assert.equal(invalid.code, 'invalid_nickname');
    probe.send({ type: 'join', nickname: 'gus' });
    const taken = await probe.next('error');
    assert.equal(taken.code, 'nickname_taken');

    await page.fill('#nick', 'bad name!');
    assert.ok(await page.$eval('#nick-hint', (el) => el.classList.contains('bad')),
      'the hint turns red while the name breaks the server\'s rule');
    await page.press('#nick', 'Enter');
    await waitFor(page, (text) => {
      const e = document.querySelector('#login-error');
      return !e.hidden && e.textContent === text;
    }, invalid.error, `the server's words: ${invalid.error}`);
    await screenshot(page, 'chat-login-error');

    await page.fill('#nick', 'gus');
    await page.press('#nick', 'Enter');
    await waitFor(page, (text) => document.querySelector('#login-error').textContent === text,
      taken.error, `the server's words: ${taken.error}`);
    assert.equal(await page.$eval('#app', (el) => el.hidden), true, 'still on the nickname step');

    await page.fill('#nick', 'gus2');
    await page.press('#nick', 'Enter');
    await page.waitForSelector('#app:not([hidden])');
    await waitForMembers(gus, ['gus', 'gus2']);
  } finally {
    await probe.close();
    await done(gus, page);
  }
});

test('HTML in a message is shown as text, never run or rendered', async () => {
  let hal;
  let ivy;
  const attacks = [
    '<img src=x onerror="window.__pwned = 1">',
    '<b>bold</b> & <i>italic</i>',
    '<script>window.__pwned = 2</script>',
    '"><svg onload="window.__pwned=3">',
  ];
  try {
    hal = await openChat(browser, server.url, 'hal');
    ivy = await openChat(browser, server.url, 'ivy');
    for (const a of attacks) await say(hal, a);
    for (const a of attacks) await waitForMessage(ivy, a, { own: false });
    for (const p of [hal, ivy]) {
      const found = await p.evaluate(() => ({
        pwned: window.__pwned ?? null,
        elements: document.querySelectorAll('#messages img, #messages b, #messages i, #messages script, #messages .text svg').length,
      }));
      assert.deepEqual(found, { pwned: null, elements: 0 }, 'no element made from a message, no script run');
    }
    // The same through a direct message.
    await ivy.click('#user-list [data-nick="hal"]');
    await waitFor(ivy, () => document.querySelector('#conv-title').textContent === '@ hal', null, 'the DM with hal');
    await ivy.fill('#input', attacks[0]);
    await ivy.press('#input', 'Enter');
    await hal.click('#dm-list [data-dm="ivy"]');
    await waitForMessage(hal, attacks[0], { own: false });
    assert.equal(await hal.evaluate(() => window.__pwned ?? null), null);
  } finally {
    await done(hal, ivy);
  }
});

test('rooms: create, list with counts, switch, unread counts, leave; direct messages', async () => {
  let jan;
  let kim;
  try {
    jan = await openChat(browser, server.url, 'jan');
    kim = await openChat(browser, server.url, 'kim');

    // The dialog: the server's error for a bad name, Escape closes it.
    await jan.click('#new-room');
    await jan.waitForSelector('#room-dialog[open]');
    await jan.fill('#room-name', 'no spaces allowed');
    await jan.press('#room-name', 'Enter');
    await waitFor(jan, () => !document.querySelector('#room-error').hidden &&
      /room name is 1 to \d+ letters/.test(document.querySelector('#room-error').textContent), null,
    'the server\'s invalid_room error in the dialog');
    await jan.keyboard.press('Escape');
    await waitFor(jan, () => !document.querySelector('#room-dialog').open, null, 'Escape closes the dialog');

    await jan.click('#new-room');
    await jan.fill('#room-name', 'random');
    await jan.press('#room-name', 'Enter');
    await waitFor(jan, () => document.querySelector('#conv-title').textContent === '# random', null, 'jan in #random');
    await waitForMembers(jan, ['jan']);

    // kim sees the new room (with its member count) and joins it.
    await waitFor(kim, () => {
      const item = document.querySelector('#room-list [data-room="random"]');
      return item && item.classList.contains('not-joined') && item.querySelector('.count')?.textContent === '1';
    }, null, '#random listed for kim with 1 member');
    await kim.click('#room-list [data-room="random"]');
    await waitFor(kim, () => document.querySelector('#conv-title').textContent === '# random', null, 'kim in #random');
    await waitForNotice(jan, 'kim joined · 2 members here');

    // Unread counts on the room jan is not looking at.
    await jan.click('#room-list [data-room="general"]');
    await waitFor(jan, () => document.querySelector('#conv-title').textContent === '# general', null, 'jan back in #general');
    await say(kim, 'in random 1');
    await say(kim, 'in random 2');
    await waitFor(jan, () => document.querySelector('#room-list [data-room="random"] .unread-count')?.textContent === '2',
      null, 'an unread count of 2 on #random');
    await screenshot(jan, 'chat-unread');
    await jan.click('#room-list [data-room="random"]');
    await waitForMessage(jan, 'in random 2', { own: false });
    assert.equal(await jan.$('#room-list [data-room="random"] .unread-count'), null, 'read now');

    // A direct message from the member list.
    await jan.click('#user-list [data-nick="kim"]');
    await waitFor(jan, () => document.querySelector('#conv-title').textContent === '@ kim', null, 'the DM with kim');
    await say(jan, 'psst, kim');
    await waitFor(kim, () => document.querySelector('#dm-list [data-dm="jan"] .unread-count')?.textContent === '1',
      null, 'kim has 1 unread direct message from jan');
    await kim.click('#dm-list [data-dm="jan"]');
    await waitForMessage(kim, 'psst, kim', { own: false });
    await say(kim, 'what is it?');
    await waitFor(jan, () => [...document.querySelectorAll('#messages .msg .text')]
      .some((t) => t.textContent === 'what is it?'), null, 'the answer in jan\'s DM');

    // Leaving #random: kim's page moves to a joined room; jan sees it.
    await kim.click('#room-list [data-room="random"]');
    await kim.click('#leave-room');
    await waitFor(kim, () => document.querySelector('#conv-title').textContent === '# general', null,
      'kim back in #general after leaving #random');
    await jan.click('#room-list [data-room="random"]');
    await waitForNotice(jan, 'kim left · 1 member here');
  } finally {
    await done(jan, kim);
  }
});

test('on a phone-sized screen the chat fits, and the room list opens and closes', async () => {
  let lea;
  let max;
  try {
    max = await openChat(browser, server.url, 'max');
    lea = await openChat(browser, server.url, 'lea', { viewport: { width: 375, height: 740 } });
    await say(max, 'Hi Lea, on your phone?');
    await waitForMessage(lea, 'Hi Lea, on your phone?', { own: false });
    await say(lea, 'Yes — and it fits.');

    const layout = await lea.evaluate(() => {
      const box = (sel) => document.querySelector(sel).getBoundingClientRect();
      return {
        scrollWidth: document.scrollingElement.scrollWidth,
        sidebarRight: box('#sidebar').right,
        composer: box('#composer'),
        status: box('#status'),
        input: box('#input'),
      };
    });
    assert.ok(layout.scrollWidth <= 375, `no sideways scrolling (width ${layout.scrollWidth})`);
    assert.ok(layout.sidebarRight <= 0, 'the room list is tucked away');
    assert.ok(layout.composer.right <= 375 && layout.composer.bottom <= 740, 'the composer is on screen');
    assert.ok(layout.input.width >= 200, `the input is wide enough to type (${layout.input.width}px)`);
    assert.ok(layout.status.right <= 375 && layout.status.width > 0, 'the connection status is visible');
    await screenshot(lea, 'chat-phone');

    await lea.click('#open-sidebar');
    await waitFor(lea, () => document.querySelector('#sidebar').getBoundingClientRect().left >= 0, null,
      'the room list slides in');
    await screenshot(lea, 'chat-phone-rooms');
    await lea.keyboard.press('Escape');
    await waitFor(lea, () => document.querySelector('#sidebar').getBoundingClientRect().right <= 0, null,
      'Escape closes it');
    await lea.click('#toggle-users');
    await waitFor(lea, () => document.querySelector('#userpanel').getBoundingClientRect().left < 375 &&
      document.querySelector('#userpanel').getBoundingClientRect().right <= 375, null, 'the member list slides in');
    await lea.keyboard.press('Escape');
    await waitFor(lea, () => document.querySelector('#userpanel').getBoundingClientRect().left >= 375, null,
      'Escape closes it');
  } finally {
    await done(lea, max);
  }
});

test('on a server whose fixed room list has no #general, the chat starts in its first room', async () => {
  const fixed = await startHub(['--rooms', 'lobby,dev']);
  let page;
  try {
    page = await newPage(browser);
    await page.goto(fixed.url);
    await page.fill('#nick', 'nia');
    await page.press('#nick', 'Enter');
    await waitFor(page, () => document.querySelector('#conv-title').textContent === '# lobby', null, '#lobby on screen');
    await waitFor(page, () => [...document.querySelectorAll('#room-list [data-room]')].map((b) => b.dataset.room)
      .join() === 'lobby,dev', null, 'both rooms of the list in the sidebar');
    await say(page, 'hello lobby');
  } finally {
    await done(page);
    await fixed.stop();
  }
});
