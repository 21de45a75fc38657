// Rendering and DOM events. Reads the store, never mutates it: user actions go to the
// handlers app.js passes to init(). Lists are reconciled by key so that scrolling, focus and
// text selection survive re-renders, and bubbles are rebuilt only when their signature
// (the data they show) changes.

import { MSG_SINGLE, MSG_GROUP, MSG_SYSTEM, MSG_CUSTOM, mentions } from './store.js';
import { presenceText } from './presence.js';
import { buildMediaContent, isMediaMessage } from './media.js';
import {
  clockTime,
  dayLabel,
  fullTime,
  hueOf,
  initial,
  linkParts,
  listTime,
  messageSummary,
  startOfDay,
  systemText,
} from './format.js';

// ------------------------------------------------------------------ icons (inline SVG)

const svg = (body, extra = '') =>
  `<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" ${extra}>${body}</svg>`;

export const ICONS = {
  newChat: svg('<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/><path d="M12 8v8M8 12h8"/>'),
  newGroup: svg(
    '<circle cx="9" cy="8" r="3.2"/><path d="M3 19c.6-3.2 3-5 6-5s5.4 1.8 6 5"/><path d="M18 8v6M15 11h6"/>',
  ),
  join: svg('<path d="M15 3h4a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2h-4"/><path d="M10 17l5-5-5-5"/><path d="M15 12H3"/>'),
  logout: svg('<path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4"/><path d="M16 17l5-5-5-5"/><path d="M21 12H9"/>'),
  back: svg('<path d="M15 18l-6-6 6-6"/>'),
  contacts: svg('<circle cx="9" cy="8" r="3.2"/><path d="M3 19c.6-3.2 3-5 6-5s5.4 1.8 6 5"/><circle cx="17" cy="9" r="2.4"/><path d="M16.5 14.2c2.3.2 4 1.8 4.5 4.8"/>'),
  shield: svg('<path d="M12 3l7 3v5c0 4.6-3 8.4-7 10-4-1.6-7-5.4-7-10V6z"/><path d="M9 12l2 2 4-4"/>'),
  send: svg('<path d="M22 2L11 13"/><path d="M22 2l-7 20-4-9-9-4 20-7z"/>'),
  clock: svg('<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>', 'width="14" height="14"'),
  check: svg('<path d="M5 12.5l4.5 4.5L19 7.5"/>', 'width="14" height="14"'),
  error: svg('<circle cx="12" cy="12" r="9"/><path d="M12 7.5v5.5M12 16.5h.01"/>', 'width="14" height="14"'),
  file: svg('<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/><path d="M14 3v5h5"/>'),
  checks: svg('<path d="M2 12.5l4.5 4.5L16 7.5"/><path d="M11 15.5l1.5 1.5L22 7.5"/>', 'width="16" height="14"'),
  more: svg('<circle cx="5" cy="12" r="1.4"/><circle cx="12" cy="12" r="1.4"/><circle cx="19" cy="12" r="1.4"/>', 'width="16" height="16"'),
  phone: svg('<path d="M22 16.9v3a2 2 0 0 1-2.2 2 19.8 19.8 0 0 1-8.6-3.1 19.5 19.5 0 0 1-6-6A19.8 19.8 0 0 1 2.1 4.2 2 2 0 0 1 4.1 2h3a2 2 0 0 1 2 1.7c.1.9.4 1.8.7 2.7a2 2 0 0 1-.5 2.1L8 9.8a16 16 0 0 0 6 6l1.3-1.3a2 2 0 0 1 2.1-.4c.9.3 1.8.6 2.7.7a2 2 0 0 1 1.7 2z"/>'),
  video: svg('<path d="M23 7l-7 5 7 5z"/><rect x="1" y="5" width="15" height="14" rx="2"/>'),
  mic: svg('<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 10a7 7 0 0 0 14 0M12 17v5"/>'),
  micOff: svg('<path d="M2 2l20 20"/><path d="M9 9v1a3 3 0 0 0 5.1 2.1M15 9.3V5a3 3 0 0 0-5.9-.7"/><path d="M19 10a7 7 0 0 1-1.2 3.9M5 10a7 7 0 0 0 11.2 5.6M12 17v5"/>'),
  cameraOff: svg('<path d="M2 2l20 20"/><path d="M16 16v1a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h2m4 0h5a2 2 0 0 1 2 2v3.3l1 1L23 7v10"/>'),
  hangup: svg('<path d="M10.7 13.3a16 16 0 0 0 3.4 2.6l1.3-1.3a2 2 0 0 1 2.1-.4c.9.3 1.8.6 2.7.7a2 2 0 0 1 1.7 2v3a2 2 0 0 1-2.2 2A19.8 19.8 0 0 1 2.1 4.2 2 2 0 0 1 4.1 2h3a2 2 0 0 1 2 1.7c.1.9.4 1.8.7 2.7a2 2 0 0 1-.5 2.1L8 9.8"/><path d="M22 2L2 22"/>'),
};

// ------------------------------------------------------------------ DOM helpers

const $ = (id) => document.getElementById(id);

/** h('div', {class: 'x', dataset: {a: 1}, onclick: fn}, child, 'text', null) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k === 'style') el.style.cssText = v;
    else if (k === 'html') el.innerHTML = v; // only ever used with the constant ICONS above
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/**
 * Keyed reconciliation of `container`'s children with `items` [{key, sig, build}]: reuses
 * the element of a key while its signature is unchanged, rebuilds it otherwise, reorders
 * with insertBefore and removes the rest.
 */
export function reconcile(container, items) {
  const existing = new Map();
  for (const el of container.children) existing.set(el.dataset.key, el);
  let cursor = container.firstElementChild;
  for (const it of items) {
    let el = existing.get(it.key);
    existing.delete(it.key);
    if (el && el.dataset.sig !== it.sig) {
      const fresh = it.build();
      fresh.classList.add('no-anim'); // an update, not a new item: no entrance animation
      fresh.dataset.key = it.key;
      fresh.dataset.sig = it.sig;
      el.replaceWith(fresh);
      if (cursor === el) cursor = fresh;
      el = fresh;
    } else if (!el) {
      el = it.build();
      el.dataset.key = it.key;
      el.dataset.sig = it.sig;
    }
    if (el === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(el, cursor);
  }
  while (cursor) {
    const next = cursor.nextElementSibling;
    cursor.remove();
    cursor = next;
  }
}

export function avatar(name, id, extraClass = '') {
  return h('div', { class: `avatar ${extraClass}`, style: `--hue:${hueOf(id || name)}`, 'aria-hidden': 'true' }, initial(name));
}

function setAvatar(el, name, id) {
  el.textContent = initial(name);
  el.style.setProperty('--hue', String(hueOf(id || name)));
}

export function showError(el, msg) {
  if (!el) return;
  el.textContent = msg || '';
  el.hidden = !msg;
}

// ------------------------------------------------------------------ module state

let handlers = null;
let store = null;
let presence = null; // presence.js state (online / last seen per user)
let call = null; // call.js CallManager
let menuTarget = null; // {convId, seq} of the open message menu
let renderedConv = null; // conversation whose messages are in #message-items
let stickBottomOnce = false; // next render scrolls to the bottom (after I send)
let registerMode = false;

// ------------------------------------------------------------------ init and events

export function init(h_, store_, extras = {}) {
  handlers = h_;
  store = store_;
  presence = extras.presence || null;
  call = extras.call || null;

  $('new-chat').innerHTML = ICONS.newChat;
  $('new-group').innerHTML = ICONS.newGroup;
  $('join-group').innerHTML = ICONS.join;
  $('nav-contacts-icon').innerHTML = ICONS.contacts;
  $('nav-admin-icon').innerHTML = ICONS.shield;
  for (const b of document.querySelectorAll('[data-page-back]')) {
    b.innerHTML = ICONS.back;
    b.addEventListener('click', () => handlers.onClosePage());
  }
  $('logout').innerHTML = ICONS.logout;
  $('back-btn').innerHTML = ICONS.back;
  $('send').innerHTML = ICONS.send;
  $('call-audio').innerHTML = ICONS.phone;
  $('call-video').innerHTML = ICONS.video;
  $('call-accept').innerHTML = ICONS.phone;
  $('call-reject').innerHTML = ICONS.hangup;
  $('call-hangup').innerHTML = ICONS.hangup;
  $('call-mute').innerHTML = ICONS.mic;
  $('call-camera').innerHTML = ICONS.cameraOff;

  // Calls
  $('call-audio').addEventListener('click', () => handlers.onCall('audio'));
  $('call-video').addEventListener('click', () => handlers.onCall('video'));
  for (const action of ['accept', 'reject', 'hangup', 'mute', 'camera']) {
    $(`call-${action}`).addEventListener('click', () => handlers.onCallAction(action));
  }

  // Login / register
  $('register-toggle').addEventListener('click', () => setLoginMode(!registerMode));
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.currentTarget.elements;
    const data = {
      username: f.username.value.trim(),
      password: f.password.value,
      nickname: f.nickname.value.trim(),
    };
    if (registerMode) handlers.onRegister(data);
    else handlers.onLogin(data);
  });

  // Sidebar
  $('logout').addEventListener('click', () => handlers.onLogout());
  $('new-chat').addEventListener('click', () => openDialog('dlg-new-chat'));
  $('new-group').addEventListener('click', () => openDialog('dlg-new-group'));
  $('join-group').addEventListener('click', () => openDialog('dlg-join-group'));
  $('nav-contacts').addEventListener('click', () => handlers.onOpenPage('contacts'));
  $('nav-admin').addEventListener('click', () => handlers.onOpenPage('admin'));
  $('conv-search').addEventListener('input', () => render());
  const list = $('conv-list');
  list.addEventListener('click', (e) => {
    const li = e.target.closest('[data-conversation-id]');
    if (li) handlers.onOpen(li.dataset.conversationId);
  });
  list.addEventListener('keydown', (e) => {
    const li = e.target.closest('[data-conversation-id]');
    if (!li) return;
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      handlers.onOpen(li.dataset.conversationId);
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const sib = e.key === 'ArrowDown' ? li.nextElementSibling : li.previousElementSibling;
      sib?.focus();
    }
  });

  // Chat
  $('back-btn').addEventListener('click', () => handlers.onBack());
  const box = $('messages');
  box.addEventListener('scroll', () => {
    if (box.scrollTop < 120) handlers.onLoadOlder();
    if (isAtBottom()) $('jump-bottom').hidden = true;
  });
  $('jump-bottom').addEventListener('click', () => {
    box.scrollTop = box.scrollHeight;
    $('jump-bottom').hidden = true;
  });
  $('message-items').addEventListener('click', (e) => {
    const btn = e.target.closest('[data-retry]');
    if (btn) handlers.onRetry(btn.dataset.retry);
    const cancel = e.target.closest('[data-cancel-upload]');
    if (cancel) handlers.onCancelUpload(cancel.dataset.cancelUpload);
    const remove = e.target.closest('[data-remove-upload]');
    if (remove) handlers.onRemoveUpload(remove.dataset.removeUpload);
    const more = e.target.closest('[data-menu-seq]');
    if (more) {
      e.stopPropagation();
      openMessageMenu(more);
    }
  });
  box.addEventListener('scroll', () => closeMessageMenu());
  document.addEventListener('click', (e) => {
    if (!e.target.closest('#msg-menu')) closeMessageMenu();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeMessageMenu();
  });
  $('menu-recall').addEventListener('click', () => {
    const t = menuTarget;
    closeMessageMenu();
    if (t) handlers.onRecall(t.convId, t.seq);
  });
  $('menu-edit').addEventListener('click', () => {
    const t = menuTarget;
    closeMessageMenu();
    if (t) openEditDialog(t.convId, t.seq);
  });
  $('history-status').addEventListener('click', (e) => {
    if (e.target.closest('button')) handlers.onLoadOlder(true);
  });

  // Composer: Enter sends, Shift+Enter is a newline; never send in the middle of an IME
  // composition (Chinese/Japanese input confirms candidates with Enter).
  const composer = $('composer');
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitComposer();
    }
  });
  composer.addEventListener('input', () => {
    autosize();
    handlers.onComposerInput(composer.value);
  });
  composer.addEventListener('blur', () => handlers.onComposerBlur());
  $('composer-form').addEventListener('submit', (e) => {
    e.preventDefault();
    submitComposer();
  });

  // Banner action (Retry now / Use here)
  $('banner-action').addEventListener('click', () => handlers.onBannerAction());

  // Dialogs
  for (const dlg of document.querySelectorAll('dialog')) {
    dlg.querySelector('[data-close]').addEventListener('click', () => dlg.close());
    dlg.querySelector('form').addEventListener('submit', (e) => {
      e.preventDefault(); // stay open until the API call succeeds
      onDialogSubmit(dlg);
    });
  }

  store.subscribe(() => render());
}

function submitComposer() {
  const composer = $('composer');
  const text = composer.value;
  if (!text.trim()) return;
  if (handlers.onSend(text) !== false) {
    composer.value = '';
    autosize();
    stickBottomOnce = true;
  }
  composer.focus();
}

function autosize() {
  const c = $('composer');
  c.style.height = 'auto';
  c.style.height = `${Math.min(c.scrollHeight, 160)}px`;
}

// ------------------------------------------------------------------ screens

export function showLogin({ error = '', register = false } = {}) {
  closeDialogs();
  $('main-screen').hidden = true;
  $('login-screen').hidden = false;
  setLoginMode(register);
  setLoginBusy(false);
  showError($('login-error'), error);
  const f = $('login-form').elements;
  f.password.value = '';
  (f.username.value ? f.password : f.username).focus();
  document.title = 'Quip';
}

export function showMain(me) {
  closeDialogs();
  $('login-screen').hidden = true;
  $('main-screen').hidden = false;
  setMe(me);
  $('conv-search').value = '';
  $('composer').value = '';
  renderedConv = null;
  render();
}

/** Updates the signed-in user's name and avatar in the sidebar header. */
export function setMe(me) {
  $('me-name').textContent = me.nickname || me.username;
  $('me-username').textContent = `@${me.username}`;
  setAvatar($('me-avatar'), me.nickname || me.username, me.user_id);
  // The admin page is for the "admin" role only (the broker refuses others anyway).
  $('nav-admin').hidden = me.role !== 'admin';
  render();
}

export function setLoginMode(register) {
  registerMode = register;
  $('nickname-field').hidden = !register;
  $('login-heading').textContent = register ? 'Create your account' : 'Welcome back';
  $('login-sub').textContent = register ? 'Pick a username and a password.' : 'Sign in to continue chatting.';
  $('login-submit').textContent = register ? 'Create account' : 'Sign in';
  $('login-switch-text').textContent = register ? 'Already have an account?' : 'New to Quip?';
  $('register-toggle').textContent = register ? 'Sign in' : 'Create an account';
  $('login-form').elements.password.autocomplete = register ? 'new-password' : 'current-password';
  $('login-form').dataset.mode = register ? 'register' : 'login';
  showError($('login-error'), '');
}

export function setLoginError(msg) {
  showError($('login-error'), msg);
}

export function setLoginBusy(busy) {
  const btn = $('login-submit');
  btn.disabled = busy;
  btn.classList.toggle('busy', busy);
}

// ------------------------------------------------------------------ dialogs

/** Submit handlers of dialogs owned by other modules: id -> async (form elements, dialog)
 * => error text or null. */
const dialogHandlers = new Map();

export function registerDialog(id, onSubmit) {
  dialogHandlers.set(id, onSubmit);
}

export function openDialog(id) {
  const dlg = $(id);
  const form = dlg.querySelector('form');
  form.reset();
  showError(dlg.querySelector('.form-error'), '');
  setDialogBusy(dlg, false);
  if (typeof dlg.showModal === 'function') dlg.showModal();
  else dlg.setAttribute('open', '');
  form.querySelector('input')?.focus();
}

function closeDialogs() {
  for (const dlg of document.querySelectorAll('dialog[open]')) dlg.close();
  closeMessageMenu();
}

/** The message of the open conversation with this seq, or null. */
function messageAt(convId, seq) {
  const conv = store.state.convs.get(convId);
  return (conv && conv.msgs.get(seq)) || null;
}

/** What the ⋯ menu offers for a message: {edit, recall}. Own text messages can be edited;
 * own messages, and anyone's in a group I own or administer, can be recalled. The broker
 * checks the time windows (an expired one comes back as an error toast). */
function messageActions(conv, m) {
  if (!m || !m.seq || m.recalled || m.type === MSG_SYSTEM || m.state !== 'sent') return { edit: false, recall: false };
  const isText = (m.type === MSG_SINGLE || m.type === MSG_GROUP) && typeof (m.content || {}).text === 'string' && !(m.content || {}).file_id;
  let admin = false;
  if (conv.type === 2) {
    const g = store.state.groups.get(conv.groupId);
    admin = !!g && (g.my_role === 'owner' || g.my_role === 'admin');
  }
  return { edit: m.mine && isText, recall: m.mine || admin };
}

function openMessageMenu(btn) {
  const conv = store.state.active && store.state.convs.get(store.state.active);
  const seq = Number(btn.dataset.menuSeq);
  const m = conv && conv.msgs.get(seq);
  if (!m) return;
  const acts = messageActions(conv, m);
  if (!acts.edit && !acts.recall) return;
  menuTarget = { convId: conv.id, seq };
  const menu = $('msg-menu');
  $('menu-edit').hidden = !acts.edit;
  $('menu-recall').hidden = !acts.recall;
  menu.hidden = false;
  const r = btn.getBoundingClientRect();
  const mw = menu.offsetWidth;
  const mh = menu.offsetHeight;
  const left = Math.max(8, Math.min(window.innerWidth - mw - 8, m.mine ? r.right - mw : r.left));
  const top = r.bottom + mh + 8 > window.innerHeight ? r.top - mh - 4 : r.bottom + 4;
  menu.style.left = `${left}px`;
  menu.style.top = `${Math.max(8, top)}px`;
  menu.dataset.seq = String(seq);
  (acts.edit ? $('menu-edit') : $('menu-recall')).focus({ preventScroll: true });
}

function closeMessageMenu() {
  const menu = $('msg-menu');
  if (menu && !menu.hidden) menu.hidden = true;
  menuTarget = null;
}

function openEditDialog(convId, seq) {
  const m = messageAt(convId, seq);
  if (!m) return;
  const dlg = $('dlg-edit-message');
  openDialog('dlg-edit-message');
  dlg.dataset.convId = convId;
  dlg.dataset.seq = String(seq);
  const ta = dlg.querySelector('textarea');
  ta.value = (m.content && m.content.text) || '';
  ta.focus();
  ta.select();
}

function setDialogBusy(dlg, busy) {
  const btn = dlg.querySelector('button[type=submit]');
  btn.disabled = busy;
  btn.classList.toggle('busy', busy);
}

async function onDialogSubmit(dlg) {
  const f = dlg.querySelector('form').elements;
  const errEl = dlg.querySelector('.form-error');
  showError(errEl, '');
  setDialogBusy(dlg, true);
  let error = null;
  try {
    if (dialogHandlers.has(dlg.id)) error = await dialogHandlers.get(dlg.id)(f, dlg);
    else if (dlg.id === 'dlg-new-chat') error = await handlers.onNewChat(f.username.value.trim());
    else if (dlg.id === 'dlg-new-group') error = await handlers.onNewGroup(f.name.value.trim(), f.members.value);
    else if (dlg.id === 'dlg-join-group') error = await handlers.onJoinGroup(f.group_id.value.trim());
    else if (dlg.id === 'dlg-edit-message') {
      error = await handlers.onEdit(dlg.dataset.convId, Number(dlg.dataset.seq), f.text.value);
    }
  } catch (e) {
    error = e.message || String(e);
  }
  setDialogBusy(dlg, false);
  if (error) showError(errEl, error);
  else dlg.close();
}

// ------------------------------------------------------------------ toasts

export function toast(message, kind = 'info') {
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast' }, message);
  $('toasts').append(el);
  setTimeout(() => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 300);
  }, 4000);
}

// ------------------------------------------------------------------ render

export function render() {
  if (!store || !store.state.me || $('main-screen').hidden) return;
  renderSidebar();
  renderChat();
  renderBanner();
  const unread = store.totalUnread();
  document.title = unread ? `(${unread}) Quip` : 'Quip';
}

function previewOf(conv) {
  const typing = store.typingNames(conv);
  if (typing.length) return { text: typing.length > 1 ? 'Several people are typing…' : 'typing…', typing: true };
  const m = conv.last;
  if (!m) return { text: conv.type === 2 ? 'No messages yet' : 'Say hello 👋', typing: false };
  let text = messageSummary(m);
  if (m.type === MSG_SYSTEM) text = systemText(m, store.userName);
  else if (m.mine) text = `You: ${text}`;
  else if (conv.type === 2) text = `${store.userName(m.from)}: ${text}`;
  return { text, typing: false, failed: m.mine && m.state === 'failed', sending: m.mine && m.state === 'sending' };
}

function renderSidebar() {
  const st = store.state;
  const q = $('conv-search').value.trim().toLowerCase();
  const convs = store.sortedConvs().filter((c) => !q || store.convTitle(c).toLowerCase().includes(q) || c.id.includes(q));
  const now = Date.now();
  const items = convs.map((conv) => {
    const title = store.convTitle(conv);
    const p = previewOf(conv);
    const time = conv.last ? listTime(conv.last.timestamp, now) : '';
    const active = st.active === conv.id;
    const pres = conv.type === 1 && presence ? presence.get(conv.peerId) : null;
    const presText = pres ? presenceText(pres, now) : '';
    const sig = [title, p.text, p.typing, p.failed, p.sending, time, conv.unread, conv.mentioned, active, presText].join('\u0001');
    return {
      key: conv.id,
      sig,
      build: () =>
        h(
          'li',
          {
            class: `conv${active ? ' active' : ''}${conv.unread ? ' has-unread' : ''}`,
            role: 'option',
            tabindex: '0',
            'aria-selected': active ? 'true' : 'false',
            'data-testid': 'conversation-item',
            'data-conversation-id': conv.id,
            'data-type': conv.type === 2 ? 'group' : 'single',
          },
          h(
            'div',
            { class: 'avatar-wrap' },
            avatar(title, conv.type === 2 ? conv.groupId : conv.peerId, conv.type === 2 ? 'group' : ''),
            pres ? presenceDot(pres, presText) : null,
          ),
          h(
            'div',
            { class: 'conv-body' },
            h(
              'div',
              { class: 'conv-top' },
              h('span', { class: 'conv-name', 'data-testid': 'conversation-name' }, title),
              h('time', { class: 'conv-time' }, time),
            ),
            h(
              'div',
              { class: 'conv-bottom' },
              h(
                'span',
                {
                  class: `conv-preview${p.typing ? ' typing' : ''}${p.failed ? ' failed' : ''}`,
                  'data-testid': 'conversation-preview',
                },
                p.failed ? h('span', { class: 'mini-status failed', html: ICONS.error }) : null,
                p.sending ? h('span', { class: 'mini-status', html: ICONS.clock }) : null,
                p.text,
              ),
              conv.mentioned ? h('span', { class: 'badge mention', 'data-testid': 'mention-badge', title: 'You were mentioned' }, '@') : null,
              conv.unread
                ? h(
                    'span',
                    { class: 'badge unread', 'data-testid': 'unread-badge', 'aria-label': `${conv.unread} unread` },
                    conv.unread > 99 ? '99+' : String(conv.unread),
                  )
                : null,
            ),
          ),
        ),
    };
  });
  reconcile($('conv-list'), items);
  $('conv-empty').hidden = !(st.convsLoaded && st.convs.size === 0);
}

export function presenceDot(p, text) {
  return h('span', {
    class: `presence-dot ${p.online ? 'online' : 'offline'}`,
    'data-testid': 'presence-dot',
    'data-online': p.online ? 'true' : 'false',
    title: text,
    'aria-label': text,
  });
}

function setPresenceDot(el, p, text) {
  el.hidden = !p;
  if (!p) return;
  el.className = `presence-dot ${p.online ? 'online' : 'offline'}`;
  el.dataset.online = p.online ? 'true' : 'false';
  el.title = text;
  el.setAttribute('aria-label', text);
}

function renderChat() {
  const st = store.state;
  const page = st.page;
  const conv = !page && st.active && st.convs.get(st.active);
  $('main-screen').classList.toggle('show-chat', !!conv || !!page);
  $('chat-placeholder').hidden = !!conv || !!page;
  $('chat-view').hidden = !conv;
  $('contacts-view').hidden = page !== 'contacts';
  $('admin-view').hidden = page !== 'admin';
  $('nav-contacts').classList.toggle('active', page === 'contacts');
  $('nav-admin').classList.toggle('active', page === 'admin');
  if (!conv) {
    renderedConv = null;
    return;
  }

  // Header
  const title = store.convTitle(conv);
  $('chat-title').textContent = title;
  setAvatar($('chat-avatar'), title, conv.type === 2 ? conv.groupId : conv.peerId);
  $('chat-avatar').classList.toggle('group', conv.type === 2);
  let subtitle = '';
  let pres = null;
  let presText = '';
  if (conv.type === 2) {
    const g = st.groups.get(conv.groupId);
    const online = st.groupOnline.get(conv.groupId);
    const n = (online && online.member_count) || (g && Number(g.member_count));
    subtitle = [
      n ? `${n} member${n === 1 ? '' : 's'}` : '',
      online ? `${online.online_count} online` : '',
      online ? '' : conv.groupId,
    ].filter(Boolean).join(' · ');
  } else {
    const u = st.users.get(conv.peerId);
    pres = presence ? presence.get(conv.peerId) : null;
    presText = pres ? presenceText(pres) : '';
    subtitle = presText || (u && u.username ? `@${u.username}` : title === conv.peerId ? '' : conv.peerId);
  }
  const sub = $('chat-subtitle');
  sub.textContent = subtitle;
  sub.classList.toggle('online', !!(pres && pres.online));
  if (conv.type === 1) {
    const u = st.users.get(conv.peerId);
    sub.title = u && u.username ? `@${u.username}` : '';
  } else {
    sub.title = conv.groupId;
  }
  setPresenceDot($('chat-presence-dot'), pres, presText);
  $('call-buttons').hidden = conv.type !== 1 || !conv.peerId;
  const busy = !!(call && call.busy);
  $('call-audio').disabled = busy;
  $('call-video').disabled = busy;

  const typing = store.typingNames(conv);
  const tEl = $('typing-indicator');
  tEl.hidden = typing.length === 0;
  sub.hidden = typing.length > 0;
  const verb = store.typingIsVoice(conv) ? 'recording a voice message' : 'typing';
  tEl.textContent =
    typing.length === 0
      ? ''
      : typing.length === 1
        ? `${typing[0]} is ${verb}…`
        : `${typing.slice(0, -1).join(', ')} and ${typing.at(-1)} are ${verb}…`;

  renderHistoryStatus(conv);
  renderMessages(conv);
}

function renderHistoryStatus(conv) {
  const el = $('history-status');
  let sig;
  if (conv.historyError) sig = `error:${conv.historyError}`;
  else if (conv.loadingOlder || conv.hasMore === null) sig = 'loading';
  else if (conv.hasMore) sig = 'more';
  else sig = 'start';
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  el.dataset.state = sig.split(':')[0];
  el.replaceChildren();
  if (sig === 'loading') el.append(h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', {}, 'Loading messages…'));
  else if (sig === 'start') el.append(h('span', { class: 'start-note' }, 'This is the beginning of the conversation'));
  else if (sig === 'more') el.append(h('span', { class: 'muted' }, ' '));
  else el.append(h('span', {}, `Couldn't load messages: ${conv.historyError} `), h('button', { type: 'button', class: 'link' }, 'Retry'));
}

function isAtBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 60;
}

export function scrollToBottomNext() {
  stickBottomOnce = true;
}

function renderMessages(conv) {
  const st = store.state;
  const meId = st.me.user_id;
  const box = $('messages');
  const itemsEl = $('message-items');
  const switched = renderedConv !== conv.id;
  if (switched) {
    itemsEl.replaceChildren();
    $('jump-bottom').hidden = true;
  }
  const atBottom = isAtBottom();
  const fromBottom = box.scrollHeight - box.scrollTop;
  const firstBefore = itemsEl.firstElementChild?.dataset.key;
  const lastBefore = itemsEl.lastElementChild?.dataset.key;

  const items = [];
  const now = Date.now();
  let prevDay = null;
  let prevFrom = null;
  let prevTs = 0;
  for (const m of store.orderedMessages(conv)) {
    const day = startOfDay(m.timestamp);
    if (day !== prevDay) {
      const label = dayLabel(m.timestamp, now);
      items.push({
        key: `d:${day}`,
        sig: label,
        build: () => h('div', { class: 'day-sep', 'data-testid': 'day-separator', role: 'separator' }, h('span', {}, label)),
      });
      prevDay = day;
      prevFrom = null;
    }
    if (m.type === MSG_SYSTEM) {
      const text = systemText(m, store.userName, meId);
      const isCall = !!(m.content && m.content.call);
      items.push({
        key: m.key,
        sig: `sys|${m.rev}|${text}`,
        build: () =>
          h(
            'div',
            {
              class: `system-note${isCall ? ' call-note' : ''}`,
              'data-testid': 'system-message',
              'data-seq': m.seq ?? '',
              'data-event': m.content?.event || '',
              'data-call-reason': isCall ? m.content.call.reason || '' : null,
            },
            h('span', { title: fullTime(m.timestamp) }, isCall ? h('i', { class: 'call-icon', html: m.content.call.media === 'video' ? ICONS.video : ICONS.phone }) : null, text),
          ),
      });
      prevFrom = null;
      continue;
    }
    // A "run" is consecutive messages from one sender within 5 minutes: only its first
    // bubble shows the sender's name and avatar (in groups).
    const first = m.from !== prevFrom || m.timestamp - prevTs > 5 * 60_000;
    prevFrom = m.from;
    prevTs = m.timestamp;
    const sender = conv.type === 2 && !m.mine ? store.userName(m.from) : '';
    const mentioned = !m.mine && mentions(m, meId);
    const receipt = store.receiptState(conv, m);
    const counts = conv.type === 2 && m.mine && m.seq ? conv.receiptCounts.get(m.seq) || null : null;
    const acts = messageActions(conv, m);
    const recalledBy = m.recalled && m.recalledBy && m.recalledBy !== m.from ? store.userName(m.recalledBy) : '';
    items.push({
      key: m.key,
      sig: [m.rev, m.state, m.seq, first, sender, mentioned, m.error, receipt, counts ? `${counts.read}/${counts.recipients}` : '', acts.edit, acts.recall, recalledBy].join('|'),
      build: () => buildMessage(m, { group: conv.type === 2, first, sender, mentioned, receipt, counts, acts, recalledBy }),
    });
  }

  reconcile(itemsEl, items);
  renderedConv = conv.id;

  const firstAfter = itemsEl.firstElementChild?.dataset.key;
  const lastAfter = itemsEl.lastElementChild?.dataset.key;
  if (switched || stickBottomOnce || (atBottom && lastAfter !== lastBefore)) {
    box.scrollTop = box.scrollHeight;
    stickBottomOnce = false;
  } else if (firstBefore && firstAfter !== firstBefore) {
    // Older messages were prepended: keep the same messages under the user's eyes.
    box.scrollTop = box.scrollHeight - fromBottom;
  } else if (atBottom) {
    box.scrollTop = box.scrollHeight;
  } else if (lastAfter !== lastBefore && lastBefore) {
    $('jump-bottom').hidden = false;
  }

  // Not enough messages to scroll: the scroll event that triggers scroll-back never fires.
  if (conv.hasMore && !conv.loadingOlder && box.scrollHeight <= box.clientHeight + 8) {
    setTimeout(() => handlers.onLoadOlder(), 0);
  }
}

function buildMessage(m, { group, first, sender, mentioned, receipt, counts, acts, recalledBy }) {
  const cls = ['msg-row', m.mine ? 'mine' : 'theirs', first ? 'first' : 'cont', `state-${m.state}`];
  const row = h('div', {
    class: cls.join(' '),
    'data-testid': 'message',
    'data-seq': m.seq ?? '',
    'data-state': m.state,
    'data-mine': m.mine ? 'true' : 'false',
    'data-type': m.type,
    'data-from': m.from,
    'data-message-id': m.id || '',
    'data-client-id': m.clientId || '',
    'data-recalled': m.recalled ? 'true' : 'false',
    'data-edited': m.editedAt && !m.recalled ? 'true' : 'false',
  });

  if (group && !m.mine) {
    row.append(first ? avatar(sender, m.from, 'sm') : h('div', { class: 'avatar-spacer', 'aria-hidden': 'true' }));
  }

  const bubble = h('div', { class: `bubble${mentioned ? ' mention' : ''}` });
  if (group && !m.mine && first) {
    bubble.append(h('div', { class: 'sender', style: `--hue:${hueOf(m.from)}`, 'data-testid': 'message-sender' }, sender));
  }
  bubble.append(buildContent(m, recalledBy));

  const edited = m.editedAt && !m.recalled;
  const meta = h(
    'span',
    { class: 'meta' },
    edited ? h('span', { class: 'edited', 'data-testid': 'message-edited', title: `Edited ${fullTime(m.editedAt)}` }, '(edited)') : null,
    h('time', { datetime: new Date(m.timestamp).toISOString(), title: fullTime(m.timestamp) }, clockTime(m.timestamp)),
  );
  if (m.mine && !m.recalled) {
    const r = receipt || m.state;
    const label = { uploading: 'Uploading', sending: 'Sending', failed: 'Not sent', sent: 'Sent', delivered: 'Delivered', read: 'Read' }[r] || 'Sent';
    const icon = r === 'sending' || r === 'uploading' ? ICONS.clock : r === 'failed' ? ICONS.error : r === 'sent' ? ICONS.check : ICONS.checks;
    meta.append(
      h('span', { class: `status status-${m.state} receipt-${r}`, 'data-testid': 'message-status', 'data-receipt': r, title: label, 'aria-label': label, html: icon }),
    );
  }
  bubble.append(meta);
  if (acts && (acts.edit || acts.recall)) {
    bubble.append(
      h('button', {
        type: 'button',
        class: 'msg-more',
        'data-testid': 'message-menu-button',
        'data-menu-seq': m.seq,
        title: 'More',
        'aria-label': 'Message actions',
        'aria-haspopup': 'menu',
        html: ICONS.more,
      }),
    );
  }
  row.append(bubble);

  if (counts && counts.read > 0 && !m.recalled) {
    const all = counts.recipients > 0 && counts.read >= counts.recipients;
    row.append(
      h(
        'div',
        {
          class: 'read-by',
          'data-testid': 'read-by',
          'data-read': counts.read,
          title: `Read by ${counts.read} of ${counts.recipients} · received by ${counts.delivered}`,
        },
        all ? `Read by all (${counts.read})` : `Read by ${counts.read}`,
      ),
    );
  }

  if (m.mine && m.state === 'failed') {
    row.append(
      h(
        'div',
        { class: 'failed-actions' },
        h('span', { class: 'failed-reason', 'data-testid': 'message-error', role: 'alert' }, m.error || 'Not sent'),
        m.upload && m.upload.fatal ? null : h('button', { type: 'button', class: 'retry-btn', 'data-testid': 'retry', 'data-retry': m.clientId }, 'Retry'),
        m.upload
          ? h('button', { type: 'button', class: 'upload-remove', 'data-testid': 'upload-remove', 'data-remove-upload': m.clientId, title: 'Remove' }, 'Remove')
          : null,
      ),
    );
  }
  return row;
}

function buildContent(m, recalledBy = '') {
  const c = m.content || {};
  if (m.recalled) {
    return h('div', { class: 'body recalled', 'data-testid': 'message-recalled' }, recalledBy ? `Message recalled by ${recalledBy}` : 'Message recalled');
  }
  // Images, voice notes, videos and files (and my uploads in progress): media.js.
  if (isMediaMessage(m)) return buildMediaContent(m);
  if (m.type === MSG_CUSTOM && typeof c.text !== 'string') {
    return h('div', { class: 'body custom' }, typeof c.json === 'string' ? c.json : JSON.stringify(c));
  }
  const text = typeof c.text === 'string' ? c.text : '';
  const body = h('div', { class: 'body text', dir: 'auto' });
  // Only emoji, up to 3: show them bigger, as messengers do.
  if (/^\p{Extended_Pictographic}(\u200d?\p{Extended_Pictographic}|\ufe0f){0,8}$/u.test(text.trim()) && Array.from(text.trim()).length <= 6) {
    body.classList.add('jumbo');
  }
  for (const part of linkParts(text)) {
    body.append(part.href ? h('a', { href: part.href, target: '_blank', rel: 'noopener noreferrer' }, part.text) : part.text);
  }
  return body;
}

// ------------------------------------------------------------------ connection banner

export function renderBanner() {
  if (!store) return;
  const { status, info } = store.state.conn;
  const banner = $('connection-banner');
  const text = $('banner-text');
  const action = $('banner-action');
  let msg = '';
  let act = '';
  if (status === 'connecting' && !info.quiet) msg = 'Connecting…';
  else if (status === 'reconnecting') {
    const secs = Math.ceil(((info.retryAt || 0) - Date.now()) / 1000);
    msg = secs > 0 ? `Reconnecting… (retry in ${secs} s)` : 'Reconnecting…';
    act = secs > 0 ? 'Retry now' : '';
  } else if (status === 'offline') {
    msg = 'You are offline. Reconnecting… when the network is back.';
  } else if (status === 'replaced') {
    msg = 'Quip is open in another window.';
    act = 'Use here';
  }
  banner.hidden = !msg;
  banner.dataset.state = msg ? status : 'connected';
  text.textContent = msg;
  action.hidden = !act;
  action.textContent = act;
}

// ------------------------------------------------------------------ call panel

/** Renders the call panel from call.view(); data-call-state mirrors the
 * RTCPeerConnection's connectionState, data-phase the signalling state. */
export function renderCall() {
  if (!call) return;
  const v = call.view();
  const panel = $('call-panel');
  panel.hidden = v.phase === 'idle';
  panel.dataset.phase = v.phase;
  panel.dataset.callState = v.pcState;
  panel.dataset.media = v.media;
  panel.dataset.direction = v.direction;
  panel.dataset.callId = v.callId || '';
  panel.dataset.endReason = v.endReason || '';
  if (v.phase === 'idle') {
    if ($('call-remote').srcObject) $('call-remote').srcObject = null;
    if ($('call-local').srcObject) $('call-local').srcObject = null;
    return;
  }
  const name = store ? store.userName(v.peer) : v.peer;
  $('call-peer').textContent = name;
  $('call-status').textContent = v.status;
  setAvatar($('call-avatar'), name, v.peer);
  const remote = $('call-remote');
  const local = $('call-local');
  if (remote.srcObject !== v.remoteStream) remote.srcObject = v.remoteStream || null;
  if (local.srcObject !== v.localStream) local.srcObject = v.localStream || null;
  const video = v.media === 'video';
  const live = v.phase === 'connected' || v.phase === 'connecting';
  panel.classList.toggle('has-video', video && !!v.remoteStream && live);
  local.hidden = !video || !v.localStream || v.phase === 'ended';
  $('call-accept').hidden = v.phase !== 'incoming';
  $('call-reject').hidden = v.phase !== 'incoming';
  $('call-hangup').hidden = !['outgoing', 'connecting', 'connected'].includes(v.phase);
  $('call-mute').hidden = !v.localStream || !live;
  $('call-camera').hidden = !video || !v.localStream || !live;
  $('call-mute').innerHTML = v.muted ? ICONS.micOff : ICONS.mic;
  $('call-mute').classList.toggle('off', v.muted);
  $('call-mute').title = v.muted ? 'Unmute' : 'Mute';
  $('call-camera').classList.toggle('off', v.cameraOff);
  $('call-camera').title = v.cameraOff ? 'Camera on' : 'Camera off';
  const busy = v.phase !== 'ended';
  $('call-audio').disabled = busy;
  $('call-video').disabled = busy;
}

// ------------------------------------------------------------------ composer access

export function composerText() {
  return $('composer').value;
}

export function setComposerText(text) {
  const c = $('composer');
  c.value = text || '';
  autosize();
}

export function focusComposer() {
  // Do not pop the on-screen keyboard on phones when merely opening a chat.
  if (window.matchMedia('(pointer: fine)').matches) $('composer').focus();
}
