// End-to-end: files and media messages (issue 9) in real headless Chromium against a real
// broker — an image dropped on the chat uploads with a progress bar and shows inline (with a
// thumbnail that loads, and the full image in the viewer), a text file picked with the
// attach button arrives as a download link whose download has the same bytes, a file over
// the broker's limit gets a readable error and is never sent, a cancelled upload leaves
// nothing on the server, and a voice note plays on the other side.
//
// Starts `quip-broker` (target/debug, built by cargo) on 127.0.0.1 with a temp data dir and
// `--max-file-bytes 2000000`. The tests run in order and share two users (Alice and Bob),
// each in their own browser context. No timing thresholds: every step waits for a state,
// with generous timeouts. Uploads that must be seen in progress are slowed down with
// Chromium's network throttling (DevTools protocol), not with sleeps.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { byId, launchChromium, pageHelpers, screenshot, startBroker, watch } from './harness.mjs';

const WAIT = 30_000;
const MAX_FILE_BYTES = 2_000_000;
/** Upload speed while a test needs to see an upload in flight (bytes per second). */
const SLOW_UPLOAD = 192 * 1024;

let broker;
let browser;

const errors = [];
const contexts = {};
const pages = {};
const cdpOf = new Map(); // page -> DevTools protocol session (network throttling)
/** sha256 hex of every file the broker should hold, to tell leftovers apart. */
const stored = new Set();
let filesDir = '';

const { register, openChatWith, openConversation, createGroup, send, seeMessage } = pageHelpers({
  base: () => broker.base,
  wait: WAIT,
});

/** Polls `check` (sync or async) until it returns a truthy value or `ms` passes. */
async function eventually(check, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** Attaches files through the attach button's file chooser, as a user would. */
async function attach(page, files) {
  const [chooser] = await Promise.all([page.waitForEvent('filechooser', { timeout: WAIT }), byId(page, 'attach').click()]);
  await chooser.setFiles(files);
}

/** Throttles (bytes/s) or un-throttles (-1) the page's uploads. */
async function throttleUploads(page, bytesPerSecond) {
  await cdpOf.get(page).send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

/** Every regular file under dir, as paths relative to it. */
function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) out.push(relative(dir, p));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** Files in the broker's store that are not (the blob or thumbnail of) a file we sent. */
function unknownStored() {
  assert.ok(filesDir, 'the file store was found');
  return listFiles(filesDir).filter((p) => ![...stored].some((sha) => p.split('/').pop().startsWith(sha)));
}

/** Waits until the broker's file store holds nothing but the files we know it keeps. */
async function onlyKnownFilesStored() {
  return eventually(() => {
    const unknown = unknownStored();
    return unknown.length === 0 ? true : { unknown };
  }, 'the file store to hold only the files that were sent');
}

/** A 16-bit mono PCM WAV of a sine tone. */
function wav(seconds, rate = 8000, hz = 440) {
  const samples = Math.round(seconds * rate);
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + samples * 2, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16); // fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 0.3 * 32767), 44 + i * 2);
  }
  return buf;
}

function humanSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** The newest message bubble of a given type in the open conversation (mine or theirs). */
function lastOfType(page, type, mine, state = '') {
  const sel = `[data-testid="message"][data-type="${type}"][data-mine="${mine}"]${state ? `[data-state="${state}"]` : ''}`;
  return page.locator(sel).last();
}

before(async () => {
  broker = await startBroker({ prefix: 'quip-e2e-files-', args: ['--max-file-bytes', String(MAX_FILE_BYTES)] });
  browser = await launchChromium();

  for (const who of ['alice', 'bob']) {
    contexts[who] = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    pages[who] = watch(await contexts[who].newPage(), errors, who);
    const cdp = await contexts[who].newCDPSession(pages[who]);
    await cdp.send('Network.enable');
    cdpOf.set(pages[who], cdp);
  }
  await register(pages.alice, 'alice');
  await register(pages.bob, 'bob');
  await openChatWith(pages.alice, 'bob');
  await send(pages.alice, 'Files incoming');
  await openChatWith(pages.bob, 'alice'); // (looks Alice up by username: names are known)
  await seeMessage(pages.bob, 'Files incoming');
});

after(async () => {
  await browser?.close();
  broker?.stop();
});

test('an image dropped on the chat uploads with progress and shows inline on both sides', async () => {
  const { alice, bob } = pages;
  // A noisy PNG (noise does not compress: ~0.5 MB, so the slowed upload is seen in flight).
  const png = await alice.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 480;
    canvas.height = 360;
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(canvas.width, canvas.height);
    for (let i = 0; i < img.data.length; i += 4) {
      img.data[i] = (i * 7) % 256 ^ Math.floor(Math.random() * 256);
      img.data[i + 1] = Math.floor(Math.random() * 256);
      img.data[i + 2] = (i >> 8) % 256;
      img.data[i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    ctx.fillStyle = '#4f46e5';
    ctx.fillRect(40, 40, 160, 120);
    const blob = await new Promise((r) => canvas.toBlob(r, 'image/png'));
    window.__png = new File([blob], 'noise.png', { type: 'image/png' });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { base64: btoa(bin), width: canvas.width, height: canvas.height };
  });
  const pngBytes = Buffer.from(png.base64, 'base64');
  assert.ok(pngBytes.length > 200_000 && pngBytes.length < MAX_FILE_BYTES, `test PNG is ${pngBytes.length} bytes`);

  await throttleUploads(alice, SLOW_UPLOAD);
  // Drag and drop: the overlay shows while dragging, the drop starts the upload.
  const overlayShown = await alice.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(window.__png);
    const target = document.getElementById('messages');
    const fire = (type) => target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    fire('dragenter');
    fire('dragover');
    const shown = !document.getElementById('drop-overlay').hidden;
    fire('drop');
    return shown;
  });
  assert.equal(overlayShown, true, 'the drop overlay shows while files are dragged over the chat');
  assert.equal(await byId(alice, 'drop-overlay').isHidden(), true, 'and goes away on drop');

  // The pending bubble has a progress bar that moves before the upload completes.
  const uploading = alice.locator('[data-testid="message"][data-state="uploading"]');
  await uploading.waitFor({ timeout: WAIT });
  await byId(alice, 'upload-cancel').waitFor({ timeout: WAIT });
  await alice.waitForFunction(() => {
    const bar = document.querySelector('[data-testid="message"][data-state="uploading"] [data-testid="upload-progress"]');
    const p = bar ? Number(bar.dataset.progress) : 0;
    return p > 0 && p < 100;
  }, null, { timeout: WAIT });
  await screenshot(alice, 'files-uploading.png');
  await throttleUploads(alice, -1);

  // Sent as an IMAGE (type 4); Alice's own bubble shows the broker's thumbnail.
  await lastOfType(alice, 4, true, 'sent').waitFor({ timeout: WAIT });
  await alice.waitForFunction(() => {
    const img = [...document.querySelectorAll('[data-testid="message"][data-mine="true"] [data-testid="message-image"]')].at(-1);
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: WAIT });

  // Bob sees it inline: the thumbnail really loads (authenticated by ?access_token=).
  const theirs = lastOfType(bob, 4, false);
  await theirs.waitFor({ timeout: WAIT });
  const thumb = await bob.waitForFunction(() => {
    const img = [...document.querySelectorAll('[data-testid="message"][data-mine="false"] [data-testid="message-image"]')].at(-1);
    return img && img.complete && img.naturalWidth > 0 ? { src: img.getAttribute('src'), w: img.naturalWidth, h: img.naturalHeight } : null;
  }, null, { timeout: WAIT }).then((h) => h.jsonValue());
  assert.match(thumb.src, /\/api\/files\/[^/?]+\/thumbnail\?/, 'the inline image is the thumbnail');
  assert.match(thumb.src, /access_token=/);
  assert.ok(Math.max(thumb.w, thumb.h) <= 320, `thumbnail fits 320 px (is ${thumb.w}×${thumb.h})`);

  // The message carries what the broker filled in.
  const content = await bob.evaluate(() => {
    const st = window.quip.store.state;
    const conv = st.convs.get(st.active);
    return [...conv.msgs.values()].filter((m) => m.type === 4).at(-1).content;
  });
  assert.equal(content.mime_type, 'image/png');
  assert.equal(content.file_size, pngBytes.length);
  assert.equal(content.width, png.width);
  assert.equal(content.height, png.height);
  assert.equal(content.file_name, 'noise.png');

  // Clicking opens the full image.
  await theirs.locator('[data-testid="message-image"]').click();
  await byId(bob, 'image-viewer').waitFor({ timeout: WAIT });
  const full = await bob.waitForFunction(() => {
    const img = document.querySelector('[data-testid="image-viewer-img"]');
    return img && img.complete && img.naturalWidth > 0 ? { w: img.naturalWidth, h: img.naturalHeight } : null;
  }, null, { timeout: WAIT }).then((h) => h.jsonValue());
  assert.deepEqual(full, { w: png.width, h: png.height }, 'the viewer shows the original');
  await screenshot(bob, 'files-viewer.png');
  await byId(bob, 'image-viewer-close').click();
  await byId(bob, 'image-viewer').waitFor({ state: 'hidden', timeout: WAIT });
  stored.add(sha256(pngBytes));
});

test('a text file is a download link and downloads with identical bytes', async () => {
  const { alice, bob } = pages;
  const text = Buffer.from(
    `Quip notes — ünïcödé ✓ 漢字\n${Array.from({ length: 60 }, (_, i) => `line ${i}: ${'lorem ipsum '.repeat(3)}`).join('\n')}\n`,
    'utf8',
  );
  await attach(alice, { name: 'notes.txt', mimeType: 'text/plain', buffer: text });
  await lastOfType(alice, 7, true, 'sent').waitFor({ timeout: WAIT });

  const link = lastOfType(bob, 7, false).locator('[data-testid="message-file"]');
  await link.waitFor({ timeout: WAIT });
  assert.equal(await link.locator('[data-testid="file-name"]').textContent(), 'notes.txt');
  assert.equal(await link.locator('[data-testid="file-size"]').textContent(), humanSize(text.length));
  assert.equal(await link.getAttribute('download'), 'notes.txt');

  const [download] = await Promise.all([bob.waitForEvent('download', { timeout: WAIT }), link.click()]);
  assert.equal(download.suggestedFilename(), 'notes.txt');
  const saved = readFileSync(await download.path());
  assert.ok(saved.equals(text), `downloaded ${saved.length} bytes, sent ${text.length}: identical`);

  // Where the broker keeps it: data dir, named by the content's sha256.
  const sha = sha256(text);
  stored.add(sha);
  const { dataDir } = broker;
  const hit = listFiles(dataDir).find((p) => p.split('/').pop() === sha);
  assert.ok(hit, `a stored blob named ${sha}`);
  filesDir = dirname(join(dataDir, hit));
  assert.equal(statSync(join(dataDir, hit)).size, text.length);
});

test('a file over the limit shows a readable error and nothing is sent', async () => {
  const { alice, bob } = pages;
  const big = randomBytes(MAX_FILE_BYTES + 100_000);
  await attach(alice, { name: 'too-big.bin', mimeType: 'application/octet-stream', buffer: big });
  const failed = alice.locator('[data-testid="message"][data-state="failed"]', { hasText: 'too-big.bin' });
  await failed.waitFor({ timeout: WAIT });
  const error = await failed.locator('[data-testid="message-error"]').textContent();
  assert.match(error, /larger than the limit/i);
  assert.equal(await failed.locator('[data-testid="retry"]').count(), 0, 'no retry for a file that cannot fit');
  await screenshot(alice, 'files-too-large.png');

  // Nothing reached Bob: a text sent afterwards arrives with no file message before it.
  await send(alice, 'after the big one');
  await seeMessage(bob, 'after the big one');
  assert.equal(await bob.locator('[data-testid="message"]', { hasText: 'too-big.bin' }).count(), 0);
  assert.equal(await bob.locator('[data-testid="message"][data-type="7"]').count(), 1, 'only notes.txt');
  await onlyKnownFilesStored();

  // The failed bubble can be dismissed.
  await failed.locator('[data-testid="upload-remove"]').click();
  await failed.waitFor({ state: 'detached', timeout: WAIT });
});

test('cancelling an upload removes it and stores nothing', async () => {
  const { alice, bob } = pages;
  const payload = randomBytes(1_500_000);
  await throttleUploads(alice, SLOW_UPLOAD);
  await attach(alice, { name: 'cancel-me.bin', mimeType: 'application/octet-stream', buffer: payload });
  const pending = alice.locator('[data-testid="message"][data-state="uploading"]', { hasText: 'cancel-me.bin' });
  await pending.waitFor({ timeout: WAIT });
  await alice.waitForFunction(() => {
    const bar = document.querySelector('[data-testid="message"][data-state="uploading"] [data-testid="upload-progress"]');
    return bar && Number(bar.dataset.progress) > 0;
  }, null, { timeout: WAIT });
  // The broker is receiving it (a partial file appears in its store) when it is cancelled.
  await eventually(() => unknownStored().length > 0, 'the upload to reach the broker');
  await pending.locator('[data-testid="upload-cancel"]').click();
  await pending.waitFor({ state: 'detached', timeout: WAIT });
  await throttleUploads(alice, -1);

  await send(alice, 'never mind that file');
  await seeMessage(bob, 'never mind that file');
  assert.equal(await bob.locator('[data-testid="message"]', { hasText: 'cancel-me.bin' }).count(), 0);
  assert.equal(await alice.locator('[data-testid="message"]', { hasText: 'cancel-me.bin' }).count(), 0);
  await onlyKnownFilesStored();
});

test('a voice note arrives as a playable audio player', async () => {
  const { alice, bob } = pages;
  const voice = wav(1);
  await attach(alice, { name: 'voice.wav', mimeType: 'audio/wav', buffer: voice });
  await lastOfType(alice, 5, true, 'sent').waitFor({ timeout: WAIT });

  const note = lastOfType(bob, 5, false);
  await note.locator('[data-testid="message-audio"]').waitFor({ timeout: WAIT });
  assert.equal(await note.locator('[data-testid="media-duration"]').textContent(), '0:01');
  const content = await bob.evaluate(() => {
    const st = window.quip.store.state;
    const conv = st.convs.get(st.active);
    return [...conv.msgs.values()].filter((m) => m.type === 5).at(-1).content;
  });
  assert.equal(content.duration_ms, 1000, 'duration read from the metadata before sending');
  assert.match(content.mime_type, /^audio\//);

  // The player loads the file (Range requests through ?access_token=) and plays it to the end.
  const played = await note.locator('[data-testid="message-audio"]').evaluate(
    (audio) =>
      new Promise((resolvePlay) => {
        const result = () => ({ duration: audio.duration, readyState: audio.readyState, error: audio.error && audio.error.code });
        audio.addEventListener('ended', () => resolvePlay({ ended: true, ...result() }), { once: true });
        audio.addEventListener('error', () => resolvePlay({ ended: false, ...result() }), { once: true });
        audio.muted = true;
        audio.play().catch((e) => resolvePlay({ ended: false, playError: String(e), ...result() }));
      }),
  );
  assert.equal(played.error, null, `no media error (${JSON.stringify(played)})`);
  assert.ok(played.ended, `the voice note played to the end (${JSON.stringify(played)})`);
  assert.ok(Math.abs(played.duration - 1) < 0.05, `duration ${played.duration}`);
  stored.add(sha256(voice));
});

test('a recorded video arrives as a video player with its duration and size', async () => {
  const { alice, bob } = pages;
  // One second of an animated canvas, recorded by MediaRecorder (WebM).
  const recorded = await alice.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 240;
    const ctx = canvas.getContext('2d');
    let frame = 0;
    const draw = () => {
      ctx.fillStyle = `hsl(${(frame * 12) % 360} 70% 50%)`;
      ctx.fillRect(0, 0, 320, 240);
      ctx.fillStyle = '#fff';
      ctx.fillRect((frame * 8) % 320, 100, 40, 40);
      frame += 1;
    };
    draw();
    const timer = setInterval(draw, 40);
    const stream = canvas.captureStream(25);
    const type = ['video/webm;codecs=vp8', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(stream, { mimeType: type });
    const chunks = [];
    recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    const stopped = new Promise((r) => (recorder.onstop = r));
    recorder.start(250);
    await new Promise((r) => setTimeout(r, 1200));
    recorder.stop();
    await stopped;
    clearInterval(timer);
    window.__video = new File(chunks, 'clip.webm', { type: 'video/webm' });
    return { size: window.__video.size };
  });
  assert.ok(recorded.size > 0, 'a video was recorded');
  await alice.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(window.__video);
    document.getElementById('messages').dispatchEvent(new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer: dt }));
  });
  await lastOfType(alice, 6, true, 'sent').waitFor({ timeout: WAIT });

  const clip = lastOfType(bob, 6, false);
  const video = clip.locator('[data-testid="message-video"]');
  await video.waitFor({ timeout: WAIT });
  // The player loads the metadata from the broker (through ?access_token=).
  const meta = await bob.waitForFunction(() => {
    const v = [...document.querySelectorAll('[data-testid="message-video"]')].at(-1);
    return v && v.readyState >= 1 && v.videoWidth > 0 ? { w: v.videoWidth, h: v.videoHeight, error: v.error && v.error.code } : null;
  }, null, { timeout: WAIT }).then((h) => h.jsonValue());
  assert.deepEqual(meta, { w: 320, h: 240, error: null });
  const content = await bob.evaluate(() => {
    const st = window.quip.store.state;
    const conv = st.convs.get(st.active);
    return [...conv.msgs.values()].filter((m) => m.type === 6).at(-1).content;
  });
  assert.equal(content.mime_type, 'video/webm');
  assert.ok(content.duration_ms > 500, `duration_ms ${content.duration_ms} read from the recording`);
  assert.equal(content.width, 320, 'the video size the sender measured');
  assert.equal(content.height, 240);
  const bytes = await alice.evaluate(async () => {
    const b = new Uint8Array(await window.__video.arrayBuffer());
    let bin = '';
    for (let i = 0; i < b.length; i += 0x8000) bin += String.fromCharCode(...b.subarray(i, i + 0x8000));
    return btoa(bin);
  });
  stored.add(sha256(Buffer.from(bytes, 'base64')));
});

test('in a group, a file reaches every member and identical content is stored once', async () => {
  const { alice, bob } = pages;
  await createGroup(alice, 'Shared drive', 'bob');
  const again = Buffer.from('same bytes, sent twice\n'.repeat(40), 'utf8');
  await attach(alice, { name: 'first.txt', mimeType: 'text/plain', buffer: again });
  await lastOfType(alice, 7, true, 'sent').waitFor({ timeout: WAIT });
  await attach(alice, { name: 'second.txt', mimeType: 'text/plain', buffer: again });
  await alice.locator('[data-testid="message"][data-type="7"][data-mine="true"][data-state="sent"]', { hasText: 'second.txt' }).waitFor({ timeout: WAIT });

  await openConversation(bob, 'Shared drive');
  for (const name of ['first.txt', 'second.txt']) {
    const link = bob.locator('[data-testid="message"][data-type="7"]', { hasText: name }).locator('[data-testid="message-file"]');
    await link.waitFor({ timeout: WAIT });
    const body = await link.evaluate(async (a) => {
      const res = await fetch(a.href);
      return { status: res.status, text: await res.text() };
    });
    assert.deepEqual(body, { status: 200, text: again.toString('utf8') }, `${name} downloads`);
  }
  const ids = await bob.evaluate(() => {
    const st = window.quip.store.state;
    const conv = st.convs.get(st.active);
    return [...conv.msgs.values()].filter((m) => m.type === 7).map((m) => m.content.file_id);
  });
  assert.equal(new Set(ids).size, 2, 'two uploads, two file ids');
  const sha = sha256(again);
  stored.add(sha);
  assert.equal(listFiles(filesDir).filter((p) => p.split('/').pop() === sha).length, 1, 'one blob');
  await onlyKnownFilesStored();
  // Back to the 1:1 chat for the next test.
  await openConversation(alice, 'Bob');
  await openConversation(bob, 'Alice');
});

test('media survive a reload (from history) and nothing else was stored', async () => {
  const { bob } = pages;
  await bob.reload();
  await openConversation(bob, 'Alice');
  await bob.waitForFunction(() => {
    const img = document.querySelector('[data-testid="message-image"]');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: WAIT });
  await byId(bob, 'message-file').first().waitFor({ timeout: WAIT });
  await byId(bob, 'message-audio').first().waitFor({ timeout: WAIT });
  await screenshot(bob, 'files.png');
  await onlyKnownFilesStored();
  assert.deepEqual(errors, [], 'no uncaught errors in the pages');
});
