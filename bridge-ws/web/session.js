// Persistent client state in localStorage: the device id, the tokens of the signed-in
// user, and a small cache of user names (the message JSON carries user ids only, so names
// learned from lookups, group member lists and login are remembered across reloads).

const KEY_DEVICE = 'quip.device_id';
const KEY_AUTH = 'quip.auth';
const KEY_USERS = 'quip.users';
const MAX_CACHED_USERS = 2000;

/** Random id from crypto.getRandomValues (randomUUID needs a secure context; the broker
 * is often opened over plain http on a LAN address). */
export function randomId(bytes = 12) {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join('');
}

function readJson(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function writeJson(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the app still works for this page's lifetime */
  }
}

/** The device id: generated once per browser profile and kept in localStorage. It is sent
 * as `device_id` to /api/login, /api/refresh and the WebSocket URL, so the broker keeps one
 * delivery cursor per browser. */
export function deviceId() {
  let id = null;
  try {
    id = localStorage.getItem(KEY_DEVICE);
  } catch {
    /* ignore */
  }
  if (!id) {
    id = `web-${randomId(12)}`;
    setDeviceId(id);
  }
  return id;
}

export function setDeviceId(id) {
  try {
    localStorage.setItem(KEY_DEVICE, id);
  } catch {
    /* ignore */
  }
}

/** Parses `expires_at`: ms since epoch in Quip; SimpleIM documents it as a "timestamp"
 * string, so numeric strings, seconds and ISO dates are accepted as well. */
export function parseExpiry(value) {
  if (value == null || value === '') return 0;
  let n = typeof value === 'number' ? value : Number(value);
  if (Number.isNaN(n)) {
    const t = Date.parse(String(value));
    return Number.isNaN(t) ? 0 : t;
  }
  if (n > 0 && n < 1e11) n *= 1000; // seconds, not ms
  return n;
}

/** Normalises a login/refresh `data` object into what we store. */
export function authFromLogin(data) {
  return {
    user_id: data.user_id,
    username: data.username,
    nickname: data.nickname || data.username,
    role: data.role || 'user', // "admin" sees the admin page
    token: data.token,
    refresh_token: data.refresh_token,
    expires_at: parseExpiry(data.expires_at),
    websocket_url: data.websocket_url || '',
    device_id: data.device_id || '',
    received_at: Date.now(),
  };
}

export function loadAuth() {
  const a = readJson(KEY_AUTH);
  return a && a.token && a.user_id ? a : null;
}

export function saveAuth(auth) {
  writeJson(KEY_AUTH, auth);
}

export function clearAuth() {
  writeJson(KEY_AUTH, null);
}

export const AUTH_STORAGE_KEY = KEY_AUTH;

export function loadUsers() {
  const u = readJson(KEY_USERS);
  return u && typeof u === 'object' ? u : {};
}

/** Saves the name cache, keeping the most recently learned entries. */
export function saveUsers(obj) {
  const keys = Object.keys(obj);
  if (keys.length > MAX_CACHED_USERS) {
    const keep = {};
    for (const k of keys.slice(keys.length - MAX_CACHED_USERS)) keep[k] = obj[k];
    obj = keep;
  }
  writeJson(KEY_USERS, obj);
}
