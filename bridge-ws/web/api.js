// REST client for bridge-ws (see bridge-ws/CONTRACT.md).
//
// Every response is `{code, message, data}`; a non-zero code or a non-2xx status becomes an
// ApiError carrying the server's readable `message`. An authenticated call that gets 401 runs
// the (single-flight) token refresh once and retries.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 for a network failure)
   * @param {number} code Quip error code (0 if unknown)
   * @param {string} message readable message from the API
   */
  constructor(status, code, message) {
    super(message || `Request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
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
      const msg = (json && json.message) || res.statusText || 'Request failed';
      throw new ApiError(res.status, (json && json.code) || 0, msg);
    }
    return json ? json.data ?? {} : {};
  }

  const enc = encodeURIComponent;
  const get = (p) => request('GET', p);
  const post = (p, body = {}) => request('POST', p, { body });

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
  };
}
