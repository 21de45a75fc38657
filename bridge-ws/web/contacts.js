// The Contacts page: friends (with presence and a "message" action), friend requests in and
// out, adding friends by username, blocking, and the "only friends can message me" setting.
// Owns its state and its part of the DOM (#contacts-view); app.js feeds it the WebSocket
// contact events (type 70) and calls refresh() when the connection (re)opens, since events
// sent while we were away are lost.

import { h, reconcile, avatar, presenceDot, showError, toast } from './ui.js';
import { presenceText } from './presence.js';
import { fullTime, listTime } from './format.js';
import { ApiError } from './api.js';

const $ = (id) => document.getElementById(id);
const CONFIRM_MS = 4_000; // a destructive button stays armed ("Really remove?") this long

/** Event names of the type-70 push (numbers: the proto's ContactEventKind). */
const EVENT_NAMES = { 1: 'request_received', 2: 'request_accepted', 3: 'request_cancelled', 4: 'friend_removed' };

/**
 * @param {object} deps
 * @param {object} deps.api api.js client
 * @param {object} deps.store store.js (for me, names, the open page and re-render scheduling)
 * @param {object} deps.presence presence.js
 * @param {(userId: string, info: object) => void} deps.learnUser remember a user's names
 * @param {(user: {user_id, username, nickname}) => void} deps.openChat open the 1:1 chat
 * @param {(userIds: string[]) => void} deps.fetchPresence presence (with versions) by REST
 * @param {() => void} [deps.onSettingsTab] the "Privacy & devices" tab was opened
 */
export function createContacts({ api, store, presence, learnUser, openChat, fetchPresence, onSettingsTab = () => {} }) {
  const st = {
    friends: [],
    incoming: [],
    outgoing: [],
    blocked: [],
    settings: { friends_only_dm: false },
    loaded: { friends: false, requests: false, blocked: false, settings: false },
    tab: 'people',
    busy: new Set(), // "action:userId" in flight
    armed: new Map(), // "action:userId" -> ms until which the confirm click counts
  };
  const changed = () => store.emit();
  let gen = 0; // bumped on reset: answers for a previous session are dropped

  const meId = () => (store.state.me && store.state.me.user_id) || '';
  const nameOf = (u) => u.nickname || u.username || u.user_id;

  // ---------------------------------------------------------------- loading

  async function loadFriends() {
    const g = gen;
    const data = await api.friends();
    if (g !== gen) return;
    st.friends = (data.friends || []).slice();
    st.loaded.friends = true;
    const unknown = [];
    for (const f of st.friends) {
      learnUser(f.user_id, { username: f.username, nickname: f.nickname });
      // The list carries presence without a version: only seed users we know nothing about,
      // then ask /api/presence (versioned) so later pushes order correctly.
      if (!presence.has(f.user_id)) {
        presence.apply({ user_id: f.user_id, online: !!f.online, last_seen: Number(f.last_seen) || 0, version: 0 }, { notify: false });
      }
      unknown.push(f.user_id);
    }
    if (unknown.length) fetchPresence(unknown);
    changed();
  }

  async function loadRequests() {
    const g = gen;
    const data = await api.contactRequests();
    if (g !== gen) return;
    st.incoming = data.incoming || [];
    st.outgoing = data.outgoing || [];
    st.loaded.requests = true;
    for (const r of st.incoming) learnUser(r.from_user_id, { username: r.username, nickname: r.nickname });
    for (const r of st.outgoing) learnUser(r.to_user_id, { username: r.username, nickname: r.nickname });
    changed();
  }

  async function loadBlocked() {
    const g = gen;
    const data = await api.blocked();
    if (g !== gen) return;
    st.blocked = data.blocked || [];
    st.loaded.blocked = true;
    changed();
  }

  async function loadSettings() {
    const g = gen;
    const data = await api.contactSettings();
    if (g !== gen) return;
    st.settings = { friends_only_dm: !!data.friends_only_dm };
    st.loaded.settings = true;
    changed();
  }

  /** Everything, in parallel; one readable error on the page if something fails. */
  async function refresh() {
    const results = await Promise.allSettled([loadFriends(), loadRequests(), loadBlocked(), loadSettings()]);
    const failed = results.find((r) => r.status === 'rejected');
    const errEl = $('contacts-error');
    if (failed && errEl) showError(errEl, `Could not load contacts: ${failed.reason && failed.reason.message}`);
    else if (errEl) showError(errEl, '');
  }

  function reset() {
    gen += 1;
    st.friends = [];
    st.incoming = [];
    st.outgoing = [];
    st.blocked = [];
    st.settings = { friends_only_dm: false };
    st.loaded = { friends: false, requests: false, blocked: false, settings: false };
    st.tab = 'people';
    st.busy.clear();
    st.armed.clear();
    for (const id of ['contacts-add-error', 'contacts-block-error', 'contacts-error']) showError($(id), '');
    const add = $('contacts-add-form');
    if (add) add.reset();
    renderBadge();
  }

  /** The page was opened. */
  function show() {
    refresh();
    if (st.tab === 'settings') onSettingsTab();
  }

  // ---------------------------------------------------------------- live events

  /** WebSocket type 70: {event, user_id, username, nickname, message}. */
  function onEvent(f) {
    const ev = String(EVENT_NAMES[f.event] || f.event || '').toLowerCase();
    if (f.user_id) learnUser(f.user_id, { username: f.username, nickname: f.nickname });
    const who = f.nickname || f.username || 'Someone';
    if (ev === 'request_received') {
      toast(f.message ? `${who} sent you a friend request: “${f.message}”` : `${who} sent you a friend request.`);
      loadRequests().catch(() => {});
    } else if (ev === 'request_accepted') {
      toast(`${who} accepted your friend request.`);
      loadFriends().catch(() => {});
      loadRequests().catch(() => {});
    } else if (ev === 'request_cancelled') {
      loadRequests().catch(() => {});
    } else if (ev === 'friend_removed') {
      loadFriends().catch(() => {});
    } else {
      refresh(); // an event this client does not know: resync
    }
  }

  // ---------------------------------------------------------------- queries for app.js

  function isBlocked(userId) {
    return st.blocked.some((b) => b.user_id === userId);
  }

  function isFriend(userId) {
    return st.friends.some((f) => f.user_id === userId);
  }

  // ---------------------------------------------------------------- actions

  /** Runs an action once at a time per key, with a readable error toast on failure. */
  async function run(key, fn, { after = [] } = {}) {
    if (st.busy.has(key)) return;
    st.busy.add(key);
    changed();
    try {
      await fn();
    } catch (e) {
      toast(e && e.message ? e.message : String(e), 'error');
    } finally {
      st.busy.delete(key);
      changed();
    }
    await Promise.allSettled(after.map((load) => load()));
  }

  /** Two-step destructive buttons: the first click arms, a second within CONFIRM_MS acts. */
  function confirmed(key) {
    const until = st.armed.get(key) || 0;
    if (until > Date.now()) {
      st.armed.delete(key);
      return true;
    }
    st.armed.set(key, Date.now() + CONFIRM_MS);
    setTimeout(() => {
      if ((st.armed.get(key) || 0) <= Date.now()) {
        st.armed.delete(key);
        changed();
      }
    }, CONFIRM_MS + 50);
    changed();
    return false;
  }

  function friendById(id) {
    return st.friends.find((f) => f.user_id === id);
  }

  function onAction(action, userId) {
    const f = friendById(userId);
    switch (action) {
      case 'message': {
        const u = f || { user_id: userId };
        openChat({ user_id: userId, username: u.username, nickname: u.nickname });
        break;
      }
      case 'block':
        run(`block:${userId}`, () => api.block(userId), { after: [loadBlocked, loadFriends, loadRequests] });
        break;
      case 'unblock':
        run(`unblock:${userId}`, () => api.unblock(userId), { after: [loadBlocked, loadFriends] });
        break;
      case 'remove':
        if (!confirmed(`remove:${userId}`)) return;
        run(`remove:${userId}`, () => api.deleteFriend(userId), { after: [loadFriends] });
        break;
      case 'accept':
        run(`accept:${userId}`, async () => {
          await api.acceptContactRequest(userId);
          const r = st.incoming.find((x) => x.from_user_id === userId);
          toast(`You are now friends with ${r ? nameOf({ ...r, user_id: userId }) : 'them'}.`);
        }, { after: [loadRequests, loadFriends] });
        break;
      case 'add': {
        // From the chat's contact bar: a request without a message.
        run(`add:${userId}`, async () => {
          const res = await api.sendContactRequest(userId, '');
          const name = store.userName(userId);
          toast(res && res.now_friends ? `You are now friends with ${name}.` : `Friend request sent to ${name}.`);
        }, { after: [loadRequests, loadFriends] });
        break;
      }
      case 'reject':
        run(`reject:${userId}`, () => api.rejectContactRequest(userId), { after: [loadRequests] });
        break;
      case 'cancel':
        run(`cancel:${userId}`, () => api.cancelContactRequest(userId), { after: [loadRequests] });
        break;
      default:
    }
  }

  /** Looks a username up; returns the user or throws an Error with a readable text. */
  async function lookup(raw) {
    const username = String(raw || '').trim().replace(/^@/, '');
    if (!username) throw new Error('Enter a username.');
    let user;
    try {
      user = await api.userByUsername(username);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) throw new Error(`No user named “${username}”.`);
      throw e;
    }
    if (user.user_id === meId()) throw new Error('That is you — pick someone else.');
    learnUser(user.user_id, user);
    return user;
  }

  async function onAddFriend(form) {
    const errEl = $('contacts-add-error');
    showError(errEl, '');
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const user = await lookup(form.elements.username.value);
      if (isFriend(user.user_id)) throw new Error(`${nameOf(user)} is already your friend.`);
      const res = await api.sendContactRequest(user.user_id, form.elements.message.value.trim());
      form.reset();
      if (res && res.now_friends) toast(`You are now friends with ${nameOf(user)}.`);
      else toast(`Friend request sent to ${nameOf(user)}.`);
      await Promise.allSettled([loadRequests(), loadFriends()]);
    } catch (e) {
      showError(errEl, e.message || String(e));
    } finally {
      btn.disabled = false;
    }
  }

  async function onBlockUsername(form) {
    const errEl = $('contacts-block-error');
    showError(errEl, '');
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const user = await lookup(form.elements.username.value);
      await api.block(user.user_id);
      form.reset();
      toast(`${nameOf(user)} is blocked.`);
      await Promise.allSettled([loadBlocked(), loadFriends(), loadRequests()]);
    } catch (e) {
      showError(errEl, e.message || String(e));
    } finally {
      btn.disabled = false;
    }
  }

  async function onFriendsOnly(input) {
    const want = input.checked;
    input.disabled = true;
    try {
      const data = await api.setContactSettings({ friends_only_dm: want });
      st.settings = { friends_only_dm: data && 'friends_only_dm' in data ? !!data.friends_only_dm : want };
      toast(st.settings.friends_only_dm ? 'Only friends can message you now.' : 'Anyone can message you now.');
    } catch (e) {
      toast(e.message || String(e), 'error');
    } finally {
      input.disabled = false;
      changed();
    }
  }

  function setTab(tab) {
    st.tab = tab;
    if (tab === 'settings') {
      loadSettings().catch(() => {});
      onSettingsTab();
    }
    changed();
  }

  // ---------------------------------------------------------------- DOM

  function init() {
    $('contacts-add-form').addEventListener('submit', (e) => {
      e.preventDefault();
      onAddFriend(e.currentTarget);
    });
    $('contacts-block-form').addEventListener('submit', (e) => {
      e.preventDefault();
      onBlockUsername(e.currentTarget);
    });
    $('contacts-friends-only').addEventListener('change', (e) => onFriendsOnly(e.currentTarget));
    for (const tab of document.querySelectorAll('#contacts-view [data-tab]')) {
      tab.addEventListener('click', () => setTab(tab.dataset.tab));
    }
    for (const id of ['contacts-view', 'contact-bar']) {
      $(id).addEventListener('click', (e) => {
        const btn = e.target.closest('button[data-action]');
        if (btn && !btn.disabled) onAction(btn.dataset.action, btn.dataset.userId);
      });
    }
  }

  function actionButton(action, userId, label, { cls = 'btn btn-small', testid, armedLabel } = {}) {
    const key = `${action}:${userId}`;
    const armed = (st.armed.get(key) || 0) > Date.now();
    return h(
      'button',
      {
        type: 'button',
        class: `${cls}${armed ? ' armed' : ''}`,
        'data-action': action,
        'data-user-id': userId,
        'data-testid': testid || `contact-${action}`,
        disabled: st.busy.has(key),
      },
      armed && armedLabel ? armedLabel : label,
    );
  }

  function personCell(u, sub, pres) {
    const name = nameOf(u);
    return [
      h('div', { class: 'avatar-wrap' }, avatar(name, u.user_id, 'md'), pres ? presenceDot(pres, presenceText(pres)) : null),
      h(
        'div',
        { class: 'row-main' },
        h('div', { class: 'row-title', 'data-testid': 'contact-name' }, name),
        h('div', { class: 'row-sub' }, ...sub),
      ),
    ];
  }

  function renderBadge() {
    const badge = $('contacts-badge');
    if (!badge) return;
    const n = st.incoming.length;
    badge.hidden = n === 0;
    badge.textContent = n > 99 ? '99+' : String(n);
    badge.setAttribute('aria-label', `${n} friend request${n === 1 ? '' : 's'}`);
    $('nav-contacts').title = n ? `Contacts — ${n} friend request${n === 1 ? '' : 's'}` : 'Contacts';
  }

  /** The bar above the composer of a 1:1 chat with someone who is not simply a friend:
   * blocked by me (unblock), asking to be my friend (accept), asked by me (waiting), or a
   * stranger (add friend, block). */
  function renderContactBar() {
    const bar = $('contact-bar');
    if (!bar) return;
    const conv = !store.state.page && store.state.active && store.state.convs.get(store.state.active);
    const peer = conv && conv.type === 1 ? conv.peerId : '';
    let sig = '';
    let build = null;
    const loaded = st.loaded.friends && st.loaded.requests && st.loaded.blocked;
    if (peer && loaded) {
      const name = store.userName(peer);
      const busy = [...st.busy].filter((k) => k.endsWith(`:${peer}`)).join();
      if (isBlocked(peer)) {
        sig = `blocked|${peer}|${name}|${busy}`;
        build = () => [
          h('span', { class: 'contact-bar-text' }, `You blocked ${name}. Neither of you can message the other until you unblock.`),
          actionButton('unblock', peer, 'Unblock', { testid: 'contact-bar-unblock' }),
        ];
      } else if (!isFriend(peer)) {
        const inReq = st.incoming.find((r) => r.from_user_id === peer);
        const outReq = st.outgoing.find((r) => r.to_user_id === peer);
        if (inReq) {
          sig = `in|${peer}|${name}|${inReq.message}|${busy}`;
          build = () => [
            h('span', { class: 'contact-bar-text' }, `${name} wants to be your friend${inReq.message ? `: “${inReq.message}”` : '.'}`),
            actionButton('accept', peer, 'Accept', { cls: 'btn btn-small btn-primary', testid: 'contact-bar-accept' }),
            actionButton('reject', peer, 'Decline', { testid: 'contact-bar-reject' }),
          ];
        } else if (outReq) {
          sig = `out|${peer}|${name}|${busy}`;
          build = () => [h('span', { class: 'contact-bar-text' }, `Friend request sent — waiting for ${name}.`)];
        } else {
          sig = `stranger|${peer}|${name}|${busy}`;
          build = () => [
            h('span', { class: 'contact-bar-text' }, `${name} is not in your contacts.`),
            actionButton('add', peer, 'Add friend', { cls: 'btn btn-small btn-primary', testid: 'contact-bar-add' }),
            actionButton('block', peer, 'Block', { cls: 'btn btn-small btn-ghost-danger', testid: 'contact-bar-block' }),
          ];
        }
      }
    }
    if (bar.dataset.sig === sig) return;
    bar.dataset.sig = sig;
    bar.dataset.state = sig.split('|')[0];
    bar.replaceChildren(...(build ? build() : []));
    bar.hidden = !build;
  }

  function render() {
    renderBadge();
    renderContactBar();
    if (store.state.page !== 'contacts') return;
    const now = Date.now();

    // Tabs
    for (const tab of document.querySelectorAll('#contacts-view [data-tab]')) {
      tab.setAttribute('aria-selected', tab.dataset.tab === st.tab ? 'true' : 'false');
      tab.classList.toggle('active', tab.dataset.tab === st.tab);
    }
    for (const panel of document.querySelectorAll('#contacts-view [data-tab-panel]')) {
      panel.hidden = panel.dataset.tabPanel !== st.tab;
    }

    // Incoming requests
    $('contacts-incoming-count').textContent = st.incoming.length ? String(st.incoming.length) : '';
    $('contacts-incoming-empty').hidden = !st.loaded.requests || st.incoming.length > 0;
    reconcile(
      $('contacts-incoming'),
      st.incoming.map((r) => {
        const id = r.from_user_id;
        const u = { user_id: id, username: r.username, nickname: r.nickname };
        const busy = ['accept', 'reject', 'block'].map((a) => st.busy.has(`${a}:${id}`)).join();
        return {
          key: `in:${id}`,
          sig: [r.message, r.requested_at, nameOf(u), r.username, busy].join('\u0001'),
          build: () =>
            h(
              'li',
              { class: 'row', 'data-testid': 'request-row', 'data-direction': 'incoming', 'data-user-id': id, 'data-username': r.username || '' },
              ...personCell(u, [
                r.username ? `@${r.username}` : '',
                r.requested_at ? h('time', { title: fullTime(r.requested_at) }, ` · ${listTime(r.requested_at, now)}`) : null,
                r.message ? h('div', { class: 'request-message', 'data-testid': 'request-message' }, `“${r.message}”`) : null,
              ]),
              h(
                'div',
                { class: 'row-actions' },
                actionButton('accept', id, 'Accept', { cls: 'btn btn-small btn-primary', testid: 'request-accept' }),
                actionButton('reject', id, 'Decline', { testid: 'request-reject' }),
                actionButton('block', id, 'Block', { cls: 'btn btn-small btn-ghost-danger', testid: 'request-block' }),
              ),
            ),
        };
      }),
    );

    // Outgoing requests
    $('contacts-outgoing-title').hidden = st.outgoing.length === 0;
    reconcile(
      $('contacts-outgoing'),
      st.outgoing.map((r) => {
        const id = r.to_user_id;
        const u = { user_id: id, username: r.username, nickname: r.nickname };
        return {
          key: `out:${id}`,
          sig: [r.message, r.requested_at, nameOf(u), st.busy.has(`cancel:${id}`)].join('\u0001'),
          build: () =>
            h(
              'li',
              { class: 'row', 'data-testid': 'request-row', 'data-direction': 'outgoing', 'data-user-id': id, 'data-username': r.username || '' },
              ...personCell(u, [
                'Waiting for an answer',
                r.message ? h('div', { class: 'request-message', 'data-testid': 'request-message' }, `“${r.message}”`) : null,
              ]),
              h('div', { class: 'row-actions' }, actionButton('cancel', id, 'Cancel request', { testid: 'request-cancel' })),
            ),
        };
      }),
    );

    // Friends: online first, then by name.
    const friends = st.friends
      .map((f) => {
        const p = presence.get(f.user_id) || { online: !!f.online, lastSeen: Number(f.last_seen) || 0 };
        return { f, p };
      })
      .sort((a, b) => Number(b.p.online) - Number(a.p.online) || nameOf(a.f).localeCompare(nameOf(b.f)));
    $('contacts-friends-count').textContent = st.friends.length ? String(st.friends.length) : '';
    $('contacts-friends-empty').hidden = !st.loaded.friends || st.friends.length > 0;
    reconcile(
      $('contacts-friends'),
      friends.map(({ f, p }) => {
        const id = f.user_id;
        const blocked = isBlocked(id) || !!f.blocked;
        const pt = presenceText(p, now);
        const armed = (st.armed.get(`remove:${id}`) || 0) > now;
        const busy = ['block', 'unblock', 'remove'].map((a) => st.busy.has(`${a}:${id}`)).join();
        return {
          key: `f:${id}`,
          sig: [nameOf(f), f.username, pt, p.online, blocked, armed, busy].join('\u0001'),
          build: () =>
            h(
              'li',
              {
                class: `row${blocked ? ' is-blocked' : ''}`,
                'data-testid': 'friend-row',
                'data-user-id': id,
                'data-username': f.username || '',
                'data-online': p.online ? 'true' : 'false',
                'data-blocked': blocked ? 'true' : 'false',
              },
              ...personCell(f, [
                f.username ? `@${f.username}` : '',
                h('span', { class: `presence-text${p.online ? ' online' : ''}`, 'data-testid': 'friend-presence' }, pt ? ` · ${pt}` : ''),
                blocked ? h('span', { class: 'tag danger' }, 'Blocked') : null,
              ], p),
              h(
                'div',
                { class: 'row-actions' },
                actionButton('message', id, 'Message', { cls: 'btn btn-small btn-primary', testid: 'friend-message' }),
                blocked
                  ? actionButton('unblock', id, 'Unblock', { testid: 'friend-unblock' })
                  : actionButton('block', id, 'Block', { testid: 'friend-block' }),
                actionButton('remove', id, 'Remove', { cls: 'btn btn-small btn-ghost-danger', testid: 'friend-remove', armedLabel: 'Really remove?' }),
              ),
            ),
        };
      }),
    );

    // Blocked
    $('contacts-blocked-empty').hidden = !st.loaded.blocked || st.blocked.length > 0;
    reconcile(
      $('contacts-blocked'),
      st.blocked.map((b) => {
        const id = b.user_id;
        return {
          key: `b:${id}`,
          sig: [nameOf(b), b.username, b.blocked_at, st.busy.has(`unblock:${id}`)].join('\u0001'),
          build: () =>
            h(
              'li',
              { class: 'row', 'data-testid': 'blocked-row', 'data-user-id': id, 'data-username': b.username || '' },
              ...personCell(b, [
                b.username ? `@${b.username}` : '',
                b.blocked_at ? h('time', { title: fullTime(b.blocked_at) }, ` · blocked ${listTime(b.blocked_at, now)}`) : null,
              ]),
              h('div', { class: 'row-actions' }, actionButton('unblock', id, 'Unblock', { testid: 'blocked-unblock' })),
            ),
        };
      }),
    );

    // Settings
    const toggle = $('contacts-friends-only');
    if (!toggle.disabled) toggle.checked = !!st.settings.friends_only_dm;
    toggle.dataset.loaded = st.loaded.settings ? 'true' : 'false';
    toggle.dataset.value = st.settings.friends_only_dm ? 'true' : 'false'; // the server's answer
  }

  return { init, render, refresh, reset, show, onEvent, isBlocked, isFriend };
}
