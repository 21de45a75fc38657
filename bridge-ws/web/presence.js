// Presence of other users: online / last seen, per user id. No DOM and no I/O (app.js feeds
// it from GET /api/presence and WebSocket type-34 pushes; ui.js reads it).
//
// Pushes can arrive out of order (the broker sends them as QUIC datagrams to native clients,
// and a REST answer can cross a push): every entry carries the broker's `version`, and an
// older version never overwrites a newer one.

import { clockTime, startOfDay } from './format.js';

/**
 * @param {() => void} onChange called after an update that changed something
 */
export function createPresence(onChange = () => {}) {
  const users = new Map(); // user id -> {online, lastSeen, devices, version}

  /** Applies one presence object ({user_id, online, last_seen, devices, version}); returns
   * true if it was newer than what we had and changed the entry. */
  function apply(p, { notify = true } = {}) {
    if (!p || !p.user_id) return false;
    const version = Number(p.version) || 0;
    const prev = users.get(p.user_id);
    if (prev && version && prev.version > version) return false; // stale
    const next = {
      online: !!p.online,
      lastSeen: Number(p.last_seen) || 0,
      devices: Number(p.devices) || 0,
      version: Math.max(version, prev ? prev.version : 0),
    };
    if (prev && prev.online === next.online && prev.lastSeen === next.lastSeen && prev.devices === next.devices) {
      prev.version = next.version;
      return false;
    }
    users.set(p.user_id, next);
    if (notify) onChange();
    return true;
  }

  /** Applies a list (a REST answer); one change notification at the end. */
  function applyAll(list) {
    let changed = false;
    for (const p of list || []) changed = apply(p, { notify: false }) || changed;
    if (changed) onChange();
    return changed;
  }

  /** The entry for a user, or null if unknown. */
  function get(userId) {
    return users.get(userId) || null;
  }

  function has(userId) {
    return users.has(userId);
  }

  function clear() {
    users.clear();
  }

  return { apply, applyAll, get, has, clear };
}

/** "online", "last seen just now", "last seen 5 min ago", "last seen today at 14:05",
 * "last seen yesterday at 09:12", "last seen 3 Jun"; '' when nothing is known. */
export function presenceText(p, now = Date.now()) {
  if (!p) return '';
  if (p.online) return 'online';
  const ts = p.lastSeen;
  if (!ts) return 'offline';
  const ago = Math.max(0, now - ts);
  if (ago < 60_000) return 'last seen just now';
  if (ago < 3_600_000) return `last seen ${Math.floor(ago / 60_000)} min ago`;
  const today = startOfDay(now);
  const day = startOfDay(ts);
  if (day === today) return `last seen today at ${clockTime(ts)}`;
  if (Math.round((today - day) / 86_400_000) === 1) return `last seen yesterday at ${clockTime(ts)}`;
  const d = new Date(ts);
  const sameYear = d.getFullYear() === new Date(now).getFullYear();
  return `last seen ${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', ...(sameYear ? {} : { year: 'numeric' }) })}`;
}
