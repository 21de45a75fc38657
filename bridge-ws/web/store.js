// Client state: conversations, messages, names, connection status. No DOM and no I/O here
// (app.js does the effects, ui.js the rendering), so it can be exercised from node.
//
// Messages are kept per conversation, keyed by seq (the broker's per-conversation sequence
// number, which is what dedupes everything: live frames, the catch-up after a reconnect and
// history pages may overlap). My messages that have no seq yet (waiting for their ACK) are
// kept apart, keyed by the client id we put in `message_id`.

export const MSG_SINGLE = 1;
export const MSG_GROUP = 2;
export const MSG_SYSTEM = 3;
export const MSG_IMAGE = 4;
export const MSG_VOICE = 5;
export const MSG_VIDEO = 6;
export const MSG_FILE = 7;
export const MSG_CUSTOM = 8;
/** Events that change an earlier message (content `{target_seq, target_message_id, text?}`):
 * applied to their target, never shown as messages, never unread. */
export const MSG_RECALL = 35;
export const MSG_EDIT = 36;

export const isEventType = (type) => type === MSG_RECALL || type === MSG_EDIT;

export const TYPING_SHOW_MS = 5_000;

/** `single:<lower>:<higher>` (plain string order, as the broker does) or `group:<id>`. */
export function singleConversationId(a, b) {
  return a < b ? `single:${a}:${b}` : `single:${b}:${a}`;
}

export function groupConversationId(groupId) {
  return `group:${groupId}`;
}

/** { type: 1|2, groupId?, users?: [a, b] } or null for an id we do not understand. */
export function parseConversationId(id) {
  if (typeof id !== 'string') return null;
  if (id.startsWith('group:')) return { type: 2, groupId: id.slice(6) };
  if (id.startsWith('single:')) {
    const rest = id.slice(7);
    const i = rest.indexOf(':');
    if (i > 0) return { type: 1, users: [rest.slice(0, i), rest.slice(i + 1)] };
  }
  return null;
}

/** True if the message mentions `userId` (or everyone). */
export function mentions(msg, userId) {
  const c = msg.content || {};
  return !!(c.at_all || (Array.isArray(c.at_user_ids) && c.at_user_ids.includes(userId)));
}

export function createStore({ schedule } = {}) {
  // Renders are batched to the next animation frame; background tabs get no frames, so a
  // timer backs it up (whichever fires first renders, the other is a no-op).
  const defer =
    schedule ||
    ((fn) => {
      let done = false;
      const once = () => {
        if (!done) {
          done = true;
          fn();
        }
      };
      if (typeof requestAnimationFrame === 'function') requestAnimationFrame(once);
      setTimeout(once, 100);
    });
  const listeners = new Set();
  let scheduled = false;

  const state = {
    me: null, // {user_id, username, nickname}
    users: new Map(), // user_id -> {nickname, username}
    groups: new Map(), // group_id -> group JSON
    groupOnline: new Map(), // group_id -> {member_count, online_count, online_user_ids}
    convs: new Map(), // conversation_id -> conversation (see newConv)
    pendingIndex: new Map(), // client id -> conversation id, for ACK / error lookup
    resumeBase: new Map(), // conversation id -> seq from a type-41 frame, before the conversation exists
    active: null, // open conversation id
    page: null, // open page instead of a conversation: null | 'contacts' | 'admin'
    visible: true, // page visible (a conversation only counts as "viewed" when it is)
    conn: { status: 'stopped', info: {} },
    convsLoaded: false,
    rev: 0,
  };

  function emit() {
    state.rev += 1;
    if (scheduled) return;
    scheduled = true;
    defer(() => {
      scheduled = false;
      for (const fn of listeners) fn(state);
    });
  }

  function subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  }

  function reset(me) {
    state.me = me;
    state.groups.clear();
    state.groupOnline.clear();
    state.convs.clear();
    state.pendingIndex.clear();
    state.resumeBase.clear();
    state.active = null;
    state.page = null;
    state.convsLoaded = false;
    if (me) state.users.set(me.user_id, { nickname: me.nickname, username: me.username });
    emit();
  }

  // ---------------------------------------------------------------- names

  function setUser(userId, info) {
    if (!userId || !info) return false;
    const prev = state.users.get(userId) || {};
    const next = {
      nickname: info.nickname || prev.nickname || '',
      username: info.username || prev.username || '',
    };
    if (next.nickname === prev.nickname && next.username === prev.username) return false;
    state.users.set(userId, next);
    emit();
    return true;
  }

  function userName(userId) {
    if (!userId) return '';
    if (state.me && userId === state.me.user_id) return state.me.nickname || state.me.username;
    const u = state.users.get(userId);
    return (u && (u.nickname || u.username)) || userId;
  }

  function setGroup(group) {
    if (!group || !group.group_id) return;
    const prev = state.groups.get(group.group_id) || {};
    state.groups.set(group.group_id, { ...prev, ...group });
    const conv = ensureConv(group.conversation_id || groupConversationId(group.group_id));
    let created = Number(group.created_at) || 0;
    if (created > 0 && created < 1e11) created *= 1000; // seconds, not ms
    if (conv && !conv.sortTs && created) conv.sortTs = created;
    emit();
  }

  /** GET /api/groups/{id}/online. */
  function setGroupOnline(groupId, data) {
    if (!groupId || !data) return;
    state.groupOnline.set(groupId, {
      member_count: Number(data.member_count) || 0,
      online_count: Number(data.online_count) || 0,
      online_user_ids: Array.isArray(data.online_user_ids) ? data.online_user_ids : [],
    });
    emit();
  }

  // ---------------------------------------------------------------- conversations

  function newConv(id) {
    const parsed = parseConversationId(id) || { type: 1 };
    const resumed = state.resumeBase.get(id);
    state.resumeBase.delete(id);
    let peerId = '';
    if (parsed.type === 1 && parsed.users && state.me) {
      peerId = parsed.users[0] === state.me.user_id ? parsed.users[1] : parsed.users[0];
    }
    return {
      id,
      type: parsed.type,
      groupId: parsed.groupId || '',
      peerId,
      last: null, // newest message (may be a pending one of mine)
      lastSeq: 0, // highest seq known to exist
      readSeq: 0, // read up to here (server's read_seq, or what we reported)
      readSent: 0, // highest seq we sent a type-31 read receipt for
      unread: 0,
      mentioned: false,
      sortTs: 0, // ordering key of the list (newest first)
      msgs: new Map(), // seq -> message
      pending: new Map(), // client id -> my message without a seq yet
      holes: new Set(), // seqs that do not exist for us (learned from history pages)
      floor: 0, // lowest seq that exists for us (history said has_more: false below it)
      contig: resumed ?? null, // highest contiguous seq received (delivered cursor), null until known
      reported: resumed ?? 0, // highest seq we sent a type-32 delivered report for
      hasMore: null, // history: null = not loaded, true/false from the API
      loadingOlder: false,
      historyError: '',
      typing: new Map(), // user id -> show until (ms epoch)
      typingKind: new Map(), // user id -> 'typing' | 'recording_voice'
      amendments: new Map(), // target seq -> RECALL/EDIT events whose target is not loaded yet
      peerRead: 0, // 1:1: the partner's read mark (from receipts and their own messages)
      peerDelivered: 0, // 1:1: the partner's delivered mark
      receiptCounts: new Map(), // group: seq of my message -> {read, delivered, recipients}
      draft: '',
      rev: 0,
    };
  }

  /** Returns the conversation, creating an empty one (e.g. a new chat) if needed. */
  function ensureConv(id, hint = {}) {
    if (!id) return null;
    let conv = state.convs.get(id);
    if (!conv) {
      conv = newConv(id);
      state.convs.set(id, conv);
      emit();
    }
    if (hint.peerId && !conv.peerId) conv.peerId = hint.peerId;
    if (hint.groupId && !conv.groupId) conv.groupId = hint.groupId;
    if (hint.sortTs && !conv.sortTs) conv.sortTs = hint.sortTs;
    return conv;
  }

  function convTitle(conv) {
    if (!conv) return '';
    if (conv.type === 2) {
      const g = state.groups.get(conv.groupId);
      return (g && g.name) || conv.groupId || conv.id;
    }
    return userName(conv.peerId) || conv.id;
  }

  /** Newest first; conversations without messages keep their creation/open time. */
  function sortedConvs() {
    return [...state.convs.values()].sort((a, b) => b.sortTs - a.sortTs || (a.id < b.id ? -1 : 1));
  }

  function isViewing(conv) {
    return state.active === conv.id && state.visible;
  }

  function highestSeq(conv) {
    let max = conv.lastSeq;
    for (const seq of conv.msgs.keys()) if (seq > max) max = seq;
    return max;
  }

  /**
   * Merges one page of GET /api/conversations. The API's `unread` covers messages up to its
   * `last_seq`; messages we already received live beyond that are added on top, and a
   * conversation we already marked read locally (receipt in flight) stays at zero.
   */
  function applyConversationList(items) {
    for (const it of items || []) {
      if (!it || !it.conversation_id) continue;
      const conv = ensureConv(it.conversation_id);
      if (it.type === 1 || it.type === 2) conv.type = it.type;
      if (conv.type === 1 && it.peer_id && !conv.peerId) conv.peerId = it.peer_id;
      if (conv.type === 2 && !conv.groupId) conv.groupId = it.peer_id || '';
      const apiLast = Number(it.last_seq) || 0;
      const apiRead = Number(it.read_seq) || 0;
      if (it.last_message) addMessage(it.last_message, 'list');
      conv.lastSeq = Math.max(conv.lastSeq, apiLast);
      conv.readSeq = Math.max(conv.readSeq, apiRead);
      if (isViewing(conv) || conv.readSeq >= apiLast) {
        conv.unread = 0;
        conv.mentioned = false;
      } else {
        let extra = 0;
        for (const m of conv.msgs.values()) if (!m.mine && m.seq > apiLast && m.seq > conv.readSeq) extra++;
        conv.unread = (Number(it.unread) || 0) + extra;
        conv.mentioned = !!it.mentioned || conv.mentioned;
      }
      if (!conv.sortTs && it.last_message) conv.sortTs = Number(it.last_message.timestamp) || 0;
    }
    state.convsLoaded = true;
    emit();
  }

  // ---------------------------------------------------------------- messages

  function normalize(raw) {
    const seq = Number(raw.seq) || null;
    const mine = !!state.me && raw.from === state.me.user_id;
    const clientId = raw.client_msg_id || '';
    return {
      key: seq ? `s:${seq}` : `c:${clientId || raw.message_id}`,
      seq,
      id: raw.message_id || '',
      clientId,
      conversationId: raw.conversation_id || '',
      type: Number(raw.type) || MSG_SINGLE,
      from: raw.from || '',
      to: raw.to || '',
      groupId: raw.group_id || '',
      content: raw.content && typeof raw.content === 'object' ? raw.content : { text: String(raw.content ?? '') },
      timestamp: Number(raw.timestamp) || Date.now(),
      editedAt: Number(raw.edited_at) || 0,
      recalled: !!raw.recalled,
      recalledBy: raw.recalled_by || '',
      mine,
      state: 'sent',
      error: '',
      createdAt: Date.now(),
      sentAt: 0,
      rev: 0,
    };
  }

  /** Conversation id of a message frame (the broker sets it; computed for SimpleIM peers). */
  function conversationIdOf(raw) {
    if (raw.conversation_id) return raw.conversation_id;
    if (raw.group_id) return groupConversationId(raw.group_id);
    if (raw.from && raw.to && state.me) return singleConversationId(raw.from, raw.to);
    return '';
  }

  /** Keeps conv.last = the newest message (by seq when both have one, else by time). */
  function touchLast(conv, msg) {
    const last = conv.last;
    const newer =
      !last || last === msg || (msg.seq && last.seq ? msg.seq >= last.seq : msg.timestamp >= last.timestamp);
    if (newer) {
      conv.last = msg;
      conv.sortTs = Math.max(conv.sortTs, msg.timestamp);
    }
  }

  /**
   * Type 41 (RESUME_FROM): the broker resumes this device in the conversation after `seq`
   * (the next delivery there is seq + 1), which fixes the start of the delivered cursor.
   */
  function applyResumeFrom(convId, seq) {
    seq = Number(seq) || 0;
    if (!convId) return;
    const conv = state.convs.get(convId);
    if (!conv) {
      state.resumeBase.set(convId, seq);
      return;
    }
    conv.contig = Math.max(conv.contig ?? seq, seq);
    conv.reported = Math.max(conv.reported, seq);
    advanceContig(conv);
  }

  /** Moves the contiguous cursor forward over received seqs and known holes. */
  function advanceContig(conv) {
    if (conv.contig == null) return;
    if (conv.contig + 1 < conv.floor) conv.contig = conv.floor - 1;
    while (conv.msgs.has(conv.contig + 1) || conv.holes.has(conv.contig + 1)) conv.contig += 1;
  }

  /**
   * Adds a message from the server. source:
   *   'live'    delivered on the WebSocket (catch-up or live): counts as unread, moves the
   *             delivered cursor (the first one of a conversation fixes its start)
   *   'history' a history page: fills gaps, never counts as unread
   *   'list'    the last_message of a conversation list item
   * Returns { conv, msg, isNew }; isNew is false for a duplicate (same conversation and seq).
   */
  function addMessage(raw, source) {
    const convId = conversationIdOf(raw);
    if (!convId) return { conv: null, msg: null, isNew: false };
    const parsed = parseConversationId(convId);
    const conv = ensureConv(convId, {
      groupId: raw.group_id || (parsed && parsed.groupId) || '',
    });
    if (raw.from_nickname && raw.from) setUser(raw.from, { nickname: raw.from_nickname });
    if (isEventType(Number(raw.type))) return applyEvent(conv, raw, source);
    const msg = normalize({ ...raw, conversation_id: convId });
    if (conv.type === 1 && !conv.peerId && state.me) conv.peerId = msg.mine ? msg.to : msg.from;

    if (msg.seq && conv.msgs.has(msg.seq)) {
      // Duplicate (catch-up overlap, history overlap, echo to another device of mine).
      // A newer copy may carry an edit or a recall: take those over.
      const existing = conv.msgs.get(msg.seq);
      if (existing.recalled && !msg.recalled) {
        // An older copy (e.g. the catch-up overlapping a recall already applied): keep the recall.
      } else if ((msg.recalled && !existing.recalled) || msg.editedAt > existing.editedAt) {
        Object.assign(existing, {
          recalled: msg.recalled || existing.recalled,
          recalledBy: msg.recalledBy || existing.recalledBy,
          editedAt: Math.max(msg.editedAt, existing.editedAt),
          content: msg.recalled ? {} : msg.content,
        });
        existing.rev += 1;
        conv.rev += 1;
        emit();
      }
      if (source === 'live' && conv.contig == null) conv.contig = msg.seq - 1;
      advanceContig(conv);
      return { conv, msg: existing, isNew: false };
    }

    // My own message coming back (from another device, history or the catch-up after a
    // drop that lost its ACK): merge it into the pending bubble with the same client id.
    const pendingId = msg.mine && (msg.clientId || '');
    const pending = pendingId && conv.pending.get(pendingId);
    let stored = msg;
    if (pending && msg.seq) {
      conv.pending.delete(pendingId);
      state.pendingIndex.delete(pendingId);
      Object.assign(pending, {
        seq: msg.seq,
        id: msg.id,
        timestamp: msg.timestamp,
        content: msg.content,
        state: 'sent',
        error: '',
        rev: pending.rev + 1,
      });
      stored = pending;
    }

    if (stored.seq) conv.msgs.set(stored.seq, stored);
    else conv.pending.set(stored.key, stored);
    conv.rev += 1;
    if (stored.seq && conv.amendments.has(stored.seq)) {
      for (const ev of conv.amendments.get(stored.seq)) amend(stored, ev);
      conv.amendments.delete(stored.seq);
    }
    // A message from the 1:1 partner means they have read up to it.
    if (stored.seq && conv.type === 1 && !stored.mine && stored.type !== MSG_SYSTEM && stored.seq > conv.peerRead) {
      conv.peerRead = stored.seq;
      conv.peerDelivered = Math.max(conv.peerDelivered, stored.seq);
    }

    if (stored.seq) {
      const wasLast = conv.lastSeq;
      conv.lastSeq = Math.max(conv.lastSeq, stored.seq);
      if (source === 'live') {
        if (conv.contig == null) conv.contig = stored.seq - 1;
        // Unread only for what the conversation list has not already counted.
        if (!stored.mine && stored.seq > wasLast && stored.seq > conv.readSeq && !isViewing(conv)) {
          conv.unread += 1;
          if (state.me && mentions(stored, state.me.user_id)) conv.mentioned = true;
        }
        if (conv.typing.delete(stored.from)) conv.rev += 1;
      }
      advanceContig(conv);
    }
    touchLast(conv, stored);
    emit();
    return { conv, msg: stored, isNew: true };
  }

  /** Applies one RECALL/EDIT event ({type, from, timestamp, content}) to its target message. */
  function amend(target, ev) {
    const c = ev.content || {};
    if (Number(ev.type) === MSG_RECALL) {
      if (target.recalled) return false;
      target.recalled = true;
      target.recalledBy = ev.from || target.recalledBy;
      target.content = {};
    } else {
      const at = Number(ev.timestamp) || Date.now();
      if (target.recalled || at < target.editedAt) return false;
      target.content = { ...target.content, text: typeof c.text === 'string' ? c.text : '', at_user_ids: c.at_user_ids || [], at_all: !!c.at_all };
      target.editedAt = at;
    }
    target.rev += 1;
    return true;
  }

  /**
   * A RECALL/EDIT event (live, at sync or in a history page). Its seq is taken (so the
   * delivered cursor moves over it) but it is not a message: it changes its target, and
   * does not count as unread. An event for a target not loaded yet waits for it.
   */
  function applyEvent(conv, raw, source) {
    const seq = Number(raw.seq) || 0;
    const c = raw.content || {};
    const targetSeq = Number(c.target_seq) || 0;
    if (seq) {
      conv.holes.add(seq);
      conv.lastSeq = Math.max(conv.lastSeq, seq);
      if (source === 'live' && conv.contig == null) conv.contig = seq - 1;
      advanceContig(conv);
    }
    if (targetSeq) {
      const target = conv.msgs.get(targetSeq);
      if (target) {
        if (amend(target, raw)) conv.rev += 1;
      } else {
        const list = conv.amendments.get(targetSeq) || [];
        list.push(raw);
        conv.amendments.set(targetSeq, list);
      }
    }
    emit();
    return { conv, msg: null, isNew: false, event: true };
  }

  /** My own recall/edit was ACKed (event seq `seq`): apply it now rather than waiting for
   * the event to come back. */
  function applyOwnEvent(convId, type, targetSeq, seq, extra = {}) {
    const conv = state.convs.get(convId);
    if (!conv) return;
    applyEvent(conv, { type, seq, from: state.me && state.me.user_id, content: { target_seq: targetSeq, ...extra.content }, timestamp: extra.timestamp || Date.now() }, 'own');
  }

  /** Adds my outgoing message (state 'sending') and returns it. */
  function addOutgoing(convId, clientId, content, type) {
    const conv = ensureConv(convId);
    const me = state.me.user_id;
    const now = Date.now();
    const msg = {
      key: `c:${clientId}`,
      seq: null,
      id: '',
      clientId,
      conversationId: convId,
      type,
      from: me,
      to: conv.type === 2 ? conv.groupId : conv.peerId,
      groupId: conv.type === 2 ? conv.groupId : '',
      content,
      timestamp: now,
      editedAt: 0,
      recalled: false,
      mine: true,
      state: 'sending',
      error: '',
      createdAt: now,
      sentAt: 0,
      rev: 0,
    };
    conv.pending.set(clientId, msg);
    state.pendingIndex.set(clientId, convId);
    conv.rev += 1;
    touchLast(conv, msg);
    conv.sortTs = Math.max(conv.sortTs, now);
    emit();
    return msg;
  }

  function findPending(clientId) {
    const convId = state.pendingIndex.get(clientId);
    const conv = convId && state.convs.get(convId);
    const msg = conv && conv.pending.get(clientId);
    return msg ? { conv, msg } : null;
  }

  /** Changes one of my pending messages (e.g. an upload's state) and re-renders it. */
  function updatePending(clientId, patch) {
    const found = findPending(clientId);
    if (!found) return null;
    Object.assign(found.msg, patch);
    found.msg.rev += 1;
    found.conv.rev += 1;
    touchLast(found.conv, found.msg);
    emit();
    return found;
  }

  /** Drops one of my pending messages (a cancelled upload). */
  function removePending(clientId) {
    const found = findPending(clientId);
    if (!found) return false;
    const { conv, msg } = found;
    conv.pending.delete(clientId);
    state.pendingIndex.delete(clientId);
    if (conv.last === msg) {
      conv.last = null;
      for (const m of [...conv.msgs.values(), ...conv.pending.values()]) touchLast(conv, m);
    }
    conv.rev += 1;
    emit();
    return true;
  }

  /** ACK (type 30): the message is stored; it gets its seq and becomes 'sent'. */
  function applyAck(frame) {
    const clientId = frame.message_id || frame.client_msg_id;
    const found = clientId && findPending(clientId);
    if (!found) return null;
    const { conv, msg } = found;
    if (frame.code) {
      markFailed(clientId, frame.message || `Error ${frame.code}`);
      return conv;
    }
    const seq = Number(frame.seq) || null;
    conv.pending.delete(clientId);
    state.pendingIndex.delete(clientId);
    msg.state = 'sent';
    msg.error = '';
    msg.id = frame.server_message_id || msg.id;
    if (frame.timestamp) msg.timestamp = Number(frame.timestamp) || msg.timestamp;
    msg.rev += 1;
    if (seq && !conv.msgs.has(seq)) {
      msg.seq = seq;
      conv.msgs.set(seq, msg);
      conv.lastSeq = Math.max(conv.lastSeq, seq);
      advanceContig(conv);
    } else if (!seq) {
      // An ACK without a seq (SimpleIM-style): keep the bubble, now without a clock.
      conv.pending.set(clientId, msg);
    }
    conv.rev += 1;
    touchLast(conv, msg);
    emit();
    return conv;
  }

  function markFailed(clientId, error) {
    const found = findPending(clientId);
    if (!found) return null;
    found.msg.state = 'failed';
    found.msg.error = error || 'Not sent';
    found.msg.rev += 1;
    found.conv.rev += 1;
    emit();
    return found.conv;
  }

  function markSending(clientId) {
    const found = findPending(clientId);
    if (!found) return null;
    found.msg.state = 'sending';
    found.msg.error = '';
    found.msg.rev += 1;
    found.conv.rev += 1;
    emit();
    return found;
  }

  /** My messages still waiting for an ACK, oldest first (resent after a reconnect). */
  function sendingMessages() {
    const out = [];
    for (const convId of new Set(state.pendingIndex.values())) {
      const conv = state.convs.get(convId);
      if (!conv) continue;
      for (const m of conv.pending.values()) if (m.state === 'sending') out.push({ conv, msg: m });
    }
    return out.sort((a, b) => a.msg.createdAt - b.msg.createdAt);
  }

  /**
   * Merges a history page (`messages` ascending, all with seq < requested lastSeq). Seqs
   * missing inside the page's range, and below it when has_more is false, do not exist for
   * us (e.g. before we joined a group): they are recorded as holes so the delivered cursor
   * can pass them.
   */
  function applyHistory(convId, page, requestedLastSeq, { paging = true } = {}) {
    const conv = ensureConv(convId);
    const list = Array.isArray(page && page.messages) ? page.messages : [];
    let min = Infinity;
    let max = 0;
    for (const raw of list) {
      const { msg } = addMessage({ ...raw, conversation_id: raw.conversation_id || convId }, 'history');
      if (msg && msg.seq) {
        min = Math.min(min, msg.seq);
        max = Math.max(max, msg.seq);
      }
    }
    const hasMore = !!(page && page.has_more) && list.length > 0;
    if (max) {
      const top = requestedLastSeq > 0 ? requestedLastSeq - 1 : max;
      // Bounded: a page spans at most a few hundred seqs unless most of them are invisible.
      for (let s = Math.max(min, top - 10_000); s <= top; s++) if (!conv.msgs.has(s)) conv.holes.add(s);
      if (!hasMore) conv.floor = Math.max(conv.floor, min);
    } else if (!hasMore && requestedLastSeq > 0) {
      conv.floor = Math.max(conv.floor, requestedLastSeq);
    }
    // paging: false for gap repairs, which must not change the scroll-back state.
    if (paging) conv.hasMore = hasMore;
    conv.historyError = '';
    advanceContig(conv);
    conv.rev += 1;
    emit();
    return conv;
  }

  /** Oldest seq loaded (history cursor for scroll-back), 0 if none. */
  function oldestSeq(conv) {
    let min = 0;
    for (const s of conv.msgs.keys()) if (!min || s < min) min = s;
    return min;
  }

  /** Messages in display order: by seq, then my pending ones by creation time. */
  function orderedMessages(conv) {
    const sequenced = [...conv.msgs.values()].sort((a, b) => a.seq - b.seq);
    const pending = [...conv.pending.values()].sort((a, b) => a.createdAt - b.createdAt);
    return sequenced.concat(pending);
  }

  // ---------------------------------------------------------------- receipts

  /**
   * Marks the conversation read locally; returns the seq for a type-31 receipt, or 0 if the
   * server already knows (nothing new since the last receipt).
   */
  function markRead(convId) {
    const conv = state.convs.get(convId);
    if (!conv) return 0;
    const seq = highestSeq(conv);
    const changed = conv.unread !== 0 || conv.mentioned;
    conv.unread = 0;
    conv.mentioned = false;
    conv.readSeq = Math.max(conv.readSeq, seq);
    if (changed) emit();
    if (seq > conv.readSent) {
      conv.readSent = seq;
      return seq;
    }
    return 0;
  }

  /** Delivered cursors that moved since the last report: [{conversation_id, seq}]. */
  function deliveredUpdates() {
    const out = [];
    for (const conv of state.convs.values()) {
      if (conv.contig != null && conv.contig > conv.reported) out.push({ conversation_id: conv.id, seq: conv.contig });
    }
    return out;
  }

  function markReported(convId, seq) {
    const conv = state.convs.get(convId);
    if (conv) conv.reported = Math.max(conv.reported, seq);
  }

  /** Seq gaps the live stream should have filled by now (see app.js gap repair). */
  function hasGap(conv) {
    return conv.contig != null && highestSeq(conv) > conv.contig;
  }

  /**
   * A receipt push (31 read / 32 delivered: {conversation_id, user_id, seq}). Mine (another
   * device of mine read it): my unread count follows. The 1:1 partner's: ticks. In groups the
   * counts are fetched (app.js); returns what changed: 'mine' | 'peer' | 'group' | ''.
   */
  function applyReceipt(kind, convId, userId, seq) {
    seq = Number(seq) || 0;
    const conv = state.convs.get(convId);
    if (!conv || !userId || !seq) return '';
    if (state.me && userId === state.me.user_id) {
      if (kind !== 'read' || seq <= conv.readSeq) return '';
      conv.readSeq = seq;
      conv.readSent = Math.max(conv.readSent, seq);
      const top = highestSeq(conv);
      if (seq >= top) {
        conv.unread = 0;
        conv.mentioned = false;
      } else {
        // Messages after the new mark that are not mine and not events; unknown seqs count.
        let n = 0;
        for (let s = seq + 1; s <= top && n < conv.unread; s++) {
          const m = conv.msgs.get(s);
          if (m ? !m.mine : !conv.holes.has(s)) n++;
        }
        conv.unread = Math.min(conv.unread, n);
        if (!conv.unread) conv.mentioned = false;
      }
      conv.rev += 1;
      emit();
      return 'mine';
    }
    if (conv.type === 1) {
      const before = [conv.peerRead, conv.peerDelivered];
      if (kind === 'read') conv.peerRead = Math.max(conv.peerRead, seq);
      conv.peerDelivered = Math.max(conv.peerDelivered, seq);
      if (before[0] === conv.peerRead && before[1] === conv.peerDelivered) return '';
      conv.rev += 1;
      emit();
      return 'peer';
    }
    return kind === 'read' ? 'group' : '';
  }

  /** GET …/receipts counts: per seq in groups; in 1:1 they give the partner's marks. */
  function applyReceiptCounts(convId, counts) {
    const conv = state.convs.get(convId);
    if (!conv) return;
    for (const c of counts || []) {
      const seq = Number(c.seq) || 0;
      if (!seq) continue;
      const entry = { read: Number(c.read) || 0, delivered: Number(c.delivered) || 0, recipients: Number(c.recipients) || 0 };
      if (conv.type === 1) {
        if (entry.read > 0) conv.peerRead = Math.max(conv.peerRead, seq);
        if (entry.delivered > 0 || entry.read > 0) conv.peerDelivered = Math.max(conv.peerDelivered, seq);
      } else {
        conv.receiptCounts.set(seq, entry);
      }
    }
    conv.rev += 1;
    emit();
  }

  /** 'sending' | 'failed' | 'sent' | 'delivered' | 'read' for one of my messages. */
  function receiptState(conv, msg) {
    if (!msg.mine || msg.state !== 'sent' || !msg.seq) return msg.state;
    if (conv.type === 1) {
      if (conv.peerRead >= msg.seq) return 'read';
      if (conv.peerDelivered >= msg.seq) return 'delivered';
    }
    return 'sent';
  }

  // ---------------------------------------------------------------- typing

  /** Shows "… is typing" for ms (5 s unless the frame's expires_in_ms says otherwise);
   * ms = 0 clears it (kind "stopped"). */
  function setTyping(convId, userId, ms = TYPING_SHOW_MS, kind = 'typing') {
    const conv = state.convs.get(convId);
    if (!conv || !userId || (state.me && userId === state.me.user_id)) return;
    if (ms > 0) {
      conv.typing.set(userId, Date.now() + ms);
      conv.typingKind.set(userId, kind);
    } else if (!conv.typing.delete(userId)) return;
    conv.rev += 1;
    emit();
  }

  /** Drops expired typing entries; returns true if something changed. */
  function expireTyping(now = Date.now()) {
    let changed = false;
    for (const conv of state.convs.values()) {
      for (const [uid, until] of conv.typing) {
        if (until <= now) {
          conv.typing.delete(uid);
          conv.rev += 1;
          changed = true;
        }
      }
    }
    if (changed) emit();
    return changed;
  }

  function typingNames(conv) {
    const now = Date.now();
    return [...conv.typing].filter(([, until]) => until > now).map(([uid]) => userName(uid));
  }

  /** True if everyone shown as typing is recording a voice message. */
  function typingIsVoice(conv) {
    const now = Date.now();
    const live = [...conv.typing].filter(([, until]) => until > now);
    return live.length > 0 && live.every(([uid]) => conv.typingKind.get(uid) === 'recording_voice');
  }

  // ---------------------------------------------------------------- misc

  function setActive(convId) {
    state.active = convId;
    if (convId) state.page = null; // a conversation and a page share the main area
    emit();
  }

  /** Shows a page (contacts, admin) in the main area, or none. Callers close the open
   * conversation first (it would otherwise count as viewed while hidden). */
  function setPage(page) {
    state.page = page || null;
    emit();
  }

  function setVisible(v) {
    state.visible = v;
    emit();
  }

  function setConn(status, info = {}) {
    state.conn = { status, info };
    emit();
  }

  function totalUnread() {
    let n = 0;
    for (const c of state.convs.values()) n += c.unread;
    return n;
  }

  return {
    state,
    subscribe,
    emit,
    reset,
    setUser,
    userName,
    setGroup,
    setGroupOnline,
    ensureConv,
    convTitle,
    sortedConvs,
    isViewing,
    highestSeq,
    applyConversationList,
    applyResumeFrom,
    addMessage,
    addOutgoing,
    findPending,
    updatePending,
    removePending,
    applyAck,
    markFailed,
    markSending,
    sendingMessages,
    applyHistory,
    oldestSeq,
    orderedMessages,
    markRead,
    applyReceipt,
    applyReceiptCounts,
    receiptState,
    applyOwnEvent,
    deliveredUpdates,
    markReported,
    hasGap,
    setTyping,
    expireTyping,
    typingNames,
    typingIsVoice,
    setActive,
    setPage,
    setVisible,
    setConn,
    totalUnread,
  };
}
