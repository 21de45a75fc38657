// End-to-end: the web client in real headless Chromium against a real broker.
//
// Starts `quip-broker` (built by `cargo test`) on 127.0.0.1 with a temp data dir, then
// two browser contexts register, log in, chat 1:1 and in a group, reload and see the
// history. Saves a screenshot of the chat view to artifacts/chat.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const brokerBin = process.env.QUIP_BROKER_BIN ?? join(root, 'target/debug/quip-broker');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const artifacts = join(root, 'artifacts');
const WAIT = 15_000;

let broker;
let browser;
let dataDir;
let base;

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
    server.on('error', reject);
  });
}

async function waitForHealth(url) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${url}/health`);
      if (response.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('broker did not come up');
}

before(async () => {
  assert.ok(existsSync(brokerBin), `broker binary missing at ${brokerBin} (run cargo build -p quip-broker)`);
  assert.ok(existsSync(chromiumPath), `chromium missing at ${chromiumPath} (scripts/test.sh installs it)`);
  dataDir = mkdtempSync(join(tmpdir(), 'quip-e2e-'));
  const httpPort = await freePort();
  const quicPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  broker = spawn(brokerBin, [
    '--data-dir', dataDir,
    '--quic-addr', `127.0.0.1:${quicPort}`,
    '--http-addr', `127.0.0.1:${httpPort}`,
    '--durability', 'os',
  ], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, QUIP_LOG: 'warn' } });
  await waitForHealth(base);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  await browser?.close();
  broker?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

async function register(page, username) {
  await page.goto(base);
  await byId(page, 'register-toggle').click();
  await byId(page, 'login-username').fill(username);
  await byId(page, 'login-nickname').fill(username[0].toUpperCase() + username.slice(1));
  await byId(page, 'login-password').fill('correct horse battery');
  await byId(page, 'login-submit').click();
  await byId(page, 'composer').or(byId(page, 'new-chat')).first().waitFor({ timeout: WAIT });
}

async function openChatWith(page, username) {
  await byId(page, 'new-chat').click();
  await byId(page, 'new-chat-username').fill(username);
  await byId(page, 'new-chat-submit').click();
  await page.locator('[data-testid="chat-title"]', { hasText: username[0].toUpperCase() + username.slice(1) })
    .waitFor({ timeout: WAIT });
}

async function send(page, text) {
  await byId(page, 'composer').fill(text);
  await byId(page, 'send').click();
  // Delivery state goes from sending to sent once the broker ACKed it.
  await page.locator(`[data-testid="message"][data-mine="true"][data-state="sent"]`, { hasText: text })
    .waitFor({ timeout: WAIT });
}

async function seeMessage(page, text) {
  await page.locator('[data-testid="message"]', { hasText: text }).first().waitFor({ timeout: WAIT });
}

test('two browsers chat 1:1 and in a group, and history survives a reload', async () => {
  const aliceContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const bobContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const alice = await aliceContext.newPage();
  const bob = await bobContext.newPage();
  const errors = [];
  for (const page of [alice, bob]) page.on('pageerror', (e) => errors.push(e.message));

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
  await byId(alice, 'new-group').click();
  await byId(alice, 'new-group-name').fill('Rustaceans');
  await byId(alice, 'new-group-members').fill('bob');
  await byId(alice, 'new-group-submit').click();
  // The new group opens (the composer was already visible from the 1:1 chat).
  await alice.locator('[data-testid="chat-title"]', { hasText: 'Rustaceans' }).waitFor({ timeout: WAIT });
  await send(alice, 'Welcome to the group');
  const groupItem = bob.locator('[data-testid="conversation-item"]', { hasText: 'Rustaceans' });
  await groupItem.waitFor({ timeout: WAIT });
  await groupItem.click();
  await seeMessage(bob, 'Welcome to the group');
  await send(bob, 'Glad to be here');
  await seeMessage(alice, 'Glad to be here');

  mkdirSync(artifacts, { recursive: true });
  await alice.screenshot({ path: join(artifacts, 'chat.png') });

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
