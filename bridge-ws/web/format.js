// Pure formatting helpers (times, previews, avatars).

import { MSG_SYSTEM, MSG_IMAGE, MSG_VOICE, MSG_VIDEO, MSG_FILE, MSG_CUSTOM } from './store.js';

const pad = (n) => String(n).padStart(2, '0');

export function startOfDay(ts) {
  const d = new Date(ts);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** 14:05 */
export function clockTime(ts) {
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Conversation list time: clock today, "Yesterday", weekday this week, else a date. */
export function listTime(ts, now = Date.now()) {
  if (!ts) return '';
  const today = startOfDay(now);
  const day = startOfDay(ts);
  if (day === today) return clockTime(ts);
  const days = Math.round((today - day) / 86_400_000);
  if (days === 1) return 'Yesterday';
  const d = new Date(ts);
  if (days > 1 && days < 7) return d.toLocaleDateString(undefined, { weekday: 'short' });
  if (d.getFullYear() === new Date(now).getFullYear()) {
    return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

/** Day separator label: "Today", "Yesterday", "Monday, 3 June" … */
export function dayLabel(ts, now = Date.now()) {
  const today = startOfDay(now);
  const day = startOfDay(ts);
  if (day === today) return 'Today';
  if (Math.round((today - day) / 86_400_000) === 1) return 'Yesterday'; // round: DST days
  const d = new Date(ts);
  const sameYear = d.getFullYear() === new Date(now).getFullYear();
  return d.toLocaleDateString(undefined, {
    weekday: 'long',
    month: 'long',
    day: 'numeric',
    ...(sameYear ? {} : { year: 'numeric' }),
  });
}

export function fullTime(ts) {
  return new Date(ts).toLocaleString();
}

/** First visible character of a name, upper-cased (handles emoji and CJK). */
export function initial(name) {
  const s = String(name || '?').trim();
  const first = Array.from(s)[0] || '?';
  return first.toUpperCase();
}

/** Stable hue per id, for avatar colours. */
export function hueOf(id) {
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

export function fileSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** One-line text of a message for previews and notifications. */
export function messageSummary(msg) {
  const c = msg.content || {};
  if (msg.recalled) return 'Message recalled';
  switch (msg.type) {
    case MSG_IMAGE:
      return '📷 Photo';
    case MSG_VOICE:
      return '🎤 Voice message';
    case MSG_VIDEO:
      return '🎬 Video';
    case MSG_FILE:
      return `📎 ${c.file_name || 'File'}`;
    case MSG_CUSTOM:
      return c.text || '[Custom message]';
    case MSG_SYSTEM:
      return c.text || systemText(msg, (id) => id);
    default:
      if (c.file_id) return c.file_type === 'image' ? '📷 Photo' : `📎 ${c.file_name || 'File'}`;
      return typeof c.text === 'string' ? c.text : '';
  }
}

/** "Missed video call", "Voice call · 0:42", … for a call SYSTEM message's `content.call`
 * ({call_id, media, caller, callee, reason, duration_ms}); meId decides the point of view. */
export function callSummaryText(call, meId = '') {
  const kind = call.media === 'video' ? 'video call' : 'voice call';
  const Kind = kind[0].toUpperCase() + kind.slice(1);
  const iCalled = !!meId && call.caller === meId;
  const secs = Math.floor((Number(call.duration_ms) || 0) / 1000);
  const dur = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`;
  switch (call.reason) {
    case 'completed':
      return `${Kind} · ${dur}`;
    case 'missed':
      return iCalled ? `${Kind} · no answer` : `Missed ${kind}`;
    case 'rejected':
      return iCalled ? `${Kind} · declined` : `Declined ${kind}`;
    case 'busy':
      return `${Kind} · busy`;
    case 'cancelled':
      return iCalled ? `Cancelled ${kind}` : `Missed ${kind}`;
    case 'disconnected':
      return secs ? `${Kind} · ${dur} · connection lost` : `${Kind} · connection lost`;
    default:
      return Kind;
  }
}

/** Text for a SYSTEM message: the server's `text`, else built from `event` and `user_ids`.
 * Call outcomes (content.call) are worded from the reader's point of view. */
export function systemText(msg, nameOf, meId = '') {
  const c = msg.content || {};
  if (c.call && typeof c.call === 'object') return callSummaryText(c.call, meId);
  if (c.text) return c.text;
  const who = (c.user_ids || []).map(nameOf).join(', ');
  const ev = String(c.event || '').replace(/_/g, ' ');
  return [who, ev].filter(Boolean).join(' ') || 'System message';
}

/** Splits text into plain and http(s) link parts (rendered with textContent / <a>). */
export function linkParts(text) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/gi;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ text: m[0], href: m[0] });
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

/** Returns the URL if it is http(s) or same-origin relative, else '' (no javascript: etc). */
export function safeUrl(u) {
  if (!u) return '';
  try {
    const url = new URL(u, location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : '';
  } catch {
    return '';
  }
}
