// REST client for bridge-ws (see bridge-ws/CONTRACT.md).
//
// Every response is `{code, message, data}`; a non-zero code or a non-2xx status becomes an
// ApiError carrying a readable message (errors.js: the server's text, or ours for the codes a
// user should understand, e.g. BLOCKED or RATE_LIMITED with its wait). An authenticated call
// that gets 401 runs the (single-flight) token refresh once and retries.

import { readableError } from './errors.js';

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 for a network failure)
   * @param {number} code Quip error code (0 if unknown)
   * @param {string} message readable message from the API
   * @param {number} [retryAfterMs] RATE_LIMITED: how long to wait (0 if not said)
   */
  constructor(status, code, message, retryAfterMs = 0) {
    super(message || `Request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }

  /** True when the credentials themselves are bad (not a transient failure). */
  get isAuth() {
    return this.status === 401 || [3, 6, 7, 8, 18].includes(this.code);
  }
}

/**
 * @param {object} opts
 * @param {() => (object|null)} opts.getAuth current auth (token, refresh_token, …)
 * @param {(prevToken: string) => Promise<object>} opts.refresh performs the token refresh
 *   (owned by the app so it can be shared with the WebSocket); resolves to the new auth.
 */
export function createApi({ getAuth, refresh }) {
  async function request(method, path, { body, auth = true, retried = false } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const current = auth ? getAuth() : null;
    if (auth && current?.token) headers.Authorization = `Bearer ${current.token}`;

    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body !== undefined ? JSON.stringify(body) : undefined,
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 0, 'Network error — is the server reachable?');
    }

    let json = null;
    try {
      json = await res.json();
    } catch {
      /* non-JSON body (proxy error page, empty 204 …) */
    }

    if (res.status === 401 && auth && !retried && current?.refresh_token) {
      // Access token expired or revoked: refresh once, then retry with the new token.
      await refresh(current.token);
      return request(method, path, { body, auth, retried: true });
    }

    if (!res.ok || (json && typeof json.code === 'number' && json.code !== 0)) {
      const raw = (json && json.message) || res.statusText || 'Request failed';
      let code = (json && json.code) || 0;
      if (!code && res.status === 429) code = 11; // RATE_LIMITED without a JSON body
      // RATE_LIMITED: `retry_after_ms` in the body, else the Retry-After header (seconds).
      let retryAfterMs = Number(json && json.retry_after_ms) || 0;
      if (!retryAfterMs) {
        const header = Number(res.headers.get('Retry-After'));
        if (header > 0) retryAfterMs = header * 1000;
      }
      throw new ApiError(res.status, code, readableError(code, raw, retryAfterMs), retryAfterMs);
    }
    return json ? json.data ?? {} : {};
  }

  const enc = encodeURIComponent;
  const get = (p) => request('GET', p);
  const post = (p, body = {}) => request('POST', p, { body });
  const put = (p, body = {}) => request('PUT', p, { body });
  const del = (p) => request('DELETE', p);
  /** `?a=1&b=x` from an object, skipping empty values. */
  const qs = (params) => {
    const parts = Object.entries(params)
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => `${enc(k)}=${enc(v)}`);
    return parts.length ? `?${parts.join('&')}` : '';
  };

  return {
    request,
    register: (username, nickname, password) =>
      request('POST', '/api/register', { body: { username, nickname, password }, auth: false }),
    login: (username, password, device_id) =>
      request('POST', '/api/login', { body: { username, password, device_id }, auth: false }),
    refreshTokens: (refresh_token, device_id) =>
      request('POST', '/api/refresh', { body: { refresh_token, device_id }, auth: false }),
    me: () => get('/api/me'),
    userByUsername: (username) => get(`/api/users/by-username/${enc(username)}`),
    conversations: (pageToken = '', limit = 50) =>
      get(`/api/conversations?limit=${limit}&page_token=${enc(pageToken)}`),
    /** kind: 'private' (id = peer user id) or 'group' (id = group id); lastSeq 0 = newest. */
    history: (kind, id, lastSeq = 0, limit = 50) =>
      get(`/api/messages/${kind}/${enc(id)}?limit=${limit}&last_seq=${lastSeq}`),
    myGroups: () => get('/api/groups/my'),
    group: (groupId) => get(`/api/groups/${enc(groupId)}`),
    createGroup: (name, member_ids, description = '') =>
      post('/api/groups', { name, description, member_ids }),
    joinGroup: (groupId) => post(`/api/groups/${enc(groupId)}/join`, {}),
    groupMembers: (groupId, after = '', limit = 100) =>
      get(`/api/groups/${enc(groupId)}/members?after=${enc(after)}&limit=${limit}`),
    /** Presence of up to 200 users: {presences: [{user_id, online, last_seen, devices, version}]}. */
    presence: (userIds) => get(`/api/presence?user_ids=${userIds.map(enc).join(',')}`),
    /** {group_id, member_count, online_count, online_user_ids}. */
    groupOnline: (groupId, limit = 50) => get(`/api/groups/${enc(groupId)}/online?limit=${limit}`),
    /** {conversation_id, counts: [{seq, read, delivered, recipients}]} for up to 200 seqs. */
    receipts: (convId, seqs) => get(`/api/conversations/${enc(convId)}/receipts?seqs=${seqs.join(',')}`),
    /** {conversation_id, seq, user_ids, next_after}. */
    readers: (convId, seq, after = '', limit = 50) =>
      get(`/api/conversations/${enc(convId)}/readers?seq=${seq}&after=${enc(after)}&limit=${limit}`),
    /** Recall / edit message `seq`; data: the ACK of the RECALL / EDIT event. */
    recall: (convId, seq, client_msg_id) =>
      post(`/api/conversations/${enc(convId)}/messages/${seq}/recall`, { client_msg_id }),
    edit: (convId, seq, content, client_msg_id) =>
      post(`/api/conversations/${enc(convId)}/messages/${seq}/edit`, { content, client_msg_id }),

    // ---- contacts and blocking
    /** {friends: [{user_id, username, nickname, since, online, last_seen, blocked}]} */
    friends: () => get('/api/contacts'),
    /** {incoming: [req], outgoing: [req]}, req = {from_user_id, to_user_id, message, requested_at, username, nickname} */
    contactRequests: () => get('/api/contacts/requests'),
    /** {now_friends} */
    sendContactRequest: (user_id, message = '') => post('/api/contacts/requests', { user_id, message }),
    acceptContactRequest: (userId) => post(`/api/contacts/requests/${enc(userId)}/accept`, {}),
    rejectContactRequest: (userId) => post(`/api/contacts/requests/${enc(userId)}/reject`, {}),
    cancelContactRequest: (userId) => del(`/api/contacts/requests/${enc(userId)}`),
    deleteFriend: (userId) => del(`/api/contacts/${enc(userId)}`),
    /** {friends_only_dm} */
    contactSettings: () => get('/api/contacts/settings'),
    setContactSettings: (settings) => put('/api/contacts/settings', settings),
    /** {blocked: [{user_id, username, nickname, blocked_at}]} */
    blocked: () => get('/api/blocks'),
    block: (user_id) => post('/api/blocks', { user_id }),
    unblock: (userId) => del(`/api/blocks/${enc(userId)}`),

    // ---- my devices
    /** {devices: [{device_id, client_version, first_seen, last_seen, online, current, transport}]} */
    devices: () => get('/api/devices'),
    /** {sessions} */
    logoutDevice: (deviceId) => post(`/api/devices/${enc(deviceId)}/logout`, {}),
    logoutAll: (keep_current = true) => post('/api/devices/logout-all', { keep_current }),

    // ---- admin (role "admin")
    /** {users: [admin user], next_after} */
    adminUsers: (query = '', after = '', limit = 20) => get(`/api/admin/users${qs({ query, after, limit })}`),
    /** {user, devices, groups} */
    adminUser: (userId) => get(`/api/admin/users/${enc(userId)}`),
    adminSetDisabled: (userId, disabled) => post(`/api/admin/users/${enc(userId)}/${disabled ? 'disable' : 'enable'}`, {}),
    adminResetPassword: (userId, new_password) => post(`/api/admin/users/${enc(userId)}/password`, { new_password }),
    adminSetRole: (userId, role) => post(`/api/admin/users/${enc(userId)}/role`, { role }),
    /** {groups: [group JSON], next_after} */
    adminGroups: (query = '', after = '', limit = 20) => get(`/api/admin/groups${qs({ query, after, limit })}`),
    adminDissolveGroup: (groupId) => post(`/api/admin/groups/${enc(groupId)}/dissolve`, {}),
    /** {quic_sessions, websocket_sessions, users_online, messages_per_second, …} */
    adminStats: () => get('/api/admin/stats'),
  };
}
