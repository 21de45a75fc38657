// Quip web client — entry point and controller. Owns the session (tokens, refresh), the
// WebSocket and every side effect; store.js holds the state, ui.js renders it.

import * as session from './session.js';
import { createApi, ApiError } from './api.js';
import { Connection } from './ws.js';
import {
  createStore,
  groupConversationId,
  singleConversationId,
  MSG_GROUP,
  MSG_SINGLE,
  MSG_SYSTEM,
  MSG_RECALL,
  MSG_EDIT,
  TYPING_SHOW_MS,
} from './store.js';
import { createPresence } from './presence.js';
import { CallManager } from './call.js';
import { createContacts } from './contacts.js';
import { createDevices } from './devices.js';
import { createAdmin } from './admin.js';
import { createUploads } from './files.js';
import { configureMedia, setUploadProgress, closeViewer } from './media.js';
import { initAttach } from './attach.js';
import { frameError, readableError, ACCOUNT_DISABLED, LOGGED_OUT, BLOCKED, RATE_LIMITED } from './errors.js';
import * as ui from './ui.js';

// ------------------------------------------------------------------ constants

const DELIVERED_FLUSH_MS = 500; // type-32 reports are batched at this rate
const TYPING_SEND_EVERY_MS = 2_000; // at most one type-33 per conversation this often
const TYPING_LIVE_MS = 5_000; // a "typing" we sent may still show this long: worth a "stopped"
const REQUEST_TIMEOUT_MS = 15_000; // WebSocket requests (recall, edit, call) without an answer
const PRESENCE_BATCH = 200; // broker default max_presence_query
const RECEIPT_SEQS = 50; // own messages whose receipts are fetched (max_receipt_seqs is 200)
const RECEIPT_REFRESH_MS = 300; // debounce of "read by" refreshes after receipt pushes
const GROUP_ONLINE_EVERY_MS = 30_000; // "N online" refresh while a group is open
const PRESENCE_RENDER_EVERY_MS = 30_000; // "last seen 5 min ago" ages
const ACK_TIMEOUT_MS = 20_000; // an open socket that has not ACKed by then: failed
const GAP_REPAIR_MS = 3_000; // a seq gap still open after this is filled from history
const REFRESH_LEAD_MS = 60_000; // refresh this long before expires_at (less for short TTLs)
const MAX_TEXT_BYTES = 16_384; // broker default max_text_bytes
const HISTORY_PAGE = 50;
const MEMBERS_TTL_MS = 60_000;
const READ_RECEIPT_DELAY_MS = 250; // coalesces read receipts during a burst

/** WebSocket close codes after which we refresh the token, then reconnect at once. The
 * bridge closes with 4000 + the Quip error code: UNAUTHENTICATED (3), TOKEN_EXPIRED (7),
 * TOKEN_INVALID (8). 4001 (announced for auth; BAD_FRAME in the 4000+code scheme) and 1008
 * (policy violation) are treated the same: one extra refresh is harmless. */
const AUTH_CLOSE_CODES = new Set([4001, 4003, 4007, 4008, 1008]);
/** SESSION_REPLACED (20): another connection took this device over (e.g. a second tab). */
const REPLACED_CLOSE_CODES = new Set([4020]);
/** ACCOUNT_DISABLED (18): an admin disabled the account. */
const DISABLED_CLOSE_CODES = new Set([4018]);
/** LOGGED_OUT (28): this device was signed out (from another device, "log out everywhere",
 * or an admin's password reset); its tokens are revoked, so do not reconnect. */
const LOGGED_OUT_CLOSE_CODES = new Set([4028]);

// ------------------------------------------------------------------ state

/** Thrown when the refresh token is rejected: the user has to sign in again. */
class SessionLost extends Error {
  constructor(message) {
    super(message || 'Your session has expired. Please sign in again.');
    this.name = 'SessionLost';
  }
}

let auth = null; // the signed-in user's tokens (mirrors localStorage)
let conn = null; // Connection
let refreshing = null; // in-flight refresh (single flight)
let forceRefresh = false; // next WS attempt refreshes first (server rejected the token)
let needsListReload = false; // reload /api/conversations after the next catch-up
let refreshTimer = 0;
let tickTimer = 0;
let deliveredTimer = 0;
let saveUsersTimer = 0;
let readTimer = 0;
let rateToastUntil = 0; // RATE_LIMITED toasts are shown at most once per wait
const lastTypingSent = new Map(); // conversation id -> ms
const wsPending = new Map(); // message_id of a WebSocket request -> {resolve, reject, timer}
const receiptTimers = new Map(); // conversation id -> timeout (debounced receipt fetch)
let groupOnlineAt = 0; // last "N online" fetch for the open group
let presenceRenderAt = 0;
const historyInflight = new Set(); // conversation ids
const groupFetches = new Map(); // group id -> promise
const groupRefreshTimers = new Map(); // group id -> timeout (debounced refetch)
const membersFetchedAt = new Map(); // group id -> ms
const gapTimers = new Map(); // conversation id -> timeout
const gapAttempts = new Map(); // conversation id -> count
const usersCache = session.loadUsers();

const store = createStore();
for (const [id, u] of Object.entries(usersCache)) store.state.users.set(id, u);
const presence = createPresence(() => store.emit());
const calls = new CallManager({
  request: (frame) => wsRequest(frame),
  onChange: () => {
    ui.renderCall();
    store.emit(); // header call buttons
  },
  onError: (msg) => ui.toast(msg, 'error'),
});

const api = createApi({ getAuth: () => auth, refresh: (prev) => refreshTokens(prev) });

const devices = createDevices({ api, store, currentDeviceId: () => session.deviceId() });
const contacts = createContacts({
  api,
  store,
  presence,
  learnUser: (id, info) => learnUser(id, info),
  openChat: (user) => openChatWith(user),
  fetchPresence: (ids) => fetchPresence(ids),
  onSettingsTab: () => devices.show(),
});
const admin = createAdmin({ api, store, learnUser: (id, info) => learnUser(id, info) });
configureMedia({ token: () => (auth && auth.token) || '' });
const uploads = createUploads({
  store,
  token: () => (auth && auth.token) || '',
  refresh: (prev) => refreshTokens(prev),
  newClientId: () => `web_${session.randomId(12)}`,
  send: (msg) => transmit(msg),
  onProgress: setUploadProgress,
});

const me = () => store.state.me;
const activeConv = () => (store.state.active ? store.state.convs.get(store.state.active) : null);
const errMsg = (e) => (e && e.message) || String(e);

// ------------------------------------------------------------------ names

/** Remembers a user's names (store + localStorage cache, saved debounced). */
function learnUser(userId, info) {
  if (!userId || !info) return;
  if (userId === (me() && me().user_id)) return;
  if (store.setUser(userId, info)) {
    usersCache[userId] = store.state.users.get(userId);
    clearTimeout(saveUsersTimer);
    saveUsersTimer = setTimeout(() => session.saveUsers(usersCache), 1000);
  }
}

// ------------------------------------------------------------------ tokens

function adoptLogin(data) {
  auth = session.authFromLogin(data);
  // The broker echoes the device the token is bound to; keep using exactly that one.
  if (auth.device_id && auth.device_id !== session.deviceId()) session.setDeviceId(auth.device_id);
  session.saveAuth(auth);
  scheduleRefresh();
  return auth;
}

/** Refreshes before expiry: 60 s ahead, or 20 % of the lifetime for short-lived tokens. */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!auth || !auth.expires_at) return;
  const ttl = auth.expires_at - Date.now();
  const lead = Math.min(REFRESH_LEAD_MS, Math.max(0, ttl * 0.2));
  const delay = Math.min(Math.max(ttl - lead, 0), 2 ** 31 - 1);
  refreshTimer = setTimeout(() => {
    refreshTokens(auth && auth.token)
      .then(() => {
        // New token: reconnect so the live session runs on it (quietly: no banner).
        if (conn && conn.isOpen) conn.reconnect({ quiet: true });
      })
      .catch(() => {});
  }, delay);
}

/** True if the access token expires within marginMs (capped at 10 % of its lifetime, so
 * short-lived tokens are not refreshed again right after being issued). */
function tokenNearExpiry(marginMs = 10_000) {
  if (!auth || !auth.expires_at) return false;
  const lifetime = auth.expires_at - (auth.received_at || 0);
  const margin = auth.received_at ? Math.min(marginMs, lifetime * 0.1) : marginMs;
  return auth.expires_at - Date.now() < margin;
}

/**
 * POST /api/refresh, once at a time. `prevToken` is the access token that was found wanting:
 * if another tab has meanwhile stored a newer one (tokens are shared via localStorage, and a
 * refresh token is single-use), that one is adopted instead of spending the refresh token
 * twice. navigator.locks serialises this across tabs where available (secure contexts).
 */
function refreshTokens(prevToken) {
  if (refreshing) return refreshing;
  const run = async () => {
    const stored = session.loadAuth();
    if (!auth) throw new SessionLost();
    if (stored && stored.user_id === auth.user_id && stored.token !== prevToken && stored.expires_at > Date.now() + 5_000) {
      auth = stored;
      scheduleRefresh();
      return auth;
    }
    const refreshToken = (stored && stored.user_id === auth.user_id && stored.refresh_token) || auth.refresh_token;
    if (!refreshToken) throw new SessionLost();
    try {
      const data = await api.refreshTokens(refreshToken, session.deviceId());
      return adoptLogin(data);
    } catch (e) {
      // 4xx (other than rate limiting): the refresh token is spent, expired or revoked.
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) {
        // Without Web Locks (plain-http LAN pages) two tabs can race with the same
        // single-use refresh token; the winner stores its result, so look again first.
        await new Promise((r) => setTimeout(r, 1000));
        const again = session.loadAuth();
        if (again && auth && again.user_id === auth.user_id && again.refresh_token !== refreshToken) {
          auth = again;
          scheduleRefresh();
          return auth;
        }
        if (e.code === LOGGED_OUT || e.code === ACCOUNT_DISABLED) throw new SessionLost(e.message);
        throw new SessionLost(e.status === 401 || e.isAuth ? undefined : e.message);
      }
      throw e;
    }
  };
  const locked = navigator.locks && typeof navigator.locks.request === 'function'
    ? navigator.locks.request('quip-token-refresh', run)
    : run();
  refreshing = locked.finally(() => {
    refreshing = null;
  });
  refreshing.catch((e) => {
    if (e instanceof SessionLost) logout(e.message);
  });
  return refreshing;
}

// ------------------------------------------------------------------ WebSocket

function wsUrl() {
  let u;
  try {
    u = new URL(auth.websocket_url || '/ws', location.href);
  } catch {
    u = new URL('/ws', location.href);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (location.protocol === 'https:' && u.protocol === 'ws:') u.protocol = 'wss:'; // no mixed content
  // A bind-all address is not somewhere a browser can connect to: use the page's host.
  if (['0.0.0.0', '[::]', '::'].includes(u.hostname)) u.hostname = location.hostname;
  u.searchParams.set('token', auth.token);
  u.searchParams.set('device_id', session.deviceId());
  return u.href;
}

/**
 * Sends a frame that the server answers (ACK 30, call 61, or error 50, matched by our
 * `message_id`) and resolves with the answer; rejects with {code, message} on an error.
 */
function wsRequest(frame, timeoutMs = REQUEST_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const id = frame.message_id || `req_${session.randomId(10)}`;
    const out = { ...frame, message_id: id };
    if (!conn || !conn.send(out)) {
      reject(Object.assign(new Error('Not connected'), { code: 0 }));
      return;
    }
    const timer = setTimeout(() => {
      wsPending.delete(id);
      reject(Object.assign(new Error('No answer from the server'), { code: 0 }));
    }, timeoutMs);
    wsPending.set(id, { resolve, reject, timer });
  });
}

/** Settles a pending wsRequest with this answer; false if the frame answers none. */
function settleRequest(f, ok) {
  const id = f.message_id;
  const p = id && wsPending.get(id);
  if (!p) return false;
  wsPending.delete(id);
  clearTimeout(p.timer);
  if (ok) p.resolve(f);
  else p.reject(Object.assign(new Error(frameError(f)), { code: Number(f.code) || 0, retryAfterMs: Number(f.retry_after_ms) || 0 }));
  return true;
}

function createConnection() {
  return new Connection({
    url: wsUrl,
    async prepare({ afterFailure }) {
      if (!auth) throw Object.assign(new Error('signed out'), { stopConnection: true });
      try {
        if (forceRefresh || tokenNearExpiry()) {
          forceRefresh = false;
          await refreshTokens(auth.token);
        } else if (afterFailure) {
          // The upgrade was refused or the server is down; a browser cannot see the HTTP
          // status of a failed upgrade, so ask REST (which refreshes the token on a 401).
          await api.me();
        }
      } catch (e) {
        if (e instanceof SessionLost) throw Object.assign(e, { stopConnection: true });
        throw e;
      }
    },
    onOpen,
    onFrame,
    onStatus(status, info) {
      store.setConn(status, info);
    },
    onClose({ code, reason, wasOpen }) {
      if (wasOpen) needsListReload = true;
      if (DISABLED_CLOSE_CODES.has(code)) {
        logout(readableError(ACCOUNT_DISABLED, reason));
        return 'stop';
      }
      if (LOGGED_OUT_CLOSE_CODES.has(code)) {
        logout('You were signed out on this device (from another device or by an administrator). Please sign in again.');
        return 'stop';
      }
      if (REPLACED_CLOSE_CODES.has(code) || /replaced/i.test(reason)) return 'replaced';
      if (AUTH_CLOSE_CODES.has(code) || /token|unauthenticated/i.test(reason)) {
        forceRefresh = true;
        return 'now';
      }
      return undefined; // backoff
    },
  });
}

function onOpen() {
  // Messages still waiting for an ACK go again with the same message_id: the broker
  // dedups them, so a message whose ACK was lost in the drop is not stored twice.
  for (const { msg } of store.sendingMessages()) transmit(msg);
  const conv = activeConv();
  if (conv) {
    conv.readSent = 0; // resend the read receipt on the new connection
    markRead(conv.id);
    scheduleReceipts(conv.id, 0); // receipts pushed while we were away were lost
    if (conv.type === 2) fetchGroupOnline(conv.groupId);
  }
  // Presence changes while we were disconnected were not pushed to us.
  if (store.state.convsLoaded) fetchPresence(partnerIds());
  // Contact events (requests …) sent while we were away were lost too; my role may have
  // changed (an admin made me one).
  contacts.refresh();
  refreshMe();
  if (store.state.page === 'admin') admin.show();
}

function onFrame(f) {
  const type = Number(f.type);
  switch (type) {
    case 30:
      if (!settleRequest(f, !f.code)) onAck(f);
      break;
    case 70: // contact event: a friend request received / accepted / cancelled, a friend removed
      contacts.onEvent(f);
      break;
    case 61: // call request answered
      settleRequest(f, true);
      break;
    case 60:
      calls.onEvent(f);
      break;
    case 34:
      if (f.user_id && f.user_id !== (me() && me().user_id)) presence.apply(f);
      break;
    case 40: // catch-up done
      flushDelivered();
      if (needsListReload) {
        needsListReload = false;
        loadConversations().catch(() => {});
      }
      break;
    case 41: // RESUME_FROM: where the broker resumes this device in a conversation
      store.applyResumeFrom(f.conversation_id, f.seq);
      break;
    case 50:
      if (!settleRequest(f, false)) onErrorFrame(f);
      break;
    case 33:
      onTypingFrame(f);
      break;
    case 31:
    case 32:
      onReceipt(type === 31 ? 'read' : 'delivered', f);
      break;
    case 99:
    case 100: // heartbeat answer
      break;
    default:
      if (((type >= 0 && type <= 8) || type === MSG_RECALL || type === MSG_EDIT) && (f.from || f.content)) onMessage(f);
  }
}

function onMessage(f) {
  const { conv, msg, isNew, event } = store.addMessage(f, 'live');
  if (conv && event) {
    // A recall / edit: not a message. Its seq still counts for the delivered cursor.
    if (store.isViewing(conv)) scheduleMarkRead(conv.id);
    if (store.hasGap(conv)) scheduleGapRepair(conv.id);
    return;
  }
  if (!conv || !isNew) return;
  if (conv.type === 2) {
    ensureGroup(conv.groupId);
    if (msg.type === MSG_SYSTEM) onGroupSystemMessage(conv, msg);
  }
  if (store.isViewing(conv)) scheduleMarkRead(conv.id);
  if (store.hasGap(conv)) scheduleGapRepair(conv.id);
}

function onAck(f) {
  const conv = store.applyAck(f);
  if (conv && store.hasGap(conv)) scheduleGapRepair(conv.id);
  if (conv && store.isViewing(conv)) scheduleMarkRead(conv.id);
}

function onErrorFrame(f) {
  const pending = f.message_id && store.findPending(f.message_id);
  if (pending) {
    // BLOCKED both ways: say "unblock first" when it is me who blocked them.
    const peer = pending.conv && pending.conv.type === 1 ? pending.conv.peerId : '';
    const iBlocked = Number(f.code) === BLOCKED && !!peer && contacts.isBlocked(peer);
    store.markFailed(f.message_id, frameError(f, { iBlocked }));
    return;
  }
  const code = Number(f.code);
  if ([3, 7, 8].includes(code)) {
    // Token problem reported in-band: refresh and reconnect.
    forceRefresh = true;
    conn && conn.reconnect({ quiet: true });
    return;
  }
  if (code === 19) return; // UNSUPPORTED (e.g. typing on an older server): not worth a toast
  if (code === RATE_LIMITED) {
    // Receipts / typing over the limit: one toast per wait, not one per refused frame.
    const now = Date.now();
    if (now < rateToastUntil) return;
    rateToastUntil = now + Math.max(Number(f.retry_after_ms) || 0, 5_000);
  }
  ui.toast(frameError(f), 'error');
}

function onTypingFrame(f) {
  if (!f.from || !me() || f.from === me().user_id) return;
  let convId = f.conversation_id;
  if (!convId && f.group_id) convId = groupConversationId(f.group_id);
  if (!convId) convId = singleConversationId(f.from, me().user_id);
  // The bridge relays {type: 33, conversation_id, from, kind: "typing"|"stopped", expires_in_ms}.
  const ms = f.kind === 'stopped' ? 0 : Math.min(Number(f.expires_in_ms) || TYPING_SHOW_MS, 30_000);
  store.setTyping(convId, f.from, ms, f.kind || 'typing');
}

/** Type 31 / 32 push {conversation_id, user_id, seq}. */
function onReceipt(kind, f) {
  const changed = store.applyReceipt(kind, f.conversation_id, f.user_id, f.seq);
  // Group: "read by N" counts are fetched for the open conversation.
  if (changed === 'group' && store.state.active === f.conversation_id) scheduleReceipts(f.conversation_id);
}

// ------------------------------------------------------------------ receipts, presence

/** Fetches receipt counts of my newest messages in a conversation (debounced): "read by N"
 * in groups, and the partner's read/delivered marks in 1:1 (after a reload). */
function scheduleReceipts(convId, delay = RECEIPT_REFRESH_MS) {
  if (receiptTimers.has(convId)) return;
  receiptTimers.set(
    convId,
    setTimeout(async () => {
      receiptTimers.delete(convId);
      const conv = store.state.convs.get(convId);
      if (!conv || store.state.active !== convId) return;
      const seqs = [];
      for (const m of store.orderedMessages(conv).reverse()) {
        if (m.mine && m.seq && !m.recalled && m.type !== MSG_SYSTEM) seqs.push(m.seq);
        // 1:1: the newest few are enough to place the partner's marks.
        if (seqs.length >= (conv.type === 1 ? 10 : RECEIPT_SEQS)) break;
      }
      if (!seqs.length) return;
      try {
        const data = await api.receipts(convId, seqs.sort((a, b) => a - b));
        store.applyReceiptCounts(convId, data.counts || []);
      } catch {
        /* best effort: the next push or open tries again */
      }
    }, delay),
  );
}

/** User ids of my 1:1 partners (whose presence the broker pushes to me). */
function partnerIds() {
  const ids = new Set();
  for (const c of store.state.convs.values()) if (c.type === 1 && c.peerId) ids.add(c.peerId);
  return [...ids];
}

async function fetchPresence(userIds) {
  const ids = userIds.filter((id) => id && id !== (me() && me().user_id));
  for (let i = 0; i < ids.length; i += PRESENCE_BATCH) {
    try {
      const data = await api.presence(ids.slice(i, i + PRESENCE_BATCH));
      presence.applyAll(data.presences || []);
    } catch {
      return; // an older server without presence: no dots
    }
  }
}

async function fetchGroupOnline(groupId) {
  if (!groupId) return;
  groupOnlineAt = Date.now();
  try {
    store.setGroupOnline(groupId, await api.groupOnline(groupId));
  } catch {
    /* no "N online" then */
  }
}

/** Membership or group changes arrive as SYSTEM messages: refetch the group (name, count). */
function onGroupSystemMessage(conv) {
  membersFetchedAt.delete(conv.groupId);
  clearTimeout(groupRefreshTimers.get(conv.groupId));
  groupRefreshTimers.set(
    conv.groupId,
    setTimeout(() => {
      groupRefreshTimers.delete(conv.groupId);
      fetchGroup(conv.groupId, true);
      if (store.state.active === conv.id) loadMembers(conv.groupId);
    }, 300),
  );
}

// ------------------------------------------------------------------ delivered / read

/** Sends type-32 reports for conversations whose contiguous delivered seq moved. */
function flushDelivered() {
  if (!conn || !conn.isOpen) return;
  for (const u of store.deliveredUpdates()) {
    if (conn.send({ type: 32, conversation_id: u.conversation_id, seq: u.seq })) store.markReported(u.conversation_id, u.seq);
  }
}

/** Marks a conversation read and sends a type-31 receipt (only when something is new). */
function markRead(convId) {
  const seq = store.markRead(convId);
  if (!seq) return;
  if (!(conn && conn.send({ type: 31, conversation_id: convId, seq }))) {
    const conv = store.state.convs.get(convId);
    if (conv) conv.readSent = 0; // not sent: try again on the next view / connection
  }
}

/** Read receipts for messages arriving in the open conversation, coalesced: a catch-up of
 * hundreds of messages sends one type-31, not hundreds. */
function scheduleMarkRead(convId) {
  if (readTimer) return;
  readTimer = setTimeout(() => {
    readTimer = 0;
    const conv = activeConv();
    if (conv && conv.id === convId && store.isViewing(conv)) markRead(conv.id);
  }, READ_RECEIPT_DELAY_MS);
}

/** A seq gap the live stream did not fill (e.g. a message sent while this device's ACK was
 * lost): fetch the history page that covers it so the delivered cursor can move on. */
function scheduleGapRepair(convId) {
  if (gapTimers.has(convId)) return;
  const attempts = gapAttempts.get(convId) || 0;
  if (attempts >= 3) return;
  gapTimers.set(
    convId,
    setTimeout(async () => {
      gapTimers.delete(convId);
      const conv = store.state.convs.get(convId);
      if (!conv || !store.hasGap(conv)) {
        gapAttempts.delete(convId);
        return;
      }
      gapAttempts.set(convId, attempts + 1);
      const top = store.highestSeq(conv);
      try {
        const page = await api.history(historyKind(conv), historyTarget(conv), top + 1, 200);
        store.applyHistory(conv.id, page, top + 1, { paging: false });
      } catch {
        /* retried on the next gap */
      }
      if (store.hasGap(conv)) scheduleGapRepair(convId);
      else gapAttempts.delete(convId);
    }, GAP_REPAIR_MS * (attempts + 1)),
  );
}

// ------------------------------------------------------------------ sending

function frameFor(msg) {
  if (msg.wire) {
    // A media message (types 4–7): the broker only needs the file id (and a duration); it
    // fills in name, size, mime and urls itself. `to` is the group or the user.
    const frame = { type: msg.type, to: msg.groupId || msg.to, content: msg.wire, message_id: msg.clientId };
    if (msg.groupId) frame.group_id = msg.groupId;
    return frame;
  }
  const frame = { type: msg.type, content: msg.content, message_id: msg.clientId };
  if (msg.type === MSG_GROUP) {
    frame.group_id = msg.groupId;
    frame.to = msg.groupId;
  } else {
    frame.to = msg.to;
  }
  return frame;
}

/** Sends (or re-sends) one of my messages. If the socket is down it stays 'sending' and
 * goes out from onOpen. */
function transmit(msg) {
  msg.sentAt = Date.now();
  if (conn) conn.send(frameFor(msg));
}

function onSend(rawText) {
  const conv = activeConv();
  if (!conv) return false;
  const text = rawText.replace(/^\s*\n|\s+$/g, '');
  if (!text.trim()) return false;
  if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
    ui.toast(`Message too long (max ${MAX_TEXT_BYTES / 1024} KB).`, 'error');
    return false;
  }
  if (conv.type === 1 && !conv.peerId) return false;
  const clientId = `web_${session.randomId(12)}`;
  const msg = store.addOutgoing(conv.id, clientId, { text }, conv.type === 2 ? MSG_GROUP : MSG_SINGLE);
  conv.draft = '';
  sendTypingStopped(conv);
  ui.scrollToBottomNext();
  transmit(msg);
  return true;
}

/** Files picked with the attach button, dropped on the chat or pasted: one upload (and
 * then one media message) each, into the open conversation. */
function onAttach(files) {
  const conv = activeConv();
  if (!conv || !files.length) return;
  if (conv.type === 1 && !conv.peerId) return;
  if (conv.type === 2 && !conv.groupId) return;
  ui.scrollToBottomNext();
  uploads.attach(conv, files);
}

function onRetry(clientId) {
  if (uploads.retry(clientId)) return; // a failed upload: upload the file again
  const found = store.markSending(clientId);
  if (found) {
    ui.scrollToBottomNext();
    transmit(found.msg); // SAME message_id: the broker dedups if the first try was stored
  }
}

function typingFrame(conv, kind) {
  const frame = { type: 33, conversation_id: conv.id, kind, to: conv.type === 2 ? conv.groupId : conv.peerId };
  if (conv.type === 2) frame.group_id = conv.groupId;
  return frame;
}

/** "typing" at most every TYPING_SEND_EVERY_MS while the composer changes. */
function onComposerInput(text) {
  const conv = activeConv();
  if (!conv) return;
  conv.draft = text;
  if (!text.trim()) {
    sendTypingStopped(conv); // cleared the composer
    return;
  }
  if (!conn || !conn.isOpen) return;
  const now = Date.now();
  if (now - (lastTypingSent.get(conv.id) || 0) < TYPING_SEND_EVERY_MS) return;
  if (conn.send(typingFrame(conv, 'typing'))) lastTypingSent.set(conv.id, now);
}

/** "stopped" (on send, blur, an emptied composer), only if our "typing" may still show. */
function sendTypingStopped(conv) {
  if (!conv) return;
  const last = lastTypingSent.get(conv.id) || 0;
  lastTypingSent.delete(conv.id);
  if (!last || Date.now() - last > TYPING_LIVE_MS) return;
  if (conn) conn.send(typingFrame(conv, 'stopped'));
}

// ------------------------------------------------------------------ recall / edit

/** Recalls message seq of a conversation (WebSocket 35, or REST when offline). */
async function onRecall(convId, seq) {
  const conv = store.state.convs.get(convId);
  if (!conv || !seq) return;
  const clientId = `web_${session.randomId(12)}`;
  try {
    const ack = conn && conn.isOpen
      ? await wsRequest({ type: 35, conversation_id: convId, seq })
      : await api.recall(convId, seq, clientId);
    store.applyOwnEvent(convId, MSG_RECALL, seq, Number(ack.seq) || 0, { timestamp: Number(ack.timestamp) || Date.now() });
  } catch (e) {
    ui.toast(amendError('recall', e), 'error');
  }
}

/** Edits message seq; returns an error text for the dialog, or null. */
async function onEdit(convId, seq, rawText) {
  const conv = store.state.convs.get(convId);
  if (!conv || !seq) return 'Message not found.';
  const text = String(rawText || '').replace(/^\s*\n|\s+$/g, '');
  if (!text.trim()) return 'The message cannot be empty — recall it instead.';
  if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) return `Too long (max ${MAX_TEXT_BYTES / 1024} KB).`;
  const target = conv.msgs.get(seq);
  const content = { text };
  if (target && target.content) {
    if (Array.isArray(target.content.at_user_ids) && target.content.at_user_ids.length) content.at_user_ids = target.content.at_user_ids;
    if (target.content.at_all) content.at_all = true;
  }
  if (target && target.content && target.content.text === text) return null; // unchanged
  try {
    const ack = conn && conn.isOpen
      ? await wsRequest({ type: 36, conversation_id: convId, seq, content })
      : await api.edit(convId, seq, content, `web_${session.randomId(12)}`);
    store.applyOwnEvent(convId, MSG_EDIT, seq, Number(ack.seq) || 0, { timestamp: Number(ack.timestamp) || Date.now(), content });
    return null;
  } catch (e) {
    return amendError('edit', e);
  }
}

function amendError(what, e) {
  const code = Number(e && e.code);
  if (code === 24) return what === 'recall' ? 'Too late to recall this message.' : 'Too late to edit this message.';
  if (code === 25) return what === 'recall' ? 'This message was already recalled.' : 'This message was recalled.';
  if (code === 4 || code === 5) return `You cannot ${what} this message.`;
  return `Could not ${what} the message: ${errMsg(e)}`;
}

// ------------------------------------------------------------------ calls

function onCall(media) {
  const conv = activeConv();
  if (!conv || conv.type !== 1 || !conv.peerId) return;
  if (calls.busy) {
    ui.toast('You are already in a call.');
    return;
  }
  if (!conn || !conn.isOpen) {
    ui.toast('Not connected — try again in a moment.', 'error');
    return;
  }
  calls.start(conv.peerId, media);
}

function onCallAction(action) {
  if (action === 'accept') calls.accept();
  else if (action === 'reject') calls.reject();
  else if (action === 'hangup') calls.hangup();
  else if (action === 'mute') calls.toggleMute();
  else if (action === 'camera') calls.toggleCamera();
}

// ------------------------------------------------------------------ loading

const historyKind = (conv) => (conv.type === 2 ? 'group' : 'private');
const historyTarget = (conv) => (conv.type === 2 ? conv.groupId : conv.peerId);

/** initial: newest page (last_seq=0); otherwise the page before the oldest seq shown. */
async function loadHistory(conv, initial) {
  if (historyInflight.has(conv.id)) return;
  if (!initial && conv.hasMore !== true) return;
  const lastSeq = initial ? 0 : store.oldestSeq(conv);
  if (!initial && lastSeq <= 1) {
    conv.hasMore = false;
    store.emit();
    return;
  }
  if (!historyTarget(conv)) return;
  historyInflight.add(conv.id);
  conv.loadingOlder = true;
  conv.historyError = '';
  store.emit();
  try {
    const page = await api.history(historyKind(conv), historyTarget(conv), lastSeq, HISTORY_PAGE);
    store.applyHistory(conv.id, page, lastSeq);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      store.applyHistory(conv.id, { messages: [], has_more: false }, lastSeq); // brand-new chat
    } else if (!(e instanceof SessionLost)) {
      conv.historyError = errMsg(e);
    }
  } finally {
    historyInflight.delete(conv.id);
    conv.loadingOlder = false;
    store.emit();
  }
  if (store.isViewing(conv)) {
    markRead(conv.id);
    if (initial) scheduleReceipts(conv.id, 0);
  }
}

async function loadConversations() {
  let token = '';
  for (let page = 0; page < 10; page++) {
    const data = await api.conversations(token, 50);
    for (const it of data.conversations || []) {
      // Optional extension: a server that knows the peer's nickname may add it.
      if (it && it.type === 1 && it.peer_id && it.peer_nickname) learnUser(it.peer_id, { nickname: it.peer_nickname });
    }
    store.applyConversationList(data.conversations || []);
    token = data.next_page_token || '';
    if (!token) break;
  }
  let memberLoads = 0;
  for (const c of store.state.convs.values()) {
    if (c.type !== 2) continue;
    ensureGroup(c.groupId);
    // Previews read "Name: text": fetch member names for groups whose last sender we do
    // not know yet (bounded, so a user in hundreds of groups does not fan out requests).
    const from = c.last && c.last.from;
    if (from && !store.state.users.has(from) && memberLoads < 20) {
      memberLoads += 1;
      loadMembers(c.groupId);
    }
  }
  const conv = activeConv();
  if (conv && store.isViewing(conv)) markRead(conv.id);
  fetchPresence(partnerIds());
}

async function loadGroups() {
  const data = await api.myGroups();
  for (const g of data.groups || []) store.setGroup(g);
}

function ensureGroup(groupId) {
  if (groupId && !store.state.groups.has(groupId)) fetchGroup(groupId);
}

function fetchGroup(groupId, force = false) {
  if (!groupId || (!force && groupFetches.has(groupId))) return groupFetches.get(groupId);
  const p = api
    .group(groupId)
    .then((g) => store.setGroup(g))
    .catch(() => {})
    .finally(() => groupFetches.delete(groupId));
  groupFetches.set(groupId, p);
  return p;
}

/** Group member nicknames, so bubbles show names rather than user ids. */
async function loadMembers(groupId) {
  if (Date.now() - (membersFetchedAt.get(groupId) || 0) < MEMBERS_TTL_MS) return;
  membersFetchedAt.set(groupId, Date.now());
  let after = '';
  try {
    for (let page = 0; page < 5; page++) {
      const data = await api.groupMembers(groupId, after, 100);
      for (const m of data.members || []) learnUser(m.user_id, { nickname: m.nickname });
      after = data.next_after || '';
      if (!after || !(data.members || []).length) break;
    }
  } catch {
    membersFetchedAt.delete(groupId);
  }
}

// ------------------------------------------------------------------ navigation

function openConversation(convId) {
  const prev = activeConv();
  if (prev) prev.draft = ui.composerText();
  const conv = store.state.convs.get(convId);
  if (!conv) return;
  store.setActive(convId);
  try {
    sessionStorage.setItem('quip.active', convId);
  } catch {
    /* ignore */
  }
  ui.setComposerText(conv.draft);
  ui.focusComposer();
  if (conv.hasMore === null) loadHistory(conv, true);
  if (conv.type === 2) {
    ensureGroup(conv.groupId);
    loadMembers(conv.groupId);
    fetchGroupOnline(conv.groupId);
  } else if (conv.peerId && !presence.has(conv.peerId)) {
    fetchPresence([conv.peerId]);
  }
  markRead(convId);
  scheduleReceipts(convId, conv.hasMore === null ? 800 : 0);
}

function closeConversation() {
  const prev = activeConv();
  if (prev) prev.draft = ui.composerText();
  if (prev) sendTypingStopped(prev);
  store.setActive(null);
  try {
    sessionStorage.removeItem('quip.active');
  } catch {
    /* ignore */
  }
}

function onLoadOlder(force = false) {
  const conv = activeConv();
  if (!conv || historyInflight.has(conv.id)) return;
  if (conv.historyError && !force) return; // the user retries with the button
  loadHistory(conv, conv.hasMore === null || (force && !conv.msgs.size));
}

// ------------------------------------------------------------------ dialogs

/** Opens (or starts) the 1:1 chat with a known user. */
function openChatWith(user) {
  if (!user || !user.user_id || !me() || user.user_id === me().user_id) return;
  if (user.username || user.nickname) learnUser(user.user_id, user);
  const convId = singleConversationId(me().user_id, user.user_id);
  store.ensureConv(convId, { peerId: user.user_id, sortTs: Date.now() });
  openConversation(convId);
  if (!presence.has(user.user_id)) fetchPresence([user.user_id]);
}

/** Shows the Contacts or Admin page in the main area (instead of a conversation). */
function openPage(page) {
  if (page === 'admin' && !(me() && me().role === 'admin')) return;
  if (store.state.page === page) return;
  closeConversation();
  store.setPage(page);
  if (page === 'contacts') contacts.show();
  else if (page === 'admin') admin.show();
}

function closePage() {
  store.setPage(null);
}

async function onNewChat(username) {
  username = username.replace(/^@/, '');
  if (!username) return 'Enter a username.';
  let user;
  try {
    user = await api.userByUsername(username);
  } catch (e) {
    return errMsg(e);
  }
  if (user.user_id === me().user_id) return 'That is you — pick someone else.';
  learnUser(user.user_id, user);
  const convId = singleConversationId(me().user_id, user.user_id);
  store.ensureConv(convId, { peerId: user.user_id, sortTs: Date.now() });
  openConversation(convId);
  return null;
}

async function onNewGroup(name, membersCsv) {
  if (!name) return 'Give the group a name.';
  const usernames = [
    ...new Set(
      String(membersCsv || '')
        .split(/[,;，、\s]+/)
        .map((s) => s.trim().replace(/^@/, ''))
        .filter(Boolean),
    ),
  ];
  const results = await Promise.allSettled(usernames.map((u) => api.userByUsername(u)));
  const ids = [];
  const unknown = [];
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (r.status === 'fulfilled') {
      learnUser(r.value.user_id, r.value);
      if (r.value.user_id !== me().user_id) ids.push(r.value.user_id);
    } else if (r.reason instanceof ApiError && r.reason.status === 404) {
      unknown.push(usernames[i]);
    } else {
      return errMsg(r.reason);
    }
  }
  if (unknown.length) return `No user named ${unknown.map((u) => `“${u}”`).join(', ')}.`;
  let group;
  try {
    group = await api.createGroup(name, ids);
  } catch (e) {
    return errMsg(e);
  }
  openGroup(group);
  return null;
}

async function onJoinGroup(raw) {
  let groupId = String(raw || '').trim();
  if (groupId.startsWith('group:')) groupId = groupId.slice(6);
  if (!groupId) return 'Enter a group id.';
  const known = store.state.groups.get(groupId);
  if (known && known.my_role) {
    openGroup(known); // already a member
    return null;
  }
  let res;
  try {
    res = await api.joinGroup(groupId);
  } catch (e) {
    return errMsg(e);
  }
  if (res.pending_approval) {
    ui.toast('Request sent — an admin of the group has to approve it.');
    return null;
  }
  openGroup(res.group || { group_id: groupId });
  if (!res.group) fetchGroup(groupId, true);
  return null;
}

function openGroup(group) {
  store.setGroup(group);
  const convId = group.conversation_id || groupConversationId(group.group_id);
  store.ensureConv(convId, { groupId: group.group_id, sortTs: Date.now() });
  membersFetchedAt.delete(group.group_id);
  openConversation(convId);
}

// ------------------------------------------------------------------ session lifecycle

async function onLogin({ username, password }) {
  ui.setLoginError('');
  ui.setLoginBusy(true);
  try {
    const data = await api.login(username, password, session.deviceId());
    startSession(data);
  } catch (e) {
    ui.setLoginError(errMsg(e));
    ui.setLoginBusy(false);
  }
}

async function onRegister({ username, nickname, password }) {
  ui.setLoginError('');
  ui.setLoginBusy(true);
  try {
    await api.register(username, nickname || username, password);
    const data = await api.login(username, password, session.deviceId());
    startSession(data);
  } catch (e) {
    ui.setLoginError(errMsg(e));
    ui.setLoginBusy(false);
  }
}

function startSession(loginData) {
  ui.setLoginError('');
  adoptLogin(loginData);
  learnUser(auth.user_id, { nickname: auth.nickname, username: auth.username });
  bootMain();
}

/** Shows the chat UI for `auth` and starts the connection and the initial loads. */
function bootMain() {
  store.reset({ user_id: auth.user_id, username: auth.username, nickname: auth.nickname, role: auth.role || 'user' });
  contacts.reset();
  devices.reset();
  admin.reset();
  ui.showMain(store.state.me);
  store.setVisible(!document.hidden);

  conn = createConnection();
  conn.start();

  clearInterval(deliveredTimer);
  deliveredTimer = setInterval(flushDelivered, DELIVERED_FLUSH_MS);
  clearInterval(tickTimer);
  tickTimer = setInterval(tick, 1000);

  const wanted = (() => {
    try {
      return sessionStorage.getItem('quip.active');
    } catch {
      return null;
    }
  })();
  Promise.allSettled([loadGroups(), loadConversations()]).then((results) => {
    const failed = results.find((r) => r.status === 'rejected' && !(r.reason instanceof SessionLost));
    if (failed) ui.toast(`Could not load conversations: ${errMsg(failed.reason)}`, 'error');
    if (wanted && !store.state.active && store.state.convs.has(wanted)) openConversation(wanted);
  });
}

/** Once a second: typing expiry, ACK timeouts, the banner countdown. */
function tick() {
  store.expireTyping();
  const now = Date.now();
  if (calls.phase === 'connected') ui.renderCall(); // the running clock
  const open = activeConv();
  if (open && open.type === 2 && now - groupOnlineAt > GROUP_ONLINE_EVERY_MS) fetchGroupOnline(open.groupId);
  if (now - presenceRenderAt > PRESENCE_RENDER_EVERY_MS) {
    presenceRenderAt = now;
    store.emit(); // "last seen … ago"
  }
  if (conn && conn.isOpen) {
    for (const { msg } of store.sendingMessages()) {
      if (msg.sentAt && now - msg.sentAt > ACK_TIMEOUT_MS) store.markFailed(msg.clientId, 'No answer from the server');
    }
  }
  ui.renderBanner();
}

function logout(message = '') {
  calls.shutdown();
  uploads.clear();
  closeViewer();
  if (conn) conn.stop();
  conn = null;
  for (const p of wsPending.values()) {
    clearTimeout(p.timer);
    p.reject(Object.assign(new Error('Signed out'), { code: 0 }));
  }
  wsPending.clear();
  for (const t of receiptTimers.values()) clearTimeout(t);
  receiptTimers.clear();
  presence.clear();
  clearTimeout(refreshTimer);
  clearInterval(tickTimer);
  clearInterval(deliveredTimer);
  for (const t of gapTimers.values()) clearTimeout(t);
  gapTimers.clear();
  gapAttempts.clear();
  lastTypingSent.clear();
  membersFetchedAt.clear();
  contacts.reset();
  devices.reset();
  admin.reset();
  forceRefresh = false;
  needsListReload = false;
  const wasSignedIn = !!auth;
  auth = null;
  session.clearAuth();
  try {
    sessionStorage.removeItem('quip.active');
  } catch {
    /* ignore */
  }
  store.reset(null);
  if (wasSignedIn || message) ui.showLogin({ error: message });
}

/** Refreshes my profile: nickname and role (an admin may have changed it) from GET /api/me. */
function refreshMe() {
  const forUser = auth && auth.user_id;
  api
    .me()
    .then((u) => {
      if (!auth || auth.user_id !== forUser || !u || !u.user_id || !store.state.me) return;
      learnUser(u.user_id, u);
      const role = u.role || auth.role || 'user';
      if (auth.role !== role) {
        auth.role = role;
        session.saveAuth(auth);
      }
      store.state.me = { user_id: u.user_id, username: u.username, nickname: u.nickname || u.username, role };
      ui.setMe(store.state.me);
      if (role !== 'admin' && store.state.page === 'admin') closePage();
    })
    .catch(() => {});
}

function onBannerAction() {
  if (!conn) return;
  conn.retryNow(); // "Retry now" while backing off, "Use here" after a takeover
}

// ------------------------------------------------------------------ browser events

document.addEventListener('visibilitychange', () => {
  if (!auth) return;
  store.setVisible(!document.hidden);
  if (document.hidden) return;
  const conv = activeConv();
  if (conv) markRead(conv.id);
  // Timers are throttled in background tabs: catch up on an overdue refresh now.
  if (tokenNearExpiry(REFRESH_LEAD_MS)) refreshTokens(auth.token).catch(() => {});
  if (conn && conn.status === 'reconnecting') conn.retryNow();
});

// Leaving the page during a call: hang up now rather than leave the other side waiting for
// the broker's reconnect grace to run out.
window.addEventListener('pagehide', () => {
  if (calls.busy) calls.shutdown();
});

// Another tab refreshed our tokens or signed us out. A tab signed in as someone else
// (tests often run two users in one browser profile) keeps its own session in memory:
// localStorage then holds whichever signed in or refreshed last.
window.addEventListener('storage', (e) => {
  if (e.key !== session.AUTH_STORAGE_KEY || !auth) return;
  let before = null;
  try {
    before = e.oldValue ? JSON.parse(e.oldValue) : null;
  } catch {
    /* ignore */
  }
  const stored = session.loadAuth();
  if (!stored) {
    if (before && before.user_id === auth.user_id && before.token === auth.token) {
      logout('You signed out in another window.');
    }
  } else if (stored.user_id === auth.user_id && stored.token !== auth.token) {
    auth = stored;
    scheduleRefresh();
  }
});

// ------------------------------------------------------------------ boot

ui.init(
  {
    onLogin,
    onRegister,
    onLogout: () => logout(),
    onOpen: openConversation,
    onBack: closeConversation,
    onSend,
    onRetry,
    onCancelUpload: (clientId) => uploads.cancel(clientId),
    onRemoveUpload: (clientId) => uploads.remove(clientId),
    onLoadOlder,
    onComposerInput,
    onComposerBlur: () => sendTypingStopped(activeConv()),
    onRecall,
    onEdit,
    onCall,
    onCallAction,
    onNewChat,
    onNewGroup,
    onJoinGroup,
    onBannerAction,
    onOpenPage: openPage,
    onClosePage: closePage,
  },
  store,
  { presence, call: calls },
);
initAttach({ onFiles: onAttach, canAttach: () => !!activeConv() });
contacts.init();
devices.init();
admin.init();
store.subscribe(() => {
  contacts.render();
  devices.render();
  admin.render();
});

const saved = session.loadAuth();
if (saved) {
  auth = saved;
  scheduleRefresh();
  bootMain();
  // My own profile is refreshed once the connection opens (refreshMe); a dead session logs
  // out there.
} else {
  ui.showLogin();
}

// Exposed for debugging in the console and for browser tests (read-only use).
window.quip = {
  store,
  api,
  presence,
  call: calls,
  get connection() {
    return conn;
  },
};
