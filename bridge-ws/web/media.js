// Media: how image, voice, video and file messages look, the full-size image viewer, and
// reading a voice note's or video's duration from its metadata before it is sent.
//
// The broker serves files at `url` / `thumbnail_url` (`/api/files/{id}`, `…/thumbnail`)
// to the uploader and to readers of a conversation where the file was sent. Elements that
// load by themselves (<img>, <audio>, <video>, <a download>) cannot send an Authorization
// header, so their URLs carry `?access_token=…`.

import { MSG_IMAGE, MSG_VOICE, MSG_VIDEO, MSG_FILE } from './store.js';
import { fileSize, safeUrl } from './format.js';

let currentToken = () => '';

/** app.js plugs in the access token source (it changes on every refresh). */
export function configureMedia({ token }) {
  currentToken = token;
}

/** `url` with `access_token` set (same-origin or http(s) only, else ''). */
export function withAccessToken(url, token = currentToken()) {
  const safe = safeUrl(url);
  if (!safe) return '';
  const u = new URL(safe);
  if (token && u.origin === location.origin) u.searchParams.set('access_token', token);
  return u.href;
}

/** "0:07", "1:05", "1:02:03" from milliseconds (whole seconds, as media players count;
 * anything above zero is at least "0:01"). */
export function durationText(ms) {
  const n = Number(ms) || 0;
  const total = n > 0 ? Math.max(1, Math.floor(n / 1000)) : 0;
  const s = total % 60;
  const m = Math.floor(total / 60) % 60;
  const h = Math.floor(total / 3600);
  const pad = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** Is this message a file of some kind (types 4–7, or any message with a file_id)? */
export function isMediaMessage(m) {
  return [MSG_IMAGE, MSG_VOICE, MSG_VIDEO, MSG_FILE].includes(m.type) || !!(m.content && m.content.file_id);
}

// ------------------------------------------------------------------ tiny DOM helper

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v;
    else if (k === 'html') node.innerHTML = v; // constant icons only
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const FILE_ICON =
  '<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/><path d="M14 3v5h5"/></svg>';
const DOWNLOAD_ICON =
  '<svg viewBox="0 0 24 24" width="18" height="18" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M12 3v12"/><path d="M7 10l5 5 5-5"/><path d="M5 21h14"/></svg>';
const CLOSE_ICON =
  '<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';

/** Display size of an image of w×h inside a 320 px box (0×0 when unknown). */
function fitBox(w, h, max = 320) {
  w = Number(w) || 0;
  h = Number(h) || 0;
  if (!w || !h) return { w: 0, h: 0 };
  const scale = Math.min(1, max / Math.max(w, h));
  return { w: Math.max(1, Math.round(w * scale)), h: Math.max(1, Math.round(h * scale)) };
}

/**
 * An <img> whose authenticated URL is rebuilt with the current token once if it fails to
 * load (the token it was built with may have been refreshed since).
 */
function authImage(url, attrs) {
  let retried = false;
  const img = el('img', { ...attrs, src: withAccessToken(url) });
  img.addEventListener('error', () => {
    if (retried) {
      img.closest('.media-frame')?.classList.add('broken');
      return;
    }
    retried = true;
    img.src = withAccessToken(url);
  });
  return img;
}

/**
 * An <audio>/<video> loads lazily (metadata first, the rest on play, in Range requests),
 * possibly long after it was built: if its token has expired by then, load it again once
 * with the current one.
 */
function authMedia(tag, url, attrs) {
  let retried = false;
  const media = el(tag, { ...attrs, src: withAccessToken(url) });
  media.addEventListener('error', () => {
    if (retried) return;
    retried = true;
    const fresh = withAccessToken(url);
    if (fresh === media.src) return;
    media.src = fresh;
    media.load();
  });
  return media;
}

// ------------------------------------------------------------------ message bodies

/**
 * The body of a media message: `m` is a store message (type 4–7 with content {file_id,
 * file_name, file_size, mime_type, url, thumbnail_url, width, height, duration_ms}).
 */
export function buildMediaContent(m) {
  const c = m.content || {};
  if (m.state === 'uploading' || (m.upload && !c.file_id)) return buildUpload(m);
  const isImage = m.type === MSG_IMAGE || c.file_type === 'image';
  if (isImage && (c.thumbnail_url || c.url)) return buildImage(c);
  if (m.type === MSG_VOICE && c.url) return buildAudio(c);
  if (m.type === MSG_VIDEO && c.url) return buildVideo(c);
  return buildFile(c, m);
}

function buildImage(c) {
  const name = c.file_name || 'Image';
  const box = fitBox(c.width, c.height);
  const img = authImage(c.thumbnail_url || c.url, {
    alt: name,
    'data-testid': 'message-image',
    width: box.w || null,
    height: box.h || null,
    decoding: 'async',
  });
  const full = c.url || c.thumbnail_url;
  return el(
    'a',
    {
      class: 'body media media-frame image',
      href: withAccessToken(full),
      target: '_blank',
      rel: 'noopener noreferrer',
      title: `${name}${c.width && c.height ? ` · ${c.width}×${c.height}` : ''}`,
      'data-testid': 'message-image-link',
      onclick: (e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return; // new tab etc.
        e.preventDefault();
        openViewer(c);
      },
    },
    img,
  );
}

function buildAudio(c) {
  const audio = authMedia('audio', c.url, {
    controls: true,
    preload: 'metadata',
    'data-testid': 'message-audio',
    'aria-label': `Voice message${c.duration_ms ? `, ${durationText(c.duration_ms)}` : ''}`,
  });
  return el(
    'div',
    { class: 'body voice', 'data-testid': 'message-voice' },
    audio,
    c.duration_ms ? el('span', { class: 'media-duration', 'data-testid': 'media-duration' }, durationText(c.duration_ms)) : null,
  );
}

function buildVideo(c) {
  const box = fitBox(c.width, c.height, 360);
  return el(
    'div',
    { class: 'body media video' },
    authMedia('video', c.url, {
      controls: true,
      preload: 'metadata',
      playsinline: true,
      width: box.w || null,
      height: box.h || null,
      'data-testid': 'message-video',
      'aria-label': c.file_name || 'Video',
    }),
    c.duration_ms ? el('span', { class: 'media-duration', 'data-testid': 'media-duration' }, durationText(c.duration_ms)) : null,
  );
}

function fileCard(name, size, extra = null) {
  return [
    el('span', { class: 'file-icon', html: FILE_ICON }),
    el(
      'span',
      { class: 'file-text' },
      el('span', { class: 'file-name', 'data-testid': 'file-name' }, name),
      size || size === 0 ? el('span', { class: 'file-size', 'data-testid': 'file-size' }, fileSize(size)) : null,
    ),
    extra,
  ];
}

function buildFile(c, m) {
  const name = c.file_name || 'File';
  const size = c.file_size ?? null;
  if (!c.url) return el('div', { class: 'body file', 'data-testid': 'message-file' }, fileCard(name, size));
  return el(
    'a',
    {
      class: 'body file',
      href: withAccessToken(c.url),
      download: name,
      title: `Download ${name}`,
      'data-testid': 'message-file',
      'data-mime': c.mime_type || '',
      'data-type': m.type,
      // The token in the href was current when the bubble was built: renew it now.
      onclick: (e) => {
        e.currentTarget.href = withAccessToken(c.url);
      },
    },
    fileCard(name, size, el('span', { class: 'file-download', html: DOWNLOAD_ICON })),
  );
}

/** My pending upload: preview or file card, progress bar and cancel. */
function buildUpload(m) {
  const c = m.content || {};
  const up = m.upload || {};
  const pct = up.total ? Math.floor((100 * up.loaded) / up.total) : 0;
  const uploading = m.state === 'uploading';
  const head = up.preview
    ? el('div', { class: 'media-frame image upload-preview' }, el('img', { src: up.preview, alt: c.file_name || 'Image' }))
    : el('div', { class: 'file' }, fileCard(c.file_name || 'File', c.file_size));
  return el(
    'div',
    { class: 'body upload', 'data-testid': 'upload' },
    head,
    uploading
      ? el(
          'div',
          { class: 'upload-bar' },
          el('progress', { max: 100, value: pct, 'data-testid': 'upload-progress', 'data-progress': pct, 'aria-label': 'Upload progress' }),
          el('span', { class: 'upload-pct', 'data-testid': 'upload-percent' }, `${pct}%`),
          el('button', { type: 'button', class: 'upload-cancel', 'data-testid': 'upload-cancel', 'data-cancel-upload': m.clientId, title: 'Cancel upload' }, 'Cancel'),
        )
      : null,
  );
}

/** Moves the progress bar of an upload without rebuilding its bubble. */
export function setUploadProgress(clientId, fraction) {
  const row = document.querySelector(`[data-testid="message"][data-client-id="${CSS.escape(clientId)}"]`);
  if (!row) return;
  const pct = Math.max(0, Math.min(100, Math.floor(fraction * 100)));
  const bar = row.querySelector('[data-testid="upload-progress"]');
  if (bar) {
    bar.value = pct;
    bar.dataset.progress = String(pct);
  }
  const label = row.querySelector('[data-testid="upload-percent"]');
  if (label) label.textContent = `${pct}%`;
}

// ------------------------------------------------------------------ image viewer

let viewer = null;
let lastFocus = null;

function ensureViewer() {
  if (viewer) return viewer;
  const img = el('img', { class: 'viewer-img', alt: '', 'data-testid': 'image-viewer-img' });
  const caption = el('span', { class: 'viewer-caption', 'data-testid': 'image-viewer-caption' });
  const open = el('a', { class: 'viewer-btn', target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'image-viewer-download', title: 'Download', html: DOWNLOAD_ICON });
  const close = el('button', { type: 'button', class: 'viewer-btn', 'data-testid': 'image-viewer-close', title: 'Close', 'aria-label': 'Close', html: CLOSE_ICON });
  const root = el(
    'div',
    { class: 'viewer', 'data-testid': 'image-viewer', role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Image', tabindex: '-1', hidden: true },
    el('div', { class: 'viewer-bar' }, caption, open, close),
    el('div', { class: 'viewer-stage' }, img),
  );
  close.addEventListener('click', closeViewer);
  open.addEventListener('click', () => {
    if (viewer && viewer.full) open.href = withAccessToken(viewer.full);
  });
  root.addEventListener('click', (e) => {
    if (e.target === root || e.target.classList.contains('viewer-stage')) closeViewer();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !root.hidden) closeViewer();
  });
  document.body.append(root);
  viewer = { root, img, caption, open, close };
  return viewer;
}

/** Shows the full-size image of file content `c`. */
export function openViewer(c) {
  const v = ensureViewer();
  const full = c.url || c.thumbnail_url;
  v.full = full;
  lastFocus = document.activeElement;
  v.img.removeAttribute('src');
  v.img.alt = c.file_name || 'Image';
  v.img.src = withAccessToken(full);
  v.caption.textContent = [c.file_name, c.width && c.height ? `${c.width}×${c.height}` : '', c.file_size ? fileSize(c.file_size) : '']
    .filter(Boolean)
    .join(' · ');
  v.open.href = withAccessToken(full);
  v.open.setAttribute('download', c.file_name || 'image');
  v.root.hidden = false;
  v.close.focus({ preventScroll: true });
}

export function closeViewer() {
  if (!viewer || viewer.root.hidden) return;
  viewer.root.hidden = true;
  viewer.img.removeAttribute('src');
  if (lastFocus && typeof lastFocus.focus === 'function') lastFocus.focus({ preventScroll: true });
  lastFocus = null;
}

// ------------------------------------------------------------------ metadata

/**
 * What an audio or video File's metadata says, read with an <audio>/<video> element:
 * {durationMs, width, height} (0 for what the browser cannot tell — an unknown codec, or
 * a recorder's WebM without a duration — within `timeoutMs`).
 */
export function probeMedia(file, kind = 'audio', timeoutMs = 8_000) {
  return new Promise((resolve) => {
    const none = { durationMs: 0, width: 0, height: 0 };
    if (typeof URL.createObjectURL !== 'function') {
      resolve(none);
      return;
    }
    const media = document.createElement(kind === 'video' ? 'video' : 'audio');
    const url = URL.createObjectURL(file);
    let done = false;
    const finish = (ms) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const out = {
        durationMs: Number.isFinite(ms) && ms > 0 ? Math.round(ms) : 0,
        width: kind === 'video' ? media.videoWidth || 0 : 0,
        height: kind === 'video' ? media.videoHeight || 0 : 0,
      };
      media.removeAttribute('src');
      media.load();
      URL.revokeObjectURL(url);
      resolve(out);
    };
    const timer = setTimeout(() => finish(0), timeoutMs);
    media.preload = 'metadata';
    media.muted = true;
    media.addEventListener('loadedmetadata', () => {
      if (Number.isFinite(media.duration)) {
        finish(media.duration * 1000);
        return;
      }
      // Recorder output (WebM) says Infinity until its end is seen: seek far to find it.
      media.addEventListener('durationchange', () => {
        if (Number.isFinite(media.duration)) finish(media.duration * 1000);
      });
      media.currentTime = 1e101;
    });
    media.addEventListener('error', () => finish(0));
    media.src = url;
  });
}
