// The Devices section (Contacts page, "Privacy & devices" tab): where my account is signed
// in, with "log out" per device and "log out everywhere else". Signing a device out closes its
// sessions with LOGGED_OUT (WebSocket close 4028) and revokes its tokens; app.js handles
// that close on the signed-out side.

import { h, reconcile, showError, toast } from './ui.js';
import { fullTime, listTime } from './format.js';
import { presenceText } from './presence.js';

const $ = (id) => document.getElementById(id);
const CONFIRM_MS = 4_000;
const REFRESH_EVERY_MS = 10_000; // while the section is visible

/**
 * @param {object} deps
 * @param {object} deps.api api.js client
 * @param {object} deps.store store.js (re-render scheduling, the open page)
 * @param {() => string} deps.currentDeviceId this browser's device id
 */
export function createDevices({ api, store, currentDeviceId }) {
  const st = {
    devices: [],
    loaded: false,
    busy: new Set(), // device ids (or '*' for "everywhere else") being signed out
    armed: new Map(),
  };
  let gen = 0;
  let timer = 0;
  const changed = () => store.emit();

  const visible = () => {
    const panel = $('contacts-settings');
    return store.state.page === 'contacts' && panel && !panel.hidden;
  };

  async function load() {
    const g = gen;
    try {
      const data = await api.devices();
      if (g !== gen) return;
      const mine = currentDeviceId();
      st.devices = (data.devices || [])
        .map((d) => ({ ...d, current: !!d.current || d.device_id === mine }))
        // This device first, then online ones, then the most recently seen.
        .sort((a, b) => Number(b.current) - Number(a.current) || Number(b.online) - Number(a.online) || (Number(b.last_seen) || 0) - (Number(a.last_seen) || 0));
      st.loaded = true;
      showError($('devices-error'), '');
    } catch (e) {
      if (g !== gen) return;
      showError($('devices-error'), `Could not load devices: ${e.message || e}`);
    }
    changed();
  }

  /** The section became visible: load now, and keep it fresh while it stays visible. */
  function show() {
    load();
    clearInterval(timer);
    timer = setInterval(() => {
      if (!visible()) {
        clearInterval(timer);
        timer = 0;
        return;
      }
      if (!document.hidden) load();
    }, REFRESH_EVERY_MS);
  }

  function reset() {
    gen += 1;
    clearInterval(timer);
    timer = 0;
    st.devices = [];
    st.loaded = false;
    st.busy.clear();
    st.armed.clear();
    showError($('devices-error'), '');
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

  async function logoutDevice(deviceId) {
    if (st.busy.has(deviceId)) return;
    st.busy.add(deviceId);
    changed();
    try {
      const res = await api.logoutDevice(deviceId);
      const n = Number(res && res.sessions) || 0;
      toast(n ? `Device signed out (${n} session${n === 1 ? '' : 's'} closed).` : 'Device signed out.');
    } catch (e) {
      toast(e.message || String(e), 'error');
    } finally {
      st.busy.delete(deviceId);
    }
    await load();
  }

  async function logoutOthers() {
    if (st.busy.has('*')) return;
    if (!confirmed('*')) return;
    st.busy.add('*');
    changed();
    try {
      const res = await api.logoutAll(true);
      const n = Number(res && res.sessions) || 0;
      toast(n ? `Signed out everywhere else (${n} session${n === 1 ? '' : 's'} closed).` : 'Signed out everywhere else.');
    } catch (e) {
      toast(e.message || String(e), 'error');
    } finally {
      st.busy.delete('*');
    }
    await load();
  }

  function init() {
    $('devices-list').addEventListener('click', (e) => {
      const btn = e.target.closest('button[data-device-logout]');
      if (btn && !btn.disabled) logoutDevice(btn.dataset.deviceLogout);
    });
    $('devices-logout-others').addEventListener('click', () => logoutOthers());
    $('devices-refresh').addEventListener('click', () => load());
  }

  function transportLabel(t) {
    if (t === 'websocket') return 'Browser';
    if (t === 'quic') return 'App (QUIC)';
    return t || '';
  }

  function render() {
    if (store.state.page !== 'contacts') return;
    const now = Date.now();
    const others = st.devices.filter((d) => !d.current);
    const allBtn = $('devices-logout-others');
    allBtn.disabled = st.busy.has('*') || !others.length;
    allBtn.textContent = armed('*') ? 'Really log out all other devices?' : 'Log out everywhere else';
    allBtn.classList.toggle('armed', armed('*'));

    reconcile(
      $('devices-list'),
      st.devices.map((d) => {
        const status = d.online ? 'online' : presenceText({ online: false, lastSeen: Number(d.last_seen) || 0 }, now);
        const busy = st.busy.has(d.device_id) || st.busy.has('*');
        return {
          key: d.device_id,
          sig: [d.current, d.online, status, d.client_version, d.transport, d.first_seen, busy].join('\u0001'),
          build: () =>
            h(
              'li',
              {
                class: `row device${d.current ? ' current' : ''}`,
                'data-testid': 'device-row',
                'data-device-id': d.device_id,
                'data-current': d.current ? 'true' : 'false',
                'data-online': d.online ? 'true' : 'false',
              },
              h('div', { class: `device-icon${d.online ? ' online' : ''}`, 'aria-hidden': 'true' }, d.transport === 'quic' ? '▣' : '◧'),
              h(
                'div',
                { class: 'row-main' },
                h(
                  'div',
                  { class: 'row-title' },
                  d.current ? 'This browser' : transportLabel(d.transport) || 'Device',
                  d.current ? h('span', { class: 'tag', 'data-testid': 'device-current' }, 'current') : null,
                ),
                h(
                  'div',
                  { class: 'row-sub' },
                  h('code', { class: 'device-id', title: d.device_id }, d.device_id),
                  d.client_version ? ` · ${d.client_version}` : '',
                  h('span', { class: `presence-text${d.online ? ' online' : ''}`, 'data-testid': 'device-status' }, ` · ${status}`),
                  d.first_seen ? h('span', { title: fullTime(d.first_seen) }, ` · first seen ${listTime(d.first_seen, now)}`) : null,
                ),
              ),
              d.current
                ? null
                : h(
                    'div',
                    { class: 'row-actions' },
                    h(
                      'button',
                      { type: 'button', class: 'btn btn-small btn-ghost-danger', 'data-device-logout': d.device_id, 'data-testid': 'device-logout', disabled: busy },
                      'Log out',
                    ),
                  ),
            ),
        };
      }),
    );
  }

  return { init, render, load, show, reset };
}
