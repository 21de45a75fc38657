// Files: uploading what the user picked (attach button, drag and drop, paste) and turning
// it into a media message. An upload is `POST /api/files?name=…` with the File itself as
// the raw body (not multipart), sent with XMLHttpRequest because fetch() reports no upload
// progress. While it runs the message is a pending bubble in state 'uploading' with a
// progress bar and a cancel button (abort: the broker stores nothing of an unfinished
// upload). Once the broker answers with the FileInfo, the message goes out over the
// WebSocket as type 4 image / 5 voice / 6 video / 7 file with content {file_id,
// duration_ms?, width?, height? (videos)}; the broker fills in the rest (name, size,
// mime, urls) from its record.

import { readableError, FILE_TOO_LARGE } from './errors.js';
import { MSG_IMAGE, MSG_VOICE, MSG_VIDEO, MSG_FILE } from './store.js';
import { probeMedia } from './media.js';

/** An upload that did not produce a file. `aborted`: the user cancelled it. */
export class UploadError extends Error {
  constructor(status, code, message, { aborted = false } = {}) {
    super(message || `Upload failed (${status})`);
    this.name = 'UploadError';
    this.status = status;
    this.code = code;
    this.aborted = aborted;
  }

  /** Trying the same file again cannot help (too large, refused …). */
  get fatal() {
    return this.code === FILE_TOO_LARGE || this.status === 413 || this.status === 400 || this.status === 403;
  }
}

/** Message type for a file, from the mime type the broker sniffed. */
export function messageTypeFor(mime) {
  const m = String(mime || '').toLowerCase();
  if (m.startsWith('image/')) return MSG_IMAGE;
  if (m.startsWith('audio/')) return MSG_VOICE;
  if (m.startsWith('video/')) return MSG_VIDEO;
  return MSG_FILE;
}

/** 'audio' | 'video' | '' — whose metadata carries a duration worth sending. */
export function timedKind(mime) {
  const m = String(mime || '').toLowerCase();
  if (m.startsWith('audio/')) return 'audio';
  if (m.startsWith('video/')) return 'video';
  return '';
}

/**
 * Uploads one File (or Blob with a name). Returns {promise, abort}; the promise resolves
 * with the broker's FileInfo JSON or rejects with an UploadError.
 * @param {File} file
 * @param {object} opts
 * @param {string} opts.token access token (Bearer)
 * @param {(loaded: number, total: number) => void} [opts.onProgress]
 */
export function uploadFile(file, { token, onProgress } = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const name = file.name || 'file';
    xhr.open('POST', `/api/files?name=${encodeURIComponent(name)}`);
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Accept', 'application/json');
    // The broker sniffs the content; ours is only used when the bytes say nothing.
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable && e.total ? e.total : file.size);
    xhr.onload = () => {
      let json = null;
      try {
        json = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON (proxy error page …) */
      }
      const code = (json && Number(json.code)) || 0;
      if (xhr.status >= 200 && xhr.status < 300 && !code && json && json.data && json.data.file_id) {
        resolve(json.data);
        return;
      }
      const errCode = code || (xhr.status === 413 ? FILE_TOO_LARGE : 0);
      const raw = (json && json.message) || xhr.statusText || `Upload failed (${xhr.status})`;
      reject(new UploadError(xhr.status, errCode, readableError(errCode, raw, Number(json && json.retry_after_ms) || 0)));
    };
    xhr.onerror = () => reject(new UploadError(0, 0, 'Upload failed: network error — is the server reachable?'));
    xhr.ontimeout = () => reject(new UploadError(0, 0, 'Upload timed out.'));
    xhr.onabort = () => reject(new UploadError(0, 0, 'Upload cancelled.', { aborted: true }));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/**
 * The uploads of this session, keyed by the client id of their pending message.
 * @param {object} deps
 * @param {object} deps.store
 * @param {() => string} deps.token current access token
 * @param {(prevToken: string) => Promise<object>} deps.refresh refreshes the tokens (401)
 * @param {(conv: object) => string} deps.newClientId
 * @param {(msg: object) => void} deps.send sends the finished media message (WebSocket)
 * @param {(clientId: string, fraction: number) => void} deps.onProgress progress bar update
 */
export function createUploads({ store, token, refresh, newClientId, send, onProgress }) {
  const uploads = new Map(); // client id -> {file, abort, preview (blob URL), probe (metadata promise)}

  /** Starts uploading `files` into conversation `conv`, one pending message each. */
  function attach(conv, files) {
    const started = [];
    for (const file of files) {
      if (!file) continue;
      const clientId = newClientId();
      const type = messageTypeFor(file.type);
      const content = { file_name: file.name || 'file', file_size: file.size, mime_type: file.type || '' };
      const msg = store.addOutgoing(conv.id, clientId, content, type);
      const preview = type === MSG_IMAGE && typeof URL.createObjectURL === 'function' ? URL.createObjectURL(file) : '';
      store.updatePending(clientId, { state: 'uploading', upload: { loaded: 0, total: file.size, preview, fatal: false } });
      uploads.set(clientId, { file, abort: null, preview, probe: null });
      run(clientId);
      started.push(msg);
    }
    return started;
  }

  async function run(clientId) {
    const up = uploads.get(clientId);
    if (!up) return;
    const { file } = up;
    if (!file.size) {
      store.updatePending(clientId, { state: 'failed', error: 'The file is empty.', upload: { loaded: 0, total: 0, preview: up.preview, fatal: true } });
      return;
    }
    // A voice note's or video's duration (and a video's size) is read from the file's
    // metadata while it uploads.
    const kind = timedKind(file.type);
    if (kind && !up.probe) up.probe = probeMedia(file, kind);
    let info;
    try {
      info = await uploadOnce(clientId, up, false);
    } catch (e) {
      if (!uploads.has(clientId)) return; // removed meanwhile
      if (e.aborted) {
        remove(clientId);
        return;
      }
      const found = store.findPending(clientId);
      const upload = { ...(found && found.msg.upload), fatal: e.fatal };
      store.updatePending(clientId, { state: 'failed', error: e.message, upload });
      return;
    }
    if (!uploads.has(clientId)) return;
    const type = messageTypeFor(info.mime_type);
    const wire = { file_id: info.file_id };
    const timed = timedKind(info.mime_type);
    if (timed) {
      if (!up.probe || timedKind(file.type) !== timed) up.probe = probeMedia(file, timed);
      const meta = await up.probe;
      if (meta.durationMs > 0) wire.duration_ms = meta.durationMs;
      // The broker takes a video's size from the client (it only measures images).
      if (timed === 'video' && meta.width && meta.height) {
        wire.width = meta.width;
        wire.height = meta.height;
      }
    }
    if (!uploads.has(clientId)) return;
    // What the bubble shows until the broker's own copy replaces it.
    const content = {
      ...wire,
      file_name: info.file_name,
      file_size: info.file_size,
      mime_type: info.mime_type,
      url: info.url,
      thumbnail_url: info.thumbnail_url,
      width: wire.width || info.width,
      height: wire.height || info.height,
    };
    uploads.delete(clientId);
    if (up.preview) setTimeout(() => URL.revokeObjectURL(up.preview), 30_000);
    const found = store.updatePending(clientId, { state: 'sending', error: '', type, content, wire, upload: null });
    if (found) send(found.msg);
  }

  /** One POST; on a 401 the tokens are refreshed and the upload starts over once. */
  async function uploadOnce(clientId, up, retried) {
    const current = token();
    const { promise, abort } = uploadFile(up.file, {
      token: current,
      onProgress: (loaded, total) => {
        const found = store.findPending(clientId);
        if (!found || !found.msg.upload) return;
        found.msg.upload.loaded = loaded;
        found.msg.upload.total = total;
        onProgress(clientId, total ? loaded / total : 0);
      },
    });
    up.abort = abort;
    try {
      return await promise;
    } catch (e) {
      if (e.status === 401 && !retried && uploads.has(clientId)) {
        await refresh(current);
        return uploadOnce(clientId, up, true);
      }
      throw e;
    } finally {
      up.abort = null;
    }
  }

  /** Cancel button: aborts the request (nothing is stored) and drops the bubble. */
  function cancel(clientId) {
    const up = uploads.get(clientId);
    if (!up) return false;
    if (up.abort) up.abort(); // the abort handler removes it
    else remove(clientId);
    return true;
  }

  /** Drops a pending upload (cancelled, or a failed one the user dismissed). */
  function remove(clientId) {
    const up = uploads.get(clientId);
    uploads.delete(clientId);
    if (up && up.abort) up.abort();
    if (up && up.preview) URL.revokeObjectURL(up.preview);
    store.removePending(clientId);
  }

  /** Retry of a failed upload: uploads the same File again. False: not an upload. */
  function retry(clientId) {
    const up = uploads.get(clientId);
    if (!up) return false;
    const found = store.findPending(clientId);
    if (found && found.msg.upload && found.msg.upload.fatal) return true; // nothing to retry
    store.updatePending(clientId, {
      state: 'uploading',
      error: '',
      upload: { loaded: 0, total: up.file.size, preview: up.preview, fatal: false },
    });
    run(clientId);
    return true;
  }

  /** Sign-out: abort everything. */
  function clear() {
    for (const [clientId, up] of uploads) {
      uploads.delete(clientId);
      if (up.abort) up.abort();
      if (up.preview) URL.revokeObjectURL(up.preview);
    }
  }

  return { attach, cancel, remove, retry, clear, has: (clientId) => uploads.has(clientId) };
}
