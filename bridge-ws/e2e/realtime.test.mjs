// End-to-end: the realtime extras of the web client (issue 7) in real headless Chromium
// against a real broker — typing indicator, presence dots, read ticks / "read by" and
// unread counts across devices, recall and edit from the message menu, and a 1:1 video call
// where both peers' RTCPeerConnections reach "connected" (fake camera and microphone).
//
// Starts `quip-broker` (target/debug, built by cargo) on 127.0.0.1 with a temp data dir. The
// tests run in order and share two users (Alice and Bob), each in their own browser context.
// No timing thresholds: every step waits for a state, with generous timeouts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { byId, launchChromium, myMessage, pageHelpers, screenshot, startBroker, typeAndSend, watch } from './harness.mjs';

const WAIT = 20_000;
const CALL_WAIT = 60_000;

let broker;
let browser;

const errors = [];
const contexts = {};
const pages = {};

const { register, login, openChatWith, openConversation, createGroup, seeMessage } = pageHelpers({
  base: () => broker.base,
  wait: WAIT,
});

// Tests may reach no address but loopback, and WebRTC would otherwise pair the two
// browsers over this machine's own network interface. Chromium gathers loopback
// candidates only with --allow-loopback-in-peer-connection; this script, run before
// the page's own code, drops every remote candidate that is not 127.0.0.1, so every
// connectivity check and all media go to 127.0.0.1.
function loopbackOnlyIce() {
  const loopback = (line) => / 127\.0\.0\.1 /.test(line);
  const addIceCandidate = RTCPeerConnection.prototype.addIceCandidate;
  RTCPeerConnection.prototype.addIceCandidate = function (candidate, ...rest) {
    const text = candidate?.candidate ?? '';
    if (text && !loopback(text)) return Promise.resolve();
    return addIceCandidate.call(this, candidate, ...rest);
  };
  const setRemoteDescription = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (description, ...rest) {
    if (description?.sdp) {
      const sdp = description.sdp
        .split('\r\n')
        .filter((line) => !line.startsWith('a=candidate:') || loopback(line))
        .join('\r\n');
      description = { type: description.type, sdp };
    }
    return setRemoteDescription.call(this, description, ...rest);
  };
  // Keep the connections, so the test can ask which candidate pair was chosen.
  const Native = RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__peers.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
}

/**
 * The local and remote addresses of the candidate pair the page's last
 * RTCPeerConnection chose. Chromium leaves a peer-reflexive remote candidate's address
 * empty (it learned it from a connectivity check before the signalled candidate came).
 */
async function selectedPair(page) {
  return page.evaluate(async () => {
    const pc = window.__peers.at(-1);
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((report) => {
      if (report.type === 'transport' && report.selectedCandidatePairId) {
        const chosen = stats.get(report.selectedCandidatePairId);
        pair = {
          local: stats.get(chosen.localCandidateId)?.address ?? null,
          remote: stats.get(chosen.remoteCandidateId)?.address ?? null,
        };
      }
    });
    return pair;
  });
}

async function newUserContext() {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    permissions: ['camera', 'microphone'],
  });
  await context.addInitScript(loopbackOnlyIce);
  return context;
}

/** Sends a text in the open chat and waits until it is sent (or already has a receipt). */
async function send(page, text) {
  const bubble = await typeAndSend(page, text);
  await bubble.locator('[data-state="sent"], [data-receipt]').first().waitFor({ timeout: WAIT });
}

/** The presence dot of the 1:1 conversation titled `title` in the sidebar. */
function listDot(page, title) {
  return page
    .locator('[data-testid="conversation-item"]', {
      has: page.locator('[data-testid="conversation-name"]', { hasText: new RegExp(`^${title}$`) }),
    })
    .locator('[data-testid="presence-dot"]');
}

before(async () => {
  broker = await startBroker({ prefix: 'quip-e2e-rt-' });
  browser = await launchChromium([
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
  ]);

  contexts.alice = await newUserContext();
  contexts.bob = await newUserContext();
  pages.alice = watch(await contexts.alice.newPage(), errors, 'alice');
  pages.bob = watch(await contexts.bob.newPage(), errors, 'bob');
  await register(pages.alice, 'alice');
  await register(pages.bob, 'bob');

  // A 1:1 conversation both ways: that makes them partners (presence is pushed between them).
  await openChatWith(pages.alice, 'bob');
  await send(pages.alice, 'Hi Bob');
  await openChatWith(pages.bob, 'alice'); // (looks Alice up by username: names are known)
  await seeMessage(pages.bob, 'Hi Bob');
  await send(pages.bob, 'Hi Alice');
  await seeMessage(pages.alice, 'Hi Alice');
});

after(async () => {
  await browser?.close();
  broker?.stop();
});

test('typing indicator shows for the other user and goes away', async () => {
  const { alice, bob } = pages;
  const indicator = byId(bob, 'typing-indicator');
  await byId(alice, 'composer').pressSequentially('I am typing something', { delay: 20 });
  await bob.locator('[data-testid="typing-indicator"]:visible', { hasText: 'Alice is typing' }).waitFor({ timeout: WAIT });
  // Sending says "stopped" (and the message itself clears it).
  await byId(alice, 'send').click();
  await seeMessage(bob, 'I am typing something');
  await indicator.waitFor({ state: 'hidden', timeout: WAIT });
  // Typing without sending expires by itself (expires_in_ms).
  await byId(alice, 'composer').pressSequentially('hmm', { delay: 20 });
  await bob.locator('[data-testid="typing-indicator"]:visible', { hasText: 'Alice is typing' }).waitFor({ timeout: WAIT });
  await indicator.waitFor({ state: 'hidden', timeout: WAIT });
  await byId(alice, 'composer').fill('');
});

test('presence dot follows the other user going offline and online', async () => {
  const { alice } = pages;
  await listDot(alice, 'Bob').and(alice.locator('[data-online="true"]')).waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="chat-presence-dot"][data-online="true"]').waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="chat-subtitle"]', { hasText: 'online' }).waitFor({ timeout: WAIT });

  // Bob closes the app: his only connection goes, Alice sees him offline with "last seen".
  await pages.bob.close();
  await listDot(alice, 'Bob').and(alice.locator('[data-online="false"]')).waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="chat-subtitle"]', { hasText: 'last seen' }).waitFor({ timeout: WAIT });

  // Bob comes back (the session is remembered): online again. He stays on the list (no
  // chat open) for the next test.
  pages.bob = watch(await contexts.bob.newPage(), errors, 'bob');
  await pages.bob.goto(broker.base);
  await byId(pages.bob, 'new-chat').waitFor({ timeout: WAIT });
  await listDot(alice, 'Bob').and(alice.locator('[data-online="true"]')).waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="chat-subtitle"]', { hasText: 'online' }).waitFor({ timeout: WAIT });
  // And Bob sees Alice online.
  await listDot(pages.bob, 'Alice').and(pages.bob.locator('[data-online="true"]')).waitFor({ timeout: WAIT });
});

test('read ticks in 1:1, unread across devices, and "read by" in a group', async () => {
  const { alice, bob } = pages;
  // Bob's second device (another browser profile): sees the unread count.
  contexts.bob2 = await newUserContext();
  const bob2 = watch(await contexts.bob2.newPage(), errors, 'bob2');
  await login(bob2, 'bob');

  // Bob is online but not looking at the chat: delivered (✓✓), not read.
  await send(alice, 'Are you there?');
  await myMessage(alice, 'Are you there?').locator('[data-testid="message-status"][data-receipt="delivered"]').waitFor({ timeout: WAIT });
  const bob2Badge = bob2
    .locator('[data-testid="conversation-item"]', { hasText: 'Alice' })
    .locator('[data-testid="unread-badge"]');
  await bob2Badge.waitFor({ timeout: WAIT });

  // Bob opens the chat on his first device: Alice sees read (blue ✓✓), and the unread
  // badge on Bob's other device goes away (a read receipt of his own).
  await openConversation(bob, 'Alice');
  await seeMessage(bob, 'Are you there?');
  await myMessage(alice, 'Are you there?').locator('[data-testid="message-status"][data-receipt="read"]').waitFor({ timeout: WAIT });
  await bob2Badge.waitFor({ state: 'detached', timeout: WAIT });
  await bob2.close();
  await contexts.bob2.close();

  // A message from Bob means he read everything before it; older ones stay read after a reload.
  await alice.reload();
  await openConversation(alice, 'Bob');
  await myMessage(alice, 'Are you there?').locator('[data-testid="message-status"][data-receipt="read"]').waitFor({ timeout: WAIT });

  // Group: "read by N" under my message once members read it, and "N online" in the header.
  await createGroup(alice, 'Realtime', 'bob');
  await alice.locator('[data-testid="chat-subtitle"]', { hasText: /\d+ online/ }).waitFor({ timeout: WAIT });
  await send(alice, 'Group news');
  await openConversation(bob, 'Realtime');
  await seeMessage(bob, 'Group news');
  await myMessage(alice, 'Group news').locator('[data-testid="read-by"]', { hasText: 'Read by' }).waitFor({ timeout: WAIT });
  await screenshot(alice, 'group-read-by.png');
  await bob.locator('[data-testid="chat-subtitle"]', { hasText: '2 online' }).waitFor({ timeout: WAIT });

  // Back to the 1:1 chat for the next tests.
  await openConversation(alice, 'Bob');
  await openConversation(bob, 'Alice');
});

test('edit and recall from the message menu reach the other side', async () => {
  const { alice, bob } = pages;
  await send(alice, 'Thsi has a typo');
  await seeMessage(bob, 'Thsi has a typo');

  // Edit.
  const typo = myMessage(alice, 'Thsi has a typo');
  await typo.hover();
  await typo.locator('[data-testid="message-menu-button"]').click();
  await byId(alice, 'menu-edit').click();
  await screenshot(alice, 'message-menu-edit.png');
  await byId(alice, 'edit-text').fill('This had a typo');
  await byId(alice, 'edit-submit').click();
  await alice.locator('[data-testid="message"][data-edited="true"]', { hasText: 'This had a typo' }).waitFor({ timeout: WAIT });
  const edited = bob.locator('[data-testid="message"][data-edited="true"]', { hasText: 'This had a typo' });
  await edited.waitFor({ timeout: WAIT });
  assert.match(await edited.innerText(), /\(edited\)/);
  assert.equal(await bob.locator('[data-testid="message"]', { hasText: 'Thsi has a typo' }).count(), 0);

  // Recall.
  await send(alice, 'Oops, wrong chat');
  await seeMessage(bob, 'Oops, wrong chat');
  const oops = myMessage(alice, 'Oops, wrong chat');
  await oops.hover();
  await oops.locator('[data-testid="message-menu-button"]').click();
  await byId(alice, 'menu-recall').click();
  await bob.locator('[data-testid="message"]', { hasText: 'Oops, wrong chat' }).waitFor({ state: 'detached', timeout: WAIT });
  await bob.locator('[data-testid="message"][data-recalled="true"] [data-testid="message-recalled"]').first().waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="message"][data-recalled="true"]').first().waitFor({ timeout: WAIT });

  // The events are not messages: no extra bubbles, no unread.
  const bobTexts = await bob.locator('[data-testid="message"]').allInnerTexts();
  assert.ok(bobTexts.every((t) => !/target_seq/.test(t)));
  assert.equal(await bob.locator('[data-testid="unread-badge"]').count(), 0);

  // After a reload, history shows the final state.
  await bob.reload();
  await openConversation(bob, 'Alice');
  await bob.locator('[data-testid="message"][data-edited="true"]', { hasText: 'This had a typo' }).waitFor({ timeout: WAIT });
  await bob.locator('[data-testid="message"][data-recalled="true"]').first().waitFor({ timeout: WAIT });
  assert.equal(await bob.locator('[data-testid="message"]', { hasText: 'Oops, wrong chat' }).count(), 0);
});

test('1:1 video call: both peers connect, hang up ends it on both sides', async () => {
  const { alice, bob } = pages;
  const alicePanel = byId(alice, 'call-panel');
  const bobPanel = byId(bob, 'call-panel');

  await byId(alice, 'call-video').click();
  await alice.locator('[data-testid="call-panel"][data-phase="outgoing"]').waitFor({ timeout: WAIT });
  await bob.locator('[data-testid="call-panel"][data-phase="incoming"]').waitFor({ timeout: WAIT });
  await alice.locator('[data-testid="call-status"]', { hasText: 'Ringing' }).waitFor({ timeout: WAIT });
  await screenshot(bob, 'call-incoming.png');
  await byId(bob, 'call-accept').click();

  await alice.locator('[data-testid="call-panel"][data-call-state="connected"]').waitFor({ timeout: CALL_WAIT });
  await bob.locator('[data-testid="call-panel"][data-call-state="connected"]').waitFor({ timeout: CALL_WAIT });
  await alice.locator('[data-testid="call-status"]', { hasText: 'Connected' }).waitFor({ timeout: WAIT });
  // Media flows: the remote video has frames.
  await alice.waitForFunction(() => document.getElementById('call-remote').videoWidth > 0, null, { timeout: CALL_WAIT });
  // Media flows over loopback only (see loopbackOnlyIce).
  // Every remote candidate either page was given is 127.0.0.1 (peer-reflexive ones,
  // learned from a check, have no address in the stats); a local socket may be bound
  // to one of this machine's own addresses, whose traffic to 127.0.0.1 and back never
  // leaves the host.
  const ownAddresses = new Set(Object.values(networkInterfaces()).flat().map((i) => i.address));
  for (const page of [alice, bob]) {
    const pair = await selectedPair(page);
    assert.ok(pair && ownAddresses.has(pair.local), JSON.stringify(pair));
    assert.ok(!pair.remote || pair.remote === '127.0.0.1', JSON.stringify(pair));
  }
  await screenshot(alice, 'call.png');

  await byId(alice, 'call-hangup').click();
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => {
      const p = document.querySelector('[data-testid="call-panel"]');
      return p.hidden || p.dataset.phase === 'ended';
    }, null, { timeout: WAIT });
    // The stored call SYSTEM message.
    await page.locator('[data-testid="system-message"][data-event="call"]', { hasText: 'Video call ·' }).waitFor({ timeout: WAIT });
  }
  await bobPanel.waitFor({ state: 'hidden', timeout: WAIT });
  await alicePanel.waitFor({ state: 'hidden', timeout: WAIT });
});

test('no uncaught errors in the pages', () => {
  assert.deepEqual(errors, []);
});
