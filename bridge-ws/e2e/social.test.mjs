// End-to-end: contacts, blocking, devices and the admin page (issue 8) in real headless
// Chromium against a real broker.
//
// Starts `quip-broker` (target/debug, built by cargo) on 127.0.0.1 with a temp data dir and
// `--admin-username root`, so registering "root" makes an admin. Users Alice, Bob, Carol
// (a stranger) and root each use their own browser context. The tests run in order and
// build on each other. No timing thresholds: every step waits for a state, with generous
// timeouts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { byId, launchChromium, pageHelpers, screenshot, startBroker, typeAndSend, watch } from './harness.mjs';

const WAIT = 20_000;

let broker;
let browser;

const errors = [];
const contexts = {};
const pages = {};

const { register, fillLogin, login, openChatWith, createGroup, send, seeMessage } = pageHelpers({
  base: () => broker.base,
  wait: WAIT,
});

async function newPage(who) {
  contexts[who] = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  pages[who] = watch(await contexts[who].newPage(), errors, who);
  return pages[who];
}

async function openContacts(page, tab = 'people') {
  await byId(page, 'nav-contacts').click();
  await byId(page, 'contacts-page').waitFor({ timeout: WAIT });
  await byId(page, `contacts-tab-${tab}`).click();
}

const friendRow = (page, username) => page.locator(`[data-testid="friend-row"][data-username="${username}"]`);
const requestRow = (page, direction, username) =>
  page.locator(`[data-testid="request-row"][data-direction="${direction}"][data-username="${username}"]`);
const blockedRow = (page, username) => page.locator(`[data-testid="blocked-row"][data-username="${username}"]`);

/** The login screen is shown, with an error matching `pattern`. */
async function seeLoginScreen(page, pattern) {
  await byId(page, 'login-submit').waitFor({ timeout: WAIT });
  await page.locator('[data-testid="login-error"]:visible', { hasText: pattern }).waitFor({ timeout: WAIT });
  assert.equal(await byId(page, 'new-chat').isVisible(), false);
}

before(async () => {
  broker = await startBroker({ prefix: 'quip-e2e-social-', args: ['--admin-username', 'root'] });
  browser = await launchChromium();
  await register(await newPage('alice'), 'alice');
  await register(await newPage('bob'), 'bob');
});

after(async () => {
  await browser?.close();
  broker?.stop();
});

test('friend request with a message, accepted on the contacts page; the friend shows online', async () => {
  const { alice, bob } = pages;

  await openContacts(alice);
  await byId(alice, 'contacts-add-username').fill('bob');
  await byId(alice, 'contacts-add-message').fill('Hi Bob, it is Alice from the book club');
  await byId(alice, 'contacts-add-submit').click();
  await requestRow(alice, 'outgoing', 'bob').waitFor({ timeout: WAIT });

  // Bob is not on the contacts page: the live event puts a badge on its entry.
  await bob.locator('[data-testid="contacts-badge"]:visible', { hasText: '1' }).waitFor({ timeout: WAIT });
  await openContacts(bob);
  const incoming = requestRow(bob, 'incoming', 'alice');
  await incoming.waitFor({ timeout: WAIT });
  assert.match(await incoming.locator('[data-testid="request-message"]').innerText(), /Hi Bob, it is Alice from the book club/);
  await screenshot(bob, 'contacts-request.png');
  await incoming.locator('[data-testid="request-accept"]').click();

  await friendRow(bob, 'alice').waitFor({ timeout: WAIT });
  await incoming.waitFor({ state: 'detached', timeout: WAIT });
  await byId(bob, 'contacts-badge').waitFor({ state: 'hidden', timeout: WAIT });

  // Alice learns it live (request accepted): Bob is her friend, online.
  await friendRow(alice, 'bob').waitFor({ timeout: WAIT });
  await requestRow(alice, 'outgoing', 'bob').waitFor({ state: 'detached', timeout: WAIT });
  await friendRow(alice, 'bob').locator('[data-testid="presence-dot"][data-online="true"]').waitFor({ timeout: WAIT });
  await friendRow(alice, 'bob').locator('[data-testid="friend-presence"]', { hasText: 'online' }).waitFor({ timeout: WAIT });
  await screenshot(alice, 'contacts.png');

  // "Message" opens the 1:1 chat.
  await friendRow(alice, 'bob').locator('[data-testid="friend-message"]').click();
  await alice.locator('[data-testid="chat-title"]', { hasText: 'Bob' }).waitFor({ timeout: WAIT });
  await byId(alice, 'contacts-page').waitFor({ state: 'hidden', timeout: WAIT });
  await send(alice, 'Now we are friends');
  await friendRow(bob, 'alice').locator('[data-testid="friend-message"]').click();
  await bob.locator('[data-testid="chat-title"]', { hasText: 'Alice' }).waitFor({ timeout: WAIT });
  await seeMessage(bob, 'Now we are friends');
});

test("blocking refuses the blocked user's messages with a readable error; unblocking restores", async () => {
  const { alice, bob } = pages;

  await openContacts(alice);
  await friendRow(alice, 'bob').locator('[data-testid="friend-block"]').click();
  await blockedRow(alice, 'bob').waitFor({ timeout: WAIT });
  await friendRow(alice, 'bob').and(alice.locator('[data-blocked="true"]')).waitFor({ timeout: WAIT });

  // Bob (still in his chat with Alice) cannot send: the bubble fails with a readable reason.
  const refused = await typeAndSend(bob, 'Can you hear me?');
  await refused.and(bob.locator('[data-state="failed"]')).waitFor({ timeout: WAIT });
  await bob.locator('[data-testid="message-error"]', { hasText: /blocked/i }).waitFor({ timeout: WAIT });
  await screenshot(bob, 'blocked.png');

  // Alice sending to someone she blocked: refused too, "unblock first".
  await friendRow(alice, 'bob').locator('[data-testid="friend-message"]').click();
  await alice.locator('[data-testid="chat-title"]', { hasText: 'Bob' }).waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="contact-bar"][data-state="blocked"]').waitFor({ timeout: WAIT });
  const mine = await typeAndSend(alice, 'Blocked you, sorry');
  await mine.and(alice.locator('[data-state="failed"]')).waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="message-error"]', { hasText: /unblock/i }).waitFor({ timeout: WAIT });

  // Unblock: Bob's next message goes through.
  await openContacts(alice);
  await blockedRow(alice, 'bob').locator('[data-testid="blocked-unblock"]').click();
  await blockedRow(alice, 'bob').waitFor({ state: 'detached', timeout: WAIT });
  await friendRow(alice, 'bob').and(alice.locator('[data-blocked="false"]')).waitFor({ timeout: WAIT });
  await send(bob, 'Back on speaking terms');
  await friendRow(alice, 'bob').locator('[data-testid="friend-message"]').click();
  await seeMessage(alice, 'Back on speaking terms');
  assert.equal(await alice.locator('[data-testid="message"]:not([data-mine="true"])', { hasText: 'Can you hear me?' }).count(), 0);
});

test('"only friends can message me" refuses a stranger, not a friend', async () => {
  const { alice, bob } = pages;
  const carol = await newPage('carol');
  await register(carol, 'carol');

  await openContacts(bob, 'settings');
  const toggle = byId(bob, 'contacts-friends-only');
  await toggle.and(bob.locator('[data-loaded="true"]')).waitFor({ state: 'attached', timeout: WAIT });
  await byId(bob, 'contacts-friends-only-label').click();
  await toggle.and(bob.locator('[data-value="true"]')).waitFor({ state: 'attached', timeout: WAIT });

  // Carol, a stranger: refused with a readable reason.
  await openChatWith(carol, 'bob');
  const refused = await typeAndSend(carol, 'Hello stranger');
  await refused.and(carol.locator('[data-state="failed"]')).waitFor({ timeout: WAIT });
  await carol.locator('[data-testid="message-error"]', { hasText: /only accepts messages from friends/i }).waitFor({ timeout: WAIT });

  // Alice, a friend: fine.
  await send(alice, 'Friends still get through');

  // Off again: Carol's retry goes through.
  await byId(bob, 'contacts-friends-only-label').click();
  await toggle.and(bob.locator('[data-value="false"]')).waitFor({ state: 'attached', timeout: WAIT });
  await carol.locator('[data-testid="retry"]').first().click();
  await refused.and(carol.locator('[data-state="sent"]')).waitFor({ timeout: WAIT });

  // The chat with a stranger offers "Add friend"; the request reaches Bob live.
  await byId(carol, 'contact-bar-add').click();
  await carol.locator('[data-testid="contact-bar"]', { hasText: 'Friend request sent' }).waitFor({ timeout: WAIT });
  await bob.locator('[data-testid="contacts-badge"]:visible', { hasText: '1' }).waitFor({ timeout: WAIT });
  await openContacts(bob);
  await requestRow(bob, 'incoming', 'carol').locator('[data-testid="request-reject"]').click();
  await requestRow(bob, 'incoming', 'carol').waitFor({ state: 'detached', timeout: WAIT });
  await byId(bob, 'contacts-badge').waitFor({ state: 'hidden', timeout: WAIT });
});

test('devices: this browser is listed; logging out another device sends it to the login screen', async () => {
  const { bob } = pages;
  const bob2 = await newPage('bob2');
  await login(bob2, 'bob');
  const bob2Device = await bob2.evaluate(() => localStorage.getItem('quip.device_id'));
  const bobDevice = await bob.evaluate(() => localStorage.getItem('quip.device_id'));
  assert.ok(bob2Device && bobDevice && bob2Device !== bobDevice);

  await openContacts(bob, 'settings');
  await bob.locator(`[data-testid="device-row"][data-device-id="${bobDevice}"][data-current="true"][data-online="true"]`).waitFor({ timeout: WAIT });
  const other = bob.locator(`[data-testid="device-row"][data-device-id="${bob2Device}"]`);
  // The list refreshes by itself while it is shown; the Refresh button makes it sooner.
  await byId(bob, 'devices-refresh').click();
  await other.and(bob.locator('[data-current="false"][data-online="true"]')).waitFor({ timeout: WAIT });
  await screenshot(bob, 'devices.png');

  await other.locator('[data-testid="device-logout"]').click();
  await seeLoginScreen(bob2, /signed out/i);
  await other.and(bob.locator('[data-online="false"]')).waitFor({ timeout: WAIT });

  // Bob's own session is untouched.
  await bob.locator(`[data-testid="device-row"][data-device-id="${bobDevice}"][data-online="true"]`).waitFor({ timeout: WAIT });
  assert.equal(await byId(bob, 'new-chat').isVisible(), true);

  // The signed-out browser can sign in again with the password.
  await fillLogin(bob2, 'bob');
  await byId(bob2, 'new-chat').waitFor({ timeout: WAIT });
  await contexts.bob2.close();
});

test('admin page: absent for a normal user; root finds, disables and re-enables a user, and sees stats', async () => {
  const { alice, carol } = pages;

  // Not for Alice: no entry, and the API says no.
  assert.equal(await byId(alice, 'nav-admin').isVisible(), false);
  const code = await alice.evaluate(() => window.quip.api.adminStats().then(() => 0, (e) => e.code));
  assert.equal(code, 10, 'FORBIDDEN for a non-admin');

  const rootPage = await newPage('root');
  await register(rootPage, 'root');
  await byId(rootPage, 'nav-admin').click();
  await byId(rootPage, 'admin-page').waitFor({ timeout: WAIT });

  // Stats, refreshed by themselves.
  const online = rootPage.locator('[data-testid="admin-stat"][data-stat="users_online"] dd');
  await online.waitFor({ timeout: WAIT });
  assert.match(await online.innerText(), /^\d+$/);
  assert.ok(Number(await online.innerText()) >= 1);
  const updated = byId(rootPage, 'admin-stats-updated');
  await rootPage.locator('[data-testid="admin-stats-updated"]', { hasText: 'Updated' }).waitFor({ timeout: WAIT });
  const firstUpdate = await updated.innerText();
  await rootPage.waitForFunction(
    (before) => document.querySelector('[data-testid="admin-stats-updated"]').textContent !== before,
    firstUpdate,
    { timeout: WAIT },
  );

  // Find Carol by search and disable her.
  await byId(rootPage, 'admin-user-search').fill('CAR');
  await byId(rootPage, 'admin-user-search-submit').click();
  const carolRow = rootPage.locator('[data-testid="admin-user-row"][data-username="carol"]');
  await carolRow.waitFor({ timeout: WAIT });
  await rootPage.waitForFunction(
    () => [...document.querySelectorAll('[data-testid="admin-user-row"]')].every((r) => r.dataset.username === 'carol'),
    null,
    { timeout: WAIT },
  );
  await carolRow.locator('[data-testid="admin-user-disable"]').click(); // arms
  await carolRow.locator('[data-testid="admin-user-disable"]', { hasText: 'Really' }).click();
  await carolRow.and(rootPage.locator('[data-disabled="true"]')).waitFor({ timeout: WAIT });
  await screenshot(rootPage, 'admin.png');

  // Carol's page goes to the login screen, and she cannot sign in.
  await seeLoginScreen(carol, /disabled/i);
  const [refusal] = await Promise.all([
    carol.waitForResponse((r) => r.url().endsWith('/api/login'), { timeout: WAIT }),
    fillLogin(carol, 'carol'),
  ]);
  assert.equal((await refusal.json()).code, 18, 'ACCOUNT_DISABLED');
  await carol.locator('[data-testid="login-error"]:visible', { hasText: /disabled/i }).waitFor({ timeout: WAIT });
  assert.equal(await byId(carol, 'new-chat').isVisible(), false);

  // Enabled again: she can.
  await carolRow.locator('[data-testid="admin-user-enable"]').click();
  await carolRow.and(rootPage.locator('[data-disabled="false"]')).waitFor({ timeout: WAIT });
  await fillLogin(carol, 'carol');
  await byId(carol, 'new-chat').waitFor({ timeout: WAIT });
});

test('admin resets a password (the user signs in with the new one) and changes a role', async () => {
  const { alice, carol, root: rootPage } = pages;
  const carolRow = rootPage.locator('[data-testid="admin-user-row"][data-username="carol"]');
  await carolRow.locator('[data-testid="admin-user-password"]').click();
  await byId(rootPage, 'admin-password-input').fill('a brand new secret');
  await byId(rootPage, 'admin-password-submit').click();
  await byId(rootPage, 'admin-password-input').waitFor({ state: 'hidden', timeout: WAIT });

  // Carol's session is closed (LOGGED_OUT); the old password no longer works, the new one does.
  await seeLoginScreen(carol, /signed out/i);
  const [refusal] = await Promise.all([
    carol.waitForResponse((r) => r.url().endsWith('/api/login'), { timeout: WAIT }),
    fillLogin(carol, 'carol'),
  ]);
  assert.notEqual((await refusal.json()).code, 0);
  await byId(carol, 'login-username').fill('carol');
  await byId(carol, 'login-password').fill('a brand new secret');
  await byId(carol, 'login-submit').click();
  await byId(carol, 'new-chat').waitFor({ timeout: WAIT });

  // Make Alice an admin: after a reload her admin entry shows; back to user, it goes.
  await byId(rootPage, 'admin-user-search').fill('alice');
  await byId(rootPage, 'admin-user-search-submit').click();
  const aliceRow = rootPage.locator('[data-testid="admin-user-row"][data-username="alice"]');
  await aliceRow.locator('[data-testid="admin-user-role"]').click(); // arms
  await aliceRow.locator('[data-testid="admin-user-role"]', { hasText: 'Really' }).click();
  await aliceRow.and(rootPage.locator('[data-role="admin"]')).waitFor({ timeout: WAIT });
  await alice.reload();
  await byId(alice, 'nav-admin').waitFor({ timeout: WAIT });
  await aliceRow.locator('[data-testid="admin-user-role"]').click();
  await aliceRow.locator('[data-testid="admin-user-role"]', { hasText: 'Really' }).click();
  await aliceRow.and(rootPage.locator('[data-role="user"]')).waitFor({ timeout: WAIT });
  await alice.reload();
  await byId(alice, 'new-chat').waitFor({ timeout: WAIT });
  await byId(alice, 'nav-admin').waitFor({ state: 'hidden', timeout: WAIT });
});

test('admin dissolves a group found by search', async () => {
  const { alice, bob, root: rootPage } = pages;
  await createGroup(alice, 'Knitting Circle', 'bob');
  await send(alice, 'Welcome, knitters');
  const systemBefore = await alice.locator('[data-testid="system-message"]').count();

  await byId(rootPage, 'admin-group-search').fill('knit');
  await byId(rootPage, 'admin-group-search-submit').click();
  const row = rootPage.locator('[data-testid="admin-group-row"]', { hasText: 'Knitting Circle' });
  await row.waitFor({ timeout: WAIT });
  await row.locator('[data-testid="admin-group-dissolve"]').click(); // arms
  await row.locator('[data-testid="admin-group-dissolve"]', { hasText: 'Really' }).click();
  // Listed as dissolved (or no longer listed).
  await rootPage.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="admin-group-row"]')].filter((r) => r.textContent.includes('Knitting Circle'));
    return rows.length === 0 || rows.every((r) => r.dataset.dissolved === 'true');
  }, null, { timeout: WAIT });

  // Members see the dissolve as a system message.
  await alice.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="system-message"]').length > n,
    systemBefore,
    { timeout: WAIT },
  );
  void bob;
});

test('no uncaught errors in the pages', () => {
  assert.deepEqual(errors, []);
});
