// Shared setup of the end-to-end tests: a real `quip-broker` on 127.0.0.1 with a temp data
// dir, Debian's headless Chromium (driven by playwright-core), and the page helpers every
// test file uses the same way (register, log in, open a chat, send, see a message, ...).
// What only one file needs stays in that file.

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

/** Where screenshots go (the repository's artifacts/ directory). */
export const artifacts = join(root, 'artifacts');

/** The password every test user has. */
export const PASSWORD = 'correct horse battery';

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
    server.on('error', reject);
  });
}

/** Waits (up to 30 s) until `${url}/health` answers OK. */
export async function waitForHealth(url) {
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

/**
 * Starts the broker on free 127.0.0.1 ports with a fresh temp data dir (named after
 * `prefix`), plus any extra command-line `args` and environment `env`, and waits until it
 * is healthy. Returns its HTTP base URL, its data dir, and `stop()` (kills it and removes
 * the data dir).
 */
export async function startBroker({ args = [], env = {}, prefix = 'quip-e2e-' } = {}) {
  assert.ok(existsSync(brokerBin), `broker binary missing at ${brokerBin} (run cargo build -p quip-broker)`);
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const httpPort = await freePort();
  const quicPort = await freePort();
  const base = `http://127.0.0.1:${httpPort}`;
  const child = spawn(brokerBin, [
    '--data-dir', dataDir,
    '--quic-addr', `127.0.0.1:${quicPort}`,
    '--http-addr', `127.0.0.1:${httpPort}`,
    '--durability', 'os',
    ...args,
  ], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, QUIP_LOG: 'warn', ...env } });
  const stop = () => {
    child.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitForHealth(base);
  } catch (e) {
    stop();
    throw e;
  }
  return { base, dataDir, stop };
}

/** Launches headless Chromium with the flags every test uses, plus `extraArgs`. */
export async function launchChromium(extraArgs = []) {
  assert.ok(existsSync(chromiumPath), `chromium missing at ${chromiumPath} (scripts/test.sh installs it)`);
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage', ...extraArgs],
  });
}

export const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

/** The nickname the helpers register a user with: the username, capitalised. */
export const nick = (username) => username[0].toUpperCase() + username.slice(1);

/** Records the page's uncaught errors in `errors` (prefixed with `who`, if given). */
export function watch(page, errors, who) {
  page.on('pageerror', (e) => errors.push(who ? `${who}: ${e.message}` : e.message));
  return page;
}

/** Saves a screenshot of the page as artifacts/`file`. */
export async function screenshot(page, file) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, file) });
}

/** My message bubbles with this text in the open chat. */
export function myMessage(page, text) {
  return page.locator('[data-testid="message"][data-mine="true"]', { hasText: text });
}

/** Sends a text in the open chat; returns the locator of my bubble. */
export async function typeAndSend(page, text) {
  await byId(page, 'composer').fill(text);
  await byId(page, 'send').click();
  return myMessage(page, text);
}

/**
 * The page helpers, waiting up to `wait` ms for each state. `base` is a function giving
 * the broker's URL (known once the broker has started).
 */
export function pageHelpers({ base, wait }) {
  /** Fills and submits the login form (the login screen is shown). */
  async function fillLogin(page, username) {
    await byId(page, 'login-username').fill(username);
    await byId(page, 'login-password').fill(PASSWORD);
    await byId(page, 'login-submit').click();
  }

  return {
    fillLogin,

    /** Registers `username` (nickname: capitalised) and waits for the main view. */
    async register(page, username) {
      await page.goto(base());
      await byId(page, 'register-toggle').click();
      await byId(page, 'login-username').fill(username);
      await byId(page, 'login-nickname').fill(nick(username));
      await byId(page, 'login-password').fill(PASSWORD);
      await byId(page, 'login-submit').click();
      await byId(page, 'new-chat').waitFor({ timeout: wait });
    },

    async login(page, username) {
      await page.goto(base());
      await fillLogin(page, username);
      await byId(page, 'new-chat').waitFor({ timeout: wait });
    },

    /** Opens (or starts) the 1:1 chat with `username` through "New chat". */
    async openChatWith(page, username) {
      await byId(page, 'new-chat').click();
      await byId(page, 'new-chat-username').fill(username);
      await byId(page, 'new-chat-submit').click();
      await page.locator('[data-testid="chat-title"]', { hasText: nick(username) }).waitFor({ timeout: wait });
    },

    /** Clicks the conversation item with this title and waits for the chat to show it. */
    async openConversation(page, title) {
      const item = page.locator('[data-testid="conversation-item"]', {
        has: page.locator('[data-testid="conversation-name"]', { hasText: new RegExp(`^${title}$`) }),
      });
      await item.waitFor({ timeout: wait });
      await item.click();
      await page.locator('[data-testid="chat-title"]', { hasText: title }).waitFor({ timeout: wait });
    },

    /** Creates a group and waits for it to open. */
    async createGroup(page, name, members) {
      await byId(page, 'new-group').click();
      await byId(page, 'new-group-name').fill(name);
      await byId(page, 'new-group-members').fill(members);
      await byId(page, 'new-group-submit').click();
      await page.locator('[data-testid="chat-title"]', { hasText: name }).waitFor({ timeout: wait });
    },

    /** Sends a text in the open chat and waits until the broker ACKed it (state "sent"). */
    async send(page, text) {
      const bubble = await typeAndSend(page, text);
      await bubble.and(page.locator('[data-state="sent"]')).waitFor({ timeout: wait });
    },

    async seeMessage(page, text) {
      await page.locator('[data-testid="message"]', { hasText: text }).first().waitFor({ timeout: wait });
    },
  };
}
