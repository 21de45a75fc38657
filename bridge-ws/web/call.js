// 1:1 audio/video calls: WebRTC plus the broker's call signalling (WebSocket type 60, answered
// by 61 or an error 50). No DOM here besides media streams: ui.js renders `call.view()`.
//
// Caller: invite → 61 {call_id, ice_servers} → (ringing) → accept → RTCPeerConnection,
//         offer → answer, ICE both ways → connected → hangup → ended.
// Callee: invite event → ringing sent, incoming UI → accept (media, RTCPeerConnection) →
//         offer → answer, ICE → connected → hangup → ended.
// The broker ends every call with an `ended` event (reason, duration_ms) to both sides and
// stores a SYSTEM message (content.call) in the 1:1 conversation.

/** How long the "Call ended: …" panel stays up. */
export const ENDED_SHOW_MS = 4_000;
/** After we hang up, wait this long for the broker's `ended` before closing anyway. */
const ENDED_WAIT_MS = 5_000;

const REASON_TEXT = {
  completed: 'completed',
  missed: 'missed',
  rejected: 'declined',
  busy: 'busy',
  cancelled: 'cancelled',
  disconnected: 'disconnected',
  answered_elsewhere: 'answered on another device',
};

/** 0:42, 12:05, 1:02:03 */
export function callDuration(ms) {
  const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** 00:12 for the running call. */
function clock(ms) {
  const d = callDuration(ms);
  return d.length === 4 ? `0${d}` : d;
}

function parseCandidate(c) {
  if (!c) return null;
  if (typeof c === 'string') {
    try {
      return JSON.parse(c);
    } catch {
      return { candidate: c, sdpMid: '0', sdpMLineIndex: 0 };
    }
  }
  return c;
}

export class CallManager {
  /**
   * @param {object} opts
   * @param {(frame: object) => Promise<object>} opts.request sends a type-60 frame and
   *   resolves with the type-61 answer (rejects with {code, message} on a type-50 error)
   * @param {() => void} opts.onChange the view changed
   * @param {(msg: string) => void} [opts.onError] a user-visible failure
   */
  constructor({ request, onChange, onError = () => {} }) {
    this.request = request;
    this.onChange = onChange;
    this.onError = onError;
    this.gen = 0; // bumped per call, so late async results of an old call are ignored
    this.chain = Promise.resolve(); // signalling events are handled one at a time, in order
    this._reset();
  }

  _reset() {
    clearTimeout(this.endTimer);
    this.phase = 'idle'; // idle | outgoing | incoming | connecting | connected | ending | ended
    this.direction = '';
    this.callId = '';
    this.peer = '';
    this.media = 'audio';
    this.iceServers = [];
    this.ringing = false;
    this.pc = null;
    this.pcState = 'new';
    this.localStream = null;
    this.remoteStream = null;
    this.connectedAt = 0;
    this.endReason = '';
    this.endDuration = 0;
    this.endMessage = '';
    this.muted = false;
    this.cameraOff = false;
    this.early = []; // events of our outgoing call that came before its call id
    this.pendingIce = [];
    this.endTimer = 0;
  }

  /** A call is in progress (ringing, connecting or connected). */
  get busy() {
    return this.phase !== 'idle' && this.phase !== 'ended';
  }

  _changed() {
    try {
      this.onChange();
    } catch (e) {
      console.error('call view failed', e);
    }
  }

  /** What the panel shows. */
  view(now = Date.now()) {
    let status = '';
    switch (this.phase) {
      case 'outgoing':
        status = this.ringing ? 'Ringing…' : 'Calling…';
        break;
      case 'incoming':
        status = `Incoming ${this.media === 'video' ? 'video' : 'voice'} call…`;
        break;
      case 'connecting':
        status = 'Connecting…';
        break;
      case 'connected':
        status = `Connected ${clock(now - this.connectedAt)}`;
        if (this.pcState === 'disconnected') status = 'Reconnecting…';
        break;
      case 'ending':
        status = 'Ending…';
        break;
      case 'ended':
        status = this.endMessage || `Call ended: ${REASON_TEXT[this.endReason] || this.endReason || 'ended'}`;
        if (this.endReason === 'completed' && this.endDuration) status += ` · ${callDuration(this.endDuration)}`;
        break;
      default:
        break;
    }
    return {
      phase: this.phase,
      direction: this.direction,
      callId: this.callId,
      peer: this.peer,
      media: this.media,
      pcState: this.pcState,
      status,
      localStream: this.localStream,
      remoteStream: this.remoteStream,
      muted: this.muted,
      cameraOff: this.cameraOff,
      endReason: this.endReason,
    };
  }

  // ---------------------------------------------------------------- user actions

  /** Calls `peer` (a user id). media: 'audio' | 'video'. */
  async start(peer, media) {
    if (this.busy) return;
    this._reset();
    const gen = ++this.gen;
    Object.assign(this, { phase: 'outgoing', direction: 'out', peer, media: media === 'video' ? 'video' : 'audio' });
    this._changed();
    try {
      this.localStream = await getMedia(this.media);
    } catch (e) {
      if (gen === this.gen) this._end('', 0, `Camera or microphone unavailable: ${e.message || e.name}`);
      return;
    }
    if (gen !== this.gen || this.phase !== 'outgoing') {
      stopStream(this.localStream);
      return;
    }
    this._changed();
    let ok;
    try {
      ok = await this.request({ type: 60, action: 'invite', to: peer, media: this.media });
    } catch (e) {
      if (gen === this.gen) this._end('', 0, `Call failed: ${e.message || e}`);
      return;
    }
    if (gen !== this.gen || this.phase !== 'outgoing') {
      // Hung up while the invite was on its way: cancel it now that it has an id.
      if (ok && ok.call_id) this._send({ action: 'cancel', call_id: ok.call_id });
      return;
    }
    this.callId = ok.call_id || '';
    this.iceServers = Array.isArray(ok.ice_servers) ? ok.ice_servers : [];
    const early = this.early;
    this.early = [];
    for (const ev of early) this.onEvent(ev);
    this._changed();
  }

  /** Callee: take the incoming call. */
  async accept() {
    if (this.phase !== 'incoming') return;
    const gen = this.gen;
    this.phase = 'connecting';
    this._changed();
    try {
      this.localStream = await getMedia(this.media);
    } catch (e) {
      if (gen !== this.gen) return;
      this._send({ action: 'reject', call_id: this.callId });
      this._end('', 0, `Camera or microphone unavailable: ${e.message || e.name}`);
      return;
    }
    if (gen !== this.gen || this.phase !== 'connecting') {
      stopStream(this.localStream);
      return;
    }
    this._createPc(); // before the accept goes out: the offer may follow right after it
    try {
      await this.request({ type: 60, action: 'accept', call_id: this.callId });
    } catch (e) {
      if (gen !== this.gen) return;
      // CONFLICT (25): another device of mine took it first.
      if (Number(e.code) === 25) this._end('answered_elsewhere', 0);
      else this._end('', 0, `Could not answer: ${e.message || e}`);
    }
  }

  /** Callee: decline the incoming call. */
  reject() {
    if (this.phase !== 'incoming') return;
    this._send({ action: 'reject', call_id: this.callId });
    this._waitForEnd();
  }

  /** Either side: hang up / cancel. */
  hangup() {
    if (!this.busy || this.phase === 'ending') return;
    if (this.phase === 'incoming') return this.reject();
    if (this.direction === 'out' && this.phase === 'outgoing') {
      if (!this.callId) {
        // The invite has not been answered yet: start() cancels it when it is.
        this._end('cancelled', 0);
        return;
      }
      this._send({ action: 'cancel', call_id: this.callId });
    } else {
      this._send({ action: 'hangup', call_id: this.callId });
    }
    this._waitForEnd();
  }

  toggleMute() {
    if (!this.localStream) return;
    this.muted = !this.muted;
    for (const t of this.localStream.getAudioTracks()) t.enabled = !this.muted;
    this._changed();
  }

  toggleCamera() {
    if (!this.localStream) return;
    this.cameraOff = !this.cameraOff;
    for (const t of this.localStream.getVideoTracks()) t.enabled = !this.cameraOff;
    this._changed();
  }

  /** Hides the "Call ended" panel at once. */
  dismiss() {
    if (this.phase === 'ended') {
      this._reset();
      this._changed();
    }
  }

  /** Signed out: drop everything (the broker ends the call when the session goes). */
  shutdown() {
    if (this.busy && this.callId) this._send({ action: this.phase === 'incoming' ? 'reject' : 'hangup', call_id: this.callId });
    this._closeMedia();
    this.gen++;
    this._reset();
    this._changed();
  }

  // ---------------------------------------------------------------- signalling in

  /** A type-60 frame from the server. */
  onEvent(ev) {
    if (!ev || !ev.action) return;
    if (ev.action === 'invite') {
      this._onInvite(ev);
      return;
    }
    if (this.phase === 'outgoing' && !this.callId && this.busy) {
      this.early.push(ev); // our invite's 61 has not arrived yet
      return;
    }
    if (!this.callId || ev.call_id !== this.callId || !this.busy) return;
    const gen = this.gen;
    this.chain = this.chain
      .then(() => (gen === this.gen ? this._handle(ev) : null))
      .catch((e) => {
        console.error('call signalling failed', e, ev);
      });
  }

  _onInvite(ev) {
    if (this.busy) {
      // Already in a call (or ringing): tell the caller.
      if (ev.call_id !== this.callId) this._send({ action: 'busy', call_id: ev.call_id });
      return;
    }
    this._reset();
    this.gen++;
    Object.assign(this, {
      phase: 'incoming',
      direction: 'in',
      callId: ev.call_id,
      peer: ev.from || ev.peer,
      media: ev.media === 'video' ? 'video' : 'audio',
      iceServers: Array.isArray(ev.ice_servers) ? ev.ice_servers : [],
    });
    this._send({ action: 'ringing', call_id: ev.call_id });
    this._changed();
  }

  async _handle(ev) {
    switch (ev.action) {
      case 'ringing':
        if (this.direction === 'out' && this.phase === 'outgoing') {
          this.ringing = true;
          this._changed();
        }
        break;
      case 'accept':
        if (this.direction === 'out' && this.phase === 'outgoing') {
          this.phase = 'connecting';
          this._changed();
          this._createPc();
          const offer = await this.pc.createOffer();
          await this.pc.setLocalDescription(offer);
          this._send({ action: 'offer', call_id: this.callId, sdp: offer.sdp });
        }
        break;
      case 'offer':
        if (this.direction === 'in' && this.pc) {
          await this.pc.setRemoteDescription({ type: 'offer', sdp: ev.sdp });
          await this._flushIce();
          const answer = await this.pc.createAnswer();
          await this.pc.setLocalDescription(answer);
          this._send({ action: 'answer', call_id: this.callId, sdp: answer.sdp });
        }
        break;
      case 'answer':
        if (this.direction === 'out' && this.pc) {
          await this.pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp });
          await this._flushIce();
        }
        break;
      case 'ice': {
        const cand = parseCandidate(ev.candidate);
        if (!cand) break;
        if (this.pc && this.pc.remoteDescription) await this.pc.addIceCandidate(cand).catch(() => {});
        else this.pendingIce.push(cand);
        break;
      }
      case 'answered_elsewhere':
        this._end('answered_elsewhere', 0);
        break;
      case 'ended':
        this._end(ev.reason || 'completed', Number(ev.duration_ms) || 0);
        break;
      default:
        break;
    }
  }

  async _flushIce() {
    const list = this.pendingIce;
    this.pendingIce = [];
    for (const c of list) await this.pc.addIceCandidate(c).catch(() => {});
  }

  // ---------------------------------------------------------------- internals

  _send(fields) {
    this.request({ type: 60, ...fields }).catch((e) => {
      if (fields.action === 'ice') return; // a lost candidate is not worth a message
      if ((fields.action === 'hangup' || fields.action === 'cancel' || fields.action === 'reject') && this.phase === 'ending') {
        // NOT_FOUND / CONFLICT: the call is already over on the broker; close here.
        this._end('', 0, 'Call ended');
        return;
      }
      this.onError(`Call: ${e.message || e}`);
    });
  }

  _createPc() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.pcState = pc.connectionState || 'new';
    if (this.localStream) for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
    pc.onicecandidate = (e) => {
      if (e.candidate && this.pc === pc) this._send({ action: 'ice', call_id: this.callId, candidate: e.candidate.toJSON() });
    };
    pc.ontrack = (e) => {
      if (this.pc !== pc) return;
      if (e.streams && e.streams[0]) this.remoteStream = e.streams[0];
      else {
        if (!this.remoteStream) this.remoteStream = new MediaStream();
        this.remoteStream.addTrack(e.track);
      }
      this._changed();
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      this.pcState = pc.connectionState;
      if (this.pcState === 'connected' && (this.phase === 'connecting' || this.phase === 'connected')) {
        this.phase = 'connected';
        if (!this.connectedAt) this.connectedAt = Date.now();
      }
      this._changed();
    };
    this._changed();
  }

  _waitForEnd() {
    this.phase = 'ending';
    this._changed();
    const gen = this.gen;
    clearTimeout(this.endTimer);
    this.endTimer = setTimeout(() => {
      if (gen === this.gen && this.phase === 'ending') this._end('', 0, 'Call ended');
    }, ENDED_WAIT_MS);
  }

  _closeMedia() {
    if (this.pc) {
      this.pc.onicecandidate = this.pc.ontrack = this.pc.onconnectionstatechange = null;
      try {
        this.pc.close();
      } catch {
        /* already closed */
      }
    }
    stopStream(this.localStream);
  }

  _end(reason, durationMs, message = '') {
    this._closeMedia();
    const gen = ++this.gen; // late async work of this call stops here
    const keep = { peer: this.peer, media: this.media, direction: this.direction, callId: this.callId };
    const pcState = this.pc ? 'closed' : this.pcState;
    this._reset();
    Object.assign(this, keep, { phase: 'ended', pcState, endReason: reason, endDuration: durationMs, endMessage: message });
    this._changed();
    this.endTimer = setTimeout(() => {
      if (gen === this.gen && this.phase === 'ended') {
        this._reset();
        this._changed();
      }
    }, ENDED_SHOW_MS);
  }
}

/** getUserMedia for a call: microphone, plus the camera for video. */
async function getMedia(media) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this page cannot use the camera or microphone (it needs https or localhost)');
  }
  return navigator.mediaDevices.getUserMedia({ audio: true, video: media === 'video' });
}

function stopStream(stream) {
  if (!stream) return;
  for (const t of stream.getTracks()) t.stop();
}
