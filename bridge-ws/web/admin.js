// The Admin page (role "admin" only; the broker answers FORBIDDEN to anyone else): users with
// search and paging (disable / enable, reset password, make admin / user, details), groups
// with search and dissolve, and server stats refreshed every few seconds while the page is open.

import { h, reconcile, showError, toast, openDialog, registerDialog } from './ui.js';
import { fileSize, fullTime, listTime } from './format.js';
import { presenceText } from './presence.js';

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 20;
const STATS_EVERY_MS = 3_000;
const CONFIRM_MS = 4_000;

function duration(ms) {
  let s = Math.floor((Number(ms) || 0) / 1000);
  const d = Math.floor(s / 86_400);
  s -= d * 86_400;
  const hrs = Math.floor(s / 3600);
  s -= hrs * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d} d ${hrs} h`;
  if (hrs) return `${hrs} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

const num = (v) => (Number(v) || 0).toLocaleString();

/** Stats shown, in order: [key, label, format]. */
const STATS = [
  ['users_online', 'Users online', num],
  ['websocket_sessions', 'WebSocket sessions', num],
  ['quic_sessions', 'QUIC sessions', num],
  ['messages_per_second', 'Messages / s', (v) => (Number(v) || 0).toLocaleString(undefined, { maximumFractionDigits: 1 })],
  ['messages_since_start', 'Messages since start', num],
  ['active_calls', 'Active calls', num],
  ['store_bytes', 'Store size', (v) => fileSize(Number(v) || 0) || '0 B'],
  ['uptime_ms', 'Uptime', duration],
  ['slow_consumer_closes', 'Slow-consumer closes', num],
];

/**
 * @param {object} deps
 * @param {object} deps.api api.js client
 * @param {object} deps.store store.js (me, the open page, re-render scheduling)
 * @param {(userId: string, info: object) => void} deps.learnUser
 */
export function createAdmin({ api, store, learnUser }) {
  const list = () => ({ items: [], after: [''], page: 0, next: '', query: '', loaded: false, loading: false });
  const st = {
    users: list(),
    groups: list(),
    stats: null,
    statsAt: 0,
    details: new Map(), // user id -> {loading, data, error}
    busy: new Set(),
    armed: new Map(),
  };
  let gen = 0;
  let statsTimer = 0;
  const changed = () => store.emit();
  const isOpen = () => store.state.page === 'admin';
  const meId = () => (store.state.me && store.state.me.user_id) || '';

  // ---------------------------------------------------------------- loading

  async function loadStats() {
    const g = gen;
    try {
      const data = await api.adminStats();
      if (g !== gen) return;
      st.stats = data || {};
      st.statsAt = Date.now();
      showError($('admin-stats-error'), '');
    } catch (e) {
      if (g !== gen) return;
      showError($('admin-stats-error'), `Could not load stats: ${e.message || e}`);
    }
    changed();
  }

  /** Loads the current page of users or groups. */
  async function loadList(kind) {
    const L = st[kind];
    const g = gen;
    L.loading = true;
    changed();
    const after = L.after[L.page] || '';
    const errEl = $(`admin-${kind}-error`);
    try {
      const data = kind === 'users'
        ? await api.adminUsers(L.query, after, PAGE_SIZE)
        : await api.adminGroups(L.query, after, PAGE_SIZE);
      if (g !== gen) return;
      L.items = (kind === 'users' ? data.users : data.groups) || [];
      L.next = data.next_after || '';
      L.loaded = true;
      showError(errEl, '');
      if (kind === 'users') for (const u of L.items) learnUser(u.user_id, { username: u.username, nickname: u.nickname });
    } catch (e) {
      if (g !== gen) return;
      showError(errEl, e.message || String(e));
    } finally {
      if (g === gen) L.loading = false;
      changed();
    }
  }

  function search(kind, query) {
    const L = st[kind];
    L.query = String(query || '').trim();
    L.after = [''];
    L.page = 0;
    loadList(kind);
  }

  function pageTo(kind, delta) {
    const L = st[kind];
    if (L.loading) return;
    if (delta > 0) {
      if (!L.next) return;
      L.after[L.page + 1] = L.next;
      L.page += 1;
    } else {
      if (L.page === 0) return;
      L.page -= 1;
    }
    loadList(kind);
  }

  function tickStats() {
    clearTimeout(statsTimer);
    statsTimer = 0;
    if (!isOpen()) return; // closed: stop until it is opened again
    if (!document.hidden) loadStats();
    statsTimer = setTimeout(tickStats, STATS_EVERY_MS);
  }

  /** The page was opened. */
  function show() {
    if (!st.users.loaded) loadList('users');
    else loadList('users'); // refresh the page we were on
    loadList('groups');
    tickStats();
  }

  function reset() {
    gen += 1;
    clearTimeout(statsTimer);
    statsTimer = 0;
    st.users = list();
    st.groups = list();
    st.stats = null;
    st.statsAt = 0;
    st.details.clear();
    st.busy.clear();
    st.armed.clear();
    for (const id of ['admin-user-form', 'admin-group-form']) $(id)?.reset();
  }

  // ---------------------------------------------------------------- actions

  async function run(key, fn, reload) {
    if (st.busy.has(key)) return;
    st.busy.add(key);
    changed();
    try {
      await fn();
    } catch (e) {
      toast(e.message || String(e), 'error');
    } finally {
      st.busy.delete(key);
      changed();
    }
    if (reload) await reload();
  }

  function armed(key) {
    return (st.armed.get(key) || 0) > Date.now();
  }

  function confirmed(key) {
    if (armed(key)) {
      st.armed.delete(key);
      return true;
    }
    st.armed.set(key, Date.now() + CONFIRM_MS);
    setTimeout(changed, CONFIRM_MS + 50);
    changed();
    return false;
  }

  const userById = (id) => st.users.items.find((u) => u.user_id === id);
  const label = (u) => (u ? `${u.nickname || u.username} (@${u.username})` : 'the user');

  async function toggleDetails(userId) {
    if (st.details.has(userId)) {
      st.details.delete(userId);
      changed();
      return;
    }
    st.details.set(userId, { loading: true });
    changed();
    try {
      const data = await api.adminUser(userId);
      st.details.set(userId, { data });
    } catch (e) {
      st.details.set(userId, { error: e.message || String(e) });
    }
    changed();
  }

  function onUserAction(action, userId) {
    const u = userById(userId);
    const reloadUsers = async () => {
      await loadList('users');
      if (st.details.has(userId)) {
        st.details.delete(userId);
        toggleDetails(userId);
      }
    };
    switch (action) {
      case 'disable':
        if (!confirmed(`disable:${userId}`)) return;
        run(`disable:${userId}`, async () => {
          await api.adminSetDisabled(userId, true);
          toast(`${label(u)} is disabled; their sessions were closed.`);
        }, reloadUsers);
        break;
      case 'enable':
        run(`enable:${userId}`, async () => {
          await api.adminSetDisabled(userId, false);
          toast(`${label(u)} is enabled again.`);
        }, reloadUsers);
        break;
      case 'make-admin':
      case 'make-user': {
        const role = action === 'make-admin' ? 'admin' : 'user';
        if (!confirmed(`${action}:${userId}`)) return;
        run(`${action}:${userId}`, async () => {
          await api.adminSetRole(userId, role);
          toast(`${label(u)} is now ${role === 'admin' ? 'an admin' : 'a regular user'}.`);
        }, reloadUsers);
        break;
      }
      case 'password': {
        const dlg = $('dlg-admin-password');
        openDialog('dlg-admin-password');
        dlg.dataset.userId = userId;
        $('dlg-admin-password-who').textContent = `For ${label(u)}. Their tokens are revoked and their sessions closed: they sign in again with the new password.`;
        break;
      }
      case 'details':
        toggleDetails(userId);
        break;
      default:
    }
  }

  function onGroupAction(action, groupId) {
    if (action !== 'dissolve') return;
    if (!confirmed(`dissolve:${groupId}`)) return;
    const g = st.groups.items.find((x) => x.group_id === groupId);
    run(`dissolve:${groupId}`, async () => {
      await api.adminDissolveGroup(groupId);
      toast(`Group “${(g && g.name) || groupId}” dissolved.`);
    }, () => loadList('groups'));
  }

  // ---------------------------------------------------------------- DOM

  function init() {
    $('admin-user-form').addEventListener('submit', (e) => {
      e.preventDefault();
      search('users', e.currentTarget.elements.query.value);
    });
    $('admin-group-form').addEventListener('submit', (e) => {
      e.preventDefault();
      search('groups', e.currentTarget.elements.query.value);
    });
    $('admin-users-prev').addEventListener('click', () => pageTo('users', -1));
    $('admin-users-next').addEventListener('click', () => pageTo('users', 1));
    $('admin-groups-prev').addEventListener('click', () => pageTo('groups', -1));
    $('admin-groups-next').addEventListener('click', () => pageTo('groups', 1));
    $('admin-users').addEventListener('click', (e) => {
      const btn = e.target.closest('button[data-user-action]');
      if (btn && !btn.disabled) onUserAction(btn.dataset.userAction, btn.dataset.userId);
    });
    $('admin-groups').addEventListener('click', (e) => {
      const btn = e.target.closest('button[data-group-action]');
      if (btn && !btn.disabled) onGroupAction(btn.dataset.groupAction, btn.dataset.groupId);
    });
    registerDialog('dlg-admin-password', async (f, dlg) => {
      const pw = f.password.value;
      if (!pw) return 'Enter the new password.';
      const userId = dlg.dataset.userId;
      try {
        await api.adminResetPassword(userId, pw);
      } catch (e) {
        return e.message || String(e);
      }
      toast(`Password of ${label(userById(userId))} reset.`);
      loadList('users');
      return null;
    });
  }

  function userButton(action, userId, text, { cls = 'btn btn-small', armedText, testid } = {}) {
    const key = `${action}:${userId}`;
    const isArmed = armedText && armed(key);
    return h(
      'button',
      {
        type: 'button',
        class: `${cls}${isArmed ? ' armed' : ''}`,
        'data-user-action': action,
        'data-user-id': userId,
        'data-testid': testid || `admin-user-${action}`,
        disabled: st.busy.has(key),
      },
      isArmed ? armedText : text,
    );
  }

  function renderStats() {
    const dl = $('admin-stats');
    const s = st.stats;
    if (dl.dataset.at === String(st.statsAt)) return; // unchanged since the last render
    dl.dataset.at = String(st.statsAt);
    dl.replaceChildren();
    if (!s) {
      dl.append(h('div', { class: 'muted' }, 'Loading…'));
      return;
    }
    for (const [key, text, fmt] of STATS) {
      dl.append(
        h('div', { class: 'stat', 'data-testid': 'admin-stat', 'data-stat': key }, h('dt', {}, text), h('dd', {}, key in s ? fmt(s[key]) : '—')),
      );
    }
    $('admin-stats-updated').textContent = st.statsAt ? `Updated ${new Date(st.statsAt).toLocaleTimeString()}` : '';
  }

  function detailsRow(userId) {
    const d = st.details.get(userId);
    let body;
    if (!d || d.loading) body = h('span', { class: 'muted' }, 'Loading…');
    else if (d.error) body = h('span', { class: 'form-error inline' }, d.error);
    else {
      const devs = d.data.devices || [];
      const now = Date.now();
      body = h(
        'div',
        { class: 'details' },
        h('div', {}, `Member of ${Number(d.data.groups) || 0} group${Number(d.data.groups) === 1 ? '' : 's'} · user id `, h('code', {}, userId)),
        devs.length
          ? h(
              'ul',
              { class: 'mini-list' },
              devs.map((dv) =>
                h(
                  'li',
                  { 'data-testid': 'admin-user-device' },
                  h('code', {}, dv.device_id),
                  ` · ${dv.transport || '?'} · ${dv.client_version || ''} · `,
                  dv.online ? h('span', { class: 'presence-text online' }, 'online') : presenceText({ online: false, lastSeen: Number(dv.last_seen) || 0 }, now),
                ),
              ),
            )
          : h('div', { class: 'muted' }, 'No devices recorded.'),
      );
    }
    return h('tr', { class: 'details-row', 'data-testid': 'admin-user-details-row' }, h('td', { colspan: '6' }, body));
  }

  function renderUsers() {
    const L = st.users;
    const now = Date.now();
    const rows = [];
    for (const u of L.items) {
      const id = u.user_id;
      const self = id === meId();
      const status = u.disabled ? 'disabled' : u.online ? 'online' : 'offline';
      const statusText = u.disabled
        ? 'Disabled'
        : u.online
          ? `Online · ${Number(u.sessions) || 0} session${Number(u.sessions) === 1 ? '' : 's'}`
          : 'Offline';
      const busy = [...st.busy].filter((k) => k.endsWith(`:${id}`)).join();
      const arm = ['disable', 'make-admin', 'make-user'].filter((a) => armed(`${a}:${id}`)).join();
      rows.push({
        key: `u:${id}`,
        sig: [u.username, u.nickname, u.role, u.disabled, u.online, u.sessions, u.last_seen, u.created_at, busy, arm, st.details.has(id)].join('\u0001'),
        build: () =>
          h(
            'tr',
            {
              class: `user-row${u.disabled ? ' is-disabled' : ''}`,
              'data-testid': 'admin-user-row',
              'data-user-id': id,
              'data-username': u.username || '',
              'data-disabled': u.disabled ? 'true' : 'false',
              'data-role': u.role || 'user',
            },
            h(
              'td',
              {},
              h('div', { class: 'row-title' }, u.nickname || u.username, self ? h('span', { class: 'tag' }, 'you') : null),
              h('div', { class: 'row-sub' }, `@${u.username}`),
            ),
            h('td', {}, h('span', { class: `tag${u.role === 'admin' ? ' accent' : ''}`, 'data-testid': 'admin-user-role-label' }, u.role || 'user')),
            h('td', {}, h('span', { class: `status-pill ${status}`, 'data-testid': 'admin-user-status' }, statusText)),
            h('td', { title: u.created_at ? fullTime(u.created_at) : '' }, u.created_at ? listTime(u.created_at, now) : '—'),
            h('td', { title: u.last_seen ? fullTime(u.last_seen) : '' }, u.online ? 'now' : u.last_seen ? listTime(u.last_seen, now) : '—'),
            h(
              'td',
              { class: 'cell-actions' },
              self
                ? null
                : u.disabled
                  ? userButton('enable', id, 'Enable', { cls: 'btn btn-small btn-primary' })
                  : userButton('disable', id, 'Disable', { cls: 'btn btn-small btn-ghost-danger', armedText: 'Really disable?' }),
              userButton('password', id, 'Reset password'),
              self
                ? null
                : u.role === 'admin'
                  ? userButton('make-user', id, 'Make user', { armedText: 'Really make user?', testid: 'admin-user-role' })
                  : userButton('make-admin', id, 'Make admin', { armedText: 'Really make admin?', testid: 'admin-user-role' }),
              userButton('details', id, st.details.has(id) ? 'Hide' : 'Details', { cls: 'btn btn-small btn-ghost' }),
            ),
          ),
      });
      if (st.details.has(id)) {
        const d = st.details.get(id);
        rows.push({
          key: `d:${id}`,
          sig: d.loading ? 'loading' : d.error ? `e:${d.error}` : JSON.stringify(d.data),
          build: () => detailsRow(id),
        });
      }
    }
    reconcile($('admin-users'), rows);
    $('admin-users-empty').hidden = !L.loaded || L.items.length > 0;
    $('admin-users-prev').disabled = L.page === 0 || L.loading;
    $('admin-users-next').disabled = !L.next || L.loading;
    $('admin-users-page').textContent = L.loaded ? `Page ${L.page + 1}${L.query ? ` · “${L.query}”` : ''}` : 'Loading…';
  }

  function renderGroups() {
    const L = st.groups;
    const now = Date.now();
    reconcile(
      $('admin-groups'),
      L.items.map((g) => {
        const id = g.group_id;
        const isArmed = armed(`dissolve:${id}`);
        const busy = st.busy.has(`dissolve:${id}`);
        return {
          key: id,
          sig: [g.name, g.member_count, g.dissolved, g.owner_id, g.join_mode, isArmed, busy].join('\u0001'),
          build: () =>
            h(
              'li',
              { class: 'row', 'data-testid': 'admin-group-row', 'data-group-id': id, 'data-dissolved': g.dissolved ? 'true' : 'false' },
              h('div', { class: 'avatar group md', style: '--hue:200', 'aria-hidden': 'true' }, (g.name || '#').slice(0, 1).toUpperCase()),
              h(
                'div',
                { class: 'row-main' },
                h('div', { class: 'row-title' }, g.name || id, g.dissolved ? h('span', { class: 'tag danger', 'data-testid': 'admin-group-dissolved' }, 'dissolved') : null),
                h(
                  'div',
                  { class: 'row-sub' },
                  h('code', {}, id),
                  ` · ${Number(g.member_count) || 0} member${Number(g.member_count) === 1 ? '' : 's'}`,
                  g.join_mode ? ` · ${g.join_mode.replace('_', ' ')}` : '',
                  g.owner_id ? ` · owner ${store.userName(g.owner_id)}` : '',
                  g.created_at ? h('span', { title: fullTime(g.created_at) }, ` · created ${listTime(g.created_at, now)}`) : null,
                ),
              ),
              g.dissolved
                ? null
                : h(
                    'div',
                    { class: 'row-actions' },
                    h(
                      'button',
                      {
                        type: 'button',
                        class: `btn btn-small btn-ghost-danger${isArmed ? ' armed' : ''}`,
                        'data-group-action': 'dissolve',
                        'data-group-id': id,
                        'data-testid': 'admin-group-dissolve',
                        disabled: busy,
                      },
                      isArmed ? 'Really dissolve?' : 'Dissolve',
                    ),
                  ),
            ),
        };
      }),
    );
    $('admin-groups-empty').hidden = !L.loaded || L.items.length > 0;
    $('admin-groups-prev').disabled = L.page === 0 || L.loading;
    $('admin-groups-next').disabled = !L.next || L.loading;
    $('admin-groups-page').textContent = L.loaded ? `Page ${L.page + 1}${L.query ? ` · “${L.query}”` : ''}` : '';
  }

  function render() {
    if (!isOpen()) return;
    renderStats();
    renderUsers();
    renderGroups();
  }

  return { init, render, show, reset };
}
