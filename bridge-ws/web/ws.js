// WebSocket connection to bridge-ws: JSON frames, heartbeat (type 99 every 25 s), liveness
// check, and reconnect with exponential backoff (1 s, 2 s, 4 s … capped at 30 s, reset once a
// connection opens). Auth decisions (token refresh, what a close code means) belong to the
// app, which plugs in through the hooks below.

export const HEARTBEAT_MS = 25_000;
/** No frame at all (not even the type 100 heartbeat answer) for this long → the link is
 * dead even if the browser has not noticed yet; drop it and reconnect. */
export const DEAD_AFTER_MS = 70_000;
export const BACKOFF_BASE_MS = 1_000;
export const BACKOFF_MAX_MS = 30_000;

/** Close codes we send ourselves. */
export const CLOSE_NORMAL = 1000;
export const CLOSE_DEAD = 4000;

/** Delay before reconnect attempt n (0-based): 1 s, 2 s, 4 s, … 30 s. */
export function backoffDelay(attempt) {
  return Math.min(BACKOFF_BASE_MS * 2 ** attempt, BACKOFF_MAX_MS);
}

/**
 * Status values reported through onStatus:
 *   'connecting'   first attempt (or a quiet reconnect after a token refresh)
 *   'open'         connected
 *   'reconnecting' waiting for / running a retry after a drop (info.retryAt = ms epoch)
 *   'offline'      the browser reports no network; retried when it comes back
 *   'replaced'     the server said another session took this device over; no auto retry
 *   'stopped'      stopped by the app (logout)
 */
export class Connection {
  /**
   * @param {object} hooks
   * @param {() => string} hooks.url built before every attempt (the token may have changed)
   * @param {(ctx: {afterFailure: boolean}) => Promise<void>} [hooks.prepare] awaited before
   *   each attempt (e.g. refresh an expired token); throw to abort this attempt.
   * @param {() => void} [hooks.onOpen]
   * @param {(frame: object) => void} hooks.onFrame
   * @param {(status: string, info: object) => void} [hooks.onStatus]
   * @param {(ev: {code: number, reason: string, wasOpen: boolean}) => (string|undefined)} [hooks.onClose]
   *   returns 'stop' (give up), 'replaced' (session taken over: wait for the user),
   *   'now' (retry at once, e.g. after a token refresh) or undefined (normal backoff).
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.heartbeat = null;
    this.lastRx = 0;
    this.stopped = true;
    this.status = 'stopped';
    this.quiet = false;
    this.hadOpen = false; // whether any connection of this Connection ever opened
    this.retryAt = 0;
    this._onOnline = () => {
      if (!this.stopped && this.status !== 'open' && this.status !== 'replaced') this.retryNow();
    };
    this._onOffline = () => {
      if (!this.stopped && this.status !== 'open') this._setStatus('offline');
    };
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    window.addEventListener('online', this._onOnline);
    window.addEventListener('offline', this._onOffline);
    this._connect(false);
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this._onOnline);
    window.removeEventListener('offline', this._onOffline);
    clearTimeout(this.timer);
    this._drop(CLOSE_NORMAL, 'logout');
    this._setStatus('stopped');
  }

  /** Sends one JSON frame; false if the socket is not open (the caller keeps it queued). */
  send(frame) {
    if (!this.isOpen) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the current socket and connects again at once. quiet: no banner (used after a
   * planned token refresh, where the drop is ours). */
  reconnect({ quiet = false } = {}) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this._drop(CLOSE_NORMAL, 'reconnect');
    this.quiet = quiet;
    this._connect(false);
  }

  /** Skip the remaining backoff wait (banner's "Retry now", network back, "Use here"). */
  retryNow() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
    this._drop(CLOSE_NORMAL, 'retry');
    this._connect(this.status !== 'open');
  }

  _setStatus(status, info = {}) {
    this.status = status;
    this.hooks.onStatus?.(status, { quiet: this.quiet, attempt: this.attempt, retryAt: this.retryAt, ...info });
  }

  /** Detaches and closes the current socket without triggering the reconnect path. */
  _drop(code, reason) {
    clearInterval(this.heartbeat);
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  async _connect(afterFailure) {
    if (this.stopped) return;
    const hadOpenBefore = this.hadOpen;
    this._setStatus(hadOpenBefore || afterFailure ? (this.quiet ? 'connecting' : 'reconnecting') : 'connecting');
    try {
      await this.hooks.prepare?.({ afterFailure });
    } catch (e) {
      if (e && e.stopConnection) {
        this.stop();
        return;
      }
      // Transient (network) failure while preparing: retry later.
      if (!this.stopped) this._scheduleReconnect();
      return;
    }
    if (this.stopped || this.ws) return;

    let ws;
    try {
      ws = new WebSocket(this.hooks.url());
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;

    ws.onopen = () => {
      opened = true;
      this.hadOpen = true;
      this.attempt = 0; // backoff resets after a successful open
      this.quiet = false;
      this.lastRx = Date.now();
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => this._beat(), HEARTBEAT_MS);
      this._setStatus('open');
      this.hooks.onOpen?.();
    };

    ws.onmessage = (ev) => {
      this.lastRx = Date.now();
      if (typeof ev.data !== 'string') return; // the contract is JSON text frames only
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      // Tolerate a server that batches several frames into one JSON array.
      for (const f of Array.isArray(frame) ? frame : [frame]) {
        if (f && typeof f === 'object') {
          try {
            this.hooks.onFrame(f);
          } catch (err) {
            console.error('frame handler failed', err, f);
          }
        }
      }
    };

    ws.onerror = () => {
      /* onclose follows and carries the code */
    };

    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this._drop(CLOSE_NORMAL, '');
      this._closed(ev.code, ev.reason || '', opened);
    };
  }

  _closed(code, reason, wasOpen) {
    if (this.stopped) return;
    const decision = this.hooks.onClose?.({ code, reason, wasOpen });
    if (decision === 'stop') {
      this.stop();
    } else if (decision === 'replaced') {
      this._setStatus('replaced', { code, reason });
    } else if (decision === 'now' && this.attempt === 0) {
      // One immediate retry (e.g. token refreshed); repeated failures fall back to backoff.
      this.attempt = 1;
      this.quiet = true;
      this._connect(true);
    } else {
      this._scheduleReconnect(!wasOpen);
    }
  }

  _scheduleReconnect(afterFailure = true) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.quiet = false;
    this._setStatus(navigator.onLine === false ? 'offline' : 'reconnecting', { delay });
    this.timer = setTimeout(() => this._connect(afterFailure), delay);
  }

  _beat() {
    if (!this.isOpen) return;
    if (Date.now() - this.lastRx > DEAD_AFTER_MS) {
      // Half-open TCP: the browser may take minutes to notice. Treat it as closed now.
      this._drop(CLOSE_DEAD, 'heartbeat timeout');
      this._closed(CLOSE_DEAD, 'heartbeat timeout', true);
      return;
    }
    this.send({ type: 99, content: { timestamp: Date.now() } });
  }
}
