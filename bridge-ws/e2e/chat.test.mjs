// End-to-end: the web client in real headless Chromium against a real broker.
//
// Starts `quip-broker` (built by `cargo test`) on 127.0.0.1 with a temp data dir, then
// two browser contexts register, log in, chat 1:1 and in a group, reload and see the
// history. Saves a screenshot of the chat view to artifacts/chat.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { byId, launchChromium, pageHelpers, screenshot, startBroker, watch } from './harness.mjs';

const WAIT = 15_000;

let broker;
let browser;

const { register, openChatWith, createGroup, send, seeMessage } = pageHelpers({ base: () => broker.base, wait: WAIT });

before(async () => {
  broker = await startBroker();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  broker?.stop();
});

test('two browsers chat 1:1 and in a group, and history survives a reload', async () => {
  const aliceContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const bobContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const alice = await aliceContext.newPage();
  const bob = await bobContext.newPage();
  const errors = [];
  for (const page of [alice, bob]) watch(page, errors);

  await register(alice, 'alice');
  await register(bob, 'bob');

  // 1:1 both ways.
  await openChatWith(alice, 'bob');
  await send(alice, 'Hi Bob, this is Alice');
  const bobConversation = byId(bob, 'conversation-item').first();
  await bobConversation.waitFor({ timeout: WAIT });
  await bobConversation.click();
  await seeMessage(bob, 'Hi Bob, this is Alice');
  await send(bob, 'Hello Alice!');
  await seeMessage(alice, 'Hello Alice!');

  // A group with both.
  // The new group opens (the composer was already visible from the 1:1 chat).
  await createGroup(alice, 'Rustaceans', 'bob');
  await send(alice, 'Welcome to the group');
  const groupItem = bob.locator('[data-testid="conversation-item"]', { hasText: 'Rustaceans' });
  await groupItem.waitFor({ timeout: WAIT });
  await groupItem.click();
  await seeMessage(bob, 'Welcome to the group');
  await send(bob, 'Glad to be here');
  await seeMessage(alice, 'Glad to be here');

  await screenshot(alice, 'chat.png');

  // Reload: the session and the history come back.
  await bob.reload();
  const again = bob.locator('[data-testid="conversation-item"]', { hasText: 'Rustaceans' });
  await again.waitFor({ timeout: WAIT });
  await again.click();
  await seeMessage(bob, 'Welcome to the group');
  await seeMessage(bob, 'Glad to be here');
  const dm = bob.locator('[data-testid="conversation-item"]', { hasNotText: 'Rustaceans' }).first();
  await dm.click();
  await seeMessage(bob, 'Hi Bob, this is Alice');
  await seeMessage(bob, 'Hello Alice!');

  assert.deepEqual(errors, [], 'no uncaught errors in the pages');
  await aliceContext.close();
  await bobContext.close();
});
