// Media over WebSocket for the browser SDK: plays one server stream that the server sends as
// fragmented MP4 on a WebSocket of its own (`/ws/play?name=...`, see the last section of
// web/sdk/PROTOCOL.md) through Media Source Extensions into a <video>. The `init` segments go to
// a (Managed)MediaSource's one SourceBuffer, the media fragments after them in order, one append
// at a time; the buffer is kept short (under a second behind the live edge) by playing a little
// faster or jumping ahead, and old media is removed as playback moves on. Stream.play() of
// mediarouter.js uses it for transport 'ws'. Plain ES module, no dependencies, no build step.

/**
 * The latency control, in seconds of lag (buffered end - currentTime): the player jumps ahead
 * when the lag is above `jumpAbove` (above `fastAbove` until it first got that close: the GOP
 * cache's head start at the beginning is cheaper to jump over than to play faster through),
 * plays faster above `fastAbove`, and at normal speed again below `normalBelow`.
 */
const LATENCY = Object.freeze({
  jumpAbove: 1.5,
  /** Where a jump lands: this far behind the end. */
  jumpTo: 0.3,
  fastAbove: 0.8,
  fastRate: 1.1,
  normalBelow: 0.4,
  /** How often the lag is checked (ms). */
  everyMs: 250,
});

/** Media kept behind currentTime (s); older media is removed every `cleanupEveryMs`. */
const KEEP_BEHIND = 10;
const CLEANUP_EVERY_MS = 2000;
/** On QuotaExceededError: media older than currentTime minus this (s) is removed, then retried. */
const QUOTA_KEEP_BEHIND = 5;
/** Bytes waiting for their append above which the waiting media fragments are dropped. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** Browser media errors recovered from (a new MediaSource with the last init) before giving up. */
const MAX_MEDIA_ERRORS = 3;

/** Whether this browser has Media Source Extensions (ManagedMediaSource or MediaSource). */
export function mseSupported() {
  return typeof window !== 'undefined' && !!(window.ManagedMediaSource || window.MediaSource);
}

/**
 * The media WebSocket URL of a stream: the signalling URL's scheme and host (and any path
 * before its `/ws`, for a server behind a proxy prefix) with `/ws/play?name=NAME`, and
 * `&appKey=KEY` (the application of a bare name: the media socket has no signalling session to
 * carry it) and `&token=TOKEN` when given. Every value is percent-encoded here.
 * @param {string} sessionUrl e.g. `ws://127.0.0.1:8080/ws`
 * @param {string} name `live/test`, `test` or `rtsp://...`
 * @param {{appKey?: string, token?: string}} [params]
 * @returns {string}
 */
export function wsPlayUrl(sessionUrl, name, { appKey, token } = {}) {
  const u = new URL(sessionUrl);
  u.pathname = /\/ws\/?$/.test(u.pathname) ? u.pathname.replace(/\/?$/, '/play') : '/ws/play';
  let search = `?name=${encodeURIComponent(name)}`;
  if (appKey) search += `&appKey=${encodeURIComponent(appKey)}`;
  if (token) search += `&token=${encodeURIComponent(token)}`;
  u.search = search;
  u.hash = '';
  return u.toString();
}

/**
 * One play over the media WebSocket into a video element. The owner (Stream) gets the server's
 * `status` messages through `onStatus` and the player's own ends (socket lost, a browser that
 * cannot play the media) through `onEnd(status, reason)`; it calls stop() or close().
 */
export class MsePlayer {
  /**
   * @param {object} o
   * @param {string} o.url the `/ws/play` URL (wsPlayUrl)
   * @param {HTMLVideoElement} o.video where the media plays
   * @param {boolean} o.muted start muted (muted autoplay is always allowed)
   * @param {(msg: object) => void} o.onStatus a `status` message of the server
   * @param {(status: string, reason: string) => void} o.onEnd the play ended on the client's side
   */
  constructor({ url, video, muted, onStatus, onEnd }) {
    this.url = url;
    this.video = video;
    this.muted = muted;
    this.onStatus = onStatus;
    this.onEnd = onEnd;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.closed = false;
    // The `init` message whose segment is the next binary message.
    this._pendingInit = null;
    // The last init segment and its message: a media error restarts from them.
    this._lastInit = null;
    this._tracks = null;
    this._mime = null;
    /** @type {MediaSource|null} */
    this._ms = null;
    /** @type {SourceBuffer|null} */
    this._sb = null;
    this._objectUrl = null;
    // Operations on the SourceBuffer, one at a time: {kind: 'append'|'remove'|'changeType', ...}.
    this._ops = [];
    this._queuedBytes = 0;
    // Whether playback was positioned in this MediaSource's buffered media yet, and whether
    // it got close to the live edge since.
    this._positioned = false;
    this._caughtUp = false;
    this._mediaErrors = 0;
    this._timers = [];
    this._lastStats = null;
    this._onVideoError = () => this._videoError();
    this.counters = {
      bytesReceived: 0,
      fragments: 0,
      fragmentsDropped: 0,
      inits: 0,
      jumps: 0,
      videoCodec: null,
      audioCodec: null,
      audio: false,
    };
  }

  /** Opens the socket; media and statuses follow. */
  open() {
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.closed) return;
      if (typeof ev.data === 'string') this._onText(ev.data);
      else this._onBinary(ev.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.closed) return;
      // The server ends a play with a final status before it closes: this is a lost socket.
      this._end('FAILED', 'connection lost');
    };
    const v = this.video;
    v.autoplay = true;
    v.playsInline = true;
    if (this.muted) v.muted = true;
    v.addEventListener('error', this._onVideoError);
    this._timers.push(setInterval(() => this._keepUp(), LATENCY.everyMs));
    this._timers.push(setInterval(() => this._cleanup(), CLEANUP_EVERY_MS));
  }

  /** Tells the server (`stop`) when the socket is open, then closes everything. */
  stop() {
    if (!this.closed && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'stop' }));
    }
    this.close();
  }

  /** Closes the socket and ends the MediaSource (the last picture stays on the video). */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const t of this._timers) clearInterval(t);
    this._timers = [];
    this.video.removeEventListener('error', this._onVideoError);
    const ws = this.ws;
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try {
        ws.close(1000, 'stop');
      } catch (e) {
        /* already closing */
      }
    }
    this._releaseMediaSource(true);
  }

  /**
   * The numbers of this play, in the shape of the SDK's WebRTC play stats where they make sense
   * (frames from getVideoPlaybackQuality(), bitrate from the bytes received) plus the buffer.
   */
  stats() {
    const v = this.video;
    const c = this.counters;
    const q = typeof v.getVideoPlaybackQuality === 'function' ? v.getVideoPlaybackQuality() : null;
    const b = v.buffered;
    const end = b.length > 0 ? b.end(b.length - 1) : null;
    const now = performance.now();
    const out = {
      transport: 'ws',
      width: v.videoWidth || null,
      height: v.videoHeight || null,
      framesPerSecond: null,
      bitrateKbps: null,
      // TCP: nothing is lost on the way (a server-side skip shows as NOT_ENOUGH_BANDWIDTH).
      packetsLost: 0,
      framesDecoded: q ? q.totalVideoFrames : 0,
      framesDropped: q ? q.droppedVideoFrames : 0,
      audioSamples: null,
      videoCodec: c.videoCodec,
      audioCodec: c.audioCodec,
      bytesReceived: c.bytesReceived,
      timestamp: now,
      bufferSeconds: end !== null ? Math.max(0, Math.round((end - v.currentTime) * 1000) / 1000) : null,
      currentTime: v.currentTime,
      playbackRate: v.playbackRate,
      fragments: c.fragments,
      fragmentsDropped: c.fragmentsDropped,
      inits: c.inits,
      jumps: c.jumps,
      audio: c.audio,
      // Chromium only: decoded audio bytes, the proof that audio plays.
      audioDecodedBytes: typeof v.webkitAudioDecodedByteCount === 'number' ? v.webkitAudioDecodedByteCount : null,
    };
    const last = this._lastStats;
    if (last && now > last.timestamp) {
      const secs = (now - last.timestamp) / 1000;
      out.bitrateKbps = Math.max(0, Math.round(((out.bytesReceived - last.bytesReceived) * 8) / 1000 / secs));
      if (out.framesDecoded >= last.framesDecoded) out.framesPerSecond = Math.round((out.framesDecoded - last.framesDecoded) / secs);
    }
    this._lastStats = { timestamp: now, bytesReceived: out.bytesReceived, framesDecoded: out.framesDecoded };
    return out;
  }

  // ---------------------------------------------------------------------------------------------

  /** @private Ends the play from the client's side (once). */
  _end(status, reason) {
    if (this.closed) return;
    this.close();
    this.onEnd(status, reason);
  }

  /** @private A text message: `status` goes to the owner, `init` announces the next binary. */
  _onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      console.warn('mediarouter: not JSON on the media socket', text);
      return;
    }
    if (msg.type === 'status') this.onStatus(msg);
    else if (msg.type === 'init') this._pendingInit = msg;
    else console.debug('mediarouter: unhandled media socket message', msg);
  }

  /** @private A binary message: the init segment announced by `init`, else a media fragment. */
  _onBinary(data) {
    this.counters.bytesReceived += data.byteLength;
    const init = this._pendingInit;
    if (init) {
      this._pendingInit = null;
      this._onInit(init, data);
      return;
    }
    if (!this._ms) return; // media before any init cannot be decoded
    this.counters.fragments++;
    this._enqueue({ kind: 'append', data });
  }

  /**
   * @private An init segment: the same tracks go on in the same SourceBuffer (with changeType()
   * when the codecs string changed); other tracks need a new MediaSource.
   */
  _onInit(msg, data) {
    const c = this.counters;
    c.inits++;
    c.videoCodec = msg.video || null;
    c.audioCodec = msg.audio || null;
    c.audio = !!msg.audio;
    this._lastInit = { msg, data };
    const tracks = `${msg.video || ''}|${msg.audio || ''}`.replace(/[^|]+/g, 'x');
    const MS = window.ManagedMediaSource || window.MediaSource;
    if (MS && typeof MS.isTypeSupported === 'function' && !MS.isTypeSupported(msg.mime)) {
      this._end('FAILED', `codec not supported by this browser: ${msg.mime}`);
      return;
    }
    const reusable = this._ms && this._ms.readyState !== 'closed' && tracks === this._tracks;
    if (!reusable) {
      this._newMediaSource(msg.mime, data);
    } else {
      if (msg.mime !== this._mime) this._enqueue({ kind: 'changeType', mime: msg.mime });
      this._enqueue({ kind: 'append', data, init: true });
    }
    this._tracks = tracks;
    this._mime = msg.mime;
  }

  /** @private A new MediaSource on the video, its SourceBuffer made (for `mime`) once open. */
  _newMediaSource(mime, initData) {
    this._releaseMediaSource(false);
    const managed = !!window.ManagedMediaSource;
    const ms = managed ? new window.ManagedMediaSource() : new window.MediaSource();
    this._ms = ms;
    this._positioned = false;
    this._caughtUp = false;
    this._ops = [{ kind: 'append', data: initData, init: true }];
    this._queuedBytes = initData.byteLength;
    const v = this.video;
    // A MediaStream left on the element by a WebRTC play would win over src.
    v.srcObject = null;
    let attached = false;
    if (managed) {
      // iOS Safari plays a ManagedMediaSource only without AirPlay, and prefers srcObject.
      v.disableRemotePlayback = true;
      try {
        v.srcObject = ms;
        attached = true;
      } catch (e) {
        /* older browsers: an object URL below */
      }
    }
    if (!attached) {
      this._objectUrl = URL.createObjectURL(ms);
      v.src = this._objectUrl;
    }
    ms.addEventListener(
      'sourceopen',
      () => {
        if (this._ms !== ms || this.closed) return;
        let sb;
        try {
          sb = ms.addSourceBuffer(mime);
          // The server's timestamps are the timeline; segments mode keeps them as they are.
          sb.mode = 'segments';
        } catch (e) {
          this._end('FAILED', `cannot play ${mime}: ${e.message}`);
          return;
        }
        this._sb = sb;
        sb.addEventListener('updateend', () => {
          if (this._sb !== sb) return;
          this._afterUpdate();
          this._pump();
        });
        this._pump();
      },
      { once: true },
    );
  }

  /**
   * @private Detaches the current MediaSource: ends it (at a stop, `end`), drops its queued
   * operations and releases its object URL.
   */
  _releaseMediaSource(end) {
    const ms = this._ms;
    const sb = this._sb;
    this._ms = null;
    this._sb = null;
    this._ops = [];
    this._queuedBytes = 0;
    if (end && ms && ms.readyState === 'open' && !(sb && sb.updating)) {
      try {
        ms.endOfStream();
      } catch (e) {
        /* already ended */
      }
    }
    if (this._objectUrl) {
      URL.revokeObjectURL(this._objectUrl);
      this._objectUrl = null;
    }
  }

  /** @private Queues an operation; the waiting media is bounded (dropped, with a warning). */
  _enqueue(op) {
    if (op.kind === 'append') {
      if (!op.init && this._queuedBytes + op.data.byteLength > MAX_QUEUED_BYTES) {
        // The browser does not take the media as fast as it comes: drop what waits (the
        // decoder starts again at the next keyframe) rather than grow without bound.
        const before = this._ops.length;
        this._ops = this._ops.filter((o) => o.kind !== 'append' || o.init);
        const dropped = before - this._ops.length;
        this._queuedBytes = this._ops.reduce((n, o) => n + (o.data ? o.data.byteLength : 0), 0);
        this.counters.fragmentsDropped += dropped;
        console.warn(`mediarouter: media queue over ${MAX_QUEUED_BYTES} bytes: dropped ${dropped} fragments`);
      }
      this._queuedBytes += op.data.byteLength;
    }
    this._ops.push(op);
    this._pump();
  }

  /** @private Runs queued operations until one is in progress (appends and removes are async). */
  _pump() {
    const sb = this._sb;
    const ms = this._ms;
    while (sb && this._sb === sb && !sb.updating && ms.readyState === 'open' && this._ops.length > 0) {
      const op = this._ops[0];
      if (op.kind === 'changeType') {
        this._ops.shift();
        try {
          sb.changeType(op.mime);
        } catch (e) {
          console.warn('mediarouter: changeType failed', op.mime, e.message);
        }
        continue;
      }
      if (op.kind === 'remove') {
        this._ops.shift();
        if (op.end > op.start) {
          sb.remove(op.start, op.end);
          return;
        }
        continue;
      }
      try {
        sb.appendBuffer(op.data);
        this._ops.shift();
        this._queuedBytes -= op.data.byteLength;
        return;
      } catch (e) {
        if (e.name === 'QuotaExceededError' && !op.retried && this._freeSpace(sb)) {
          op.retried = true; // the remove goes first, then this append once more
          continue;
        }
        this._ops.shift();
        this._queuedBytes -= op.data.byteLength;
        this.counters.fragmentsDropped++;
        console.warn(`mediarouter: append failed (${e.name}: ${e.message}), fragment dropped`);
      }
    }
  }

  /** @private Puts a removal of media older than currentTime - 5 s first; false when none. */
  _freeSpace(sb) {
    const b = sb.buffered;
    const upTo = this.video.currentTime - QUOTA_KEEP_BEHIND;
    if (b.length === 0 || upTo <= b.start(0)) return false;
    this._ops.unshift({ kind: 'remove', start: b.start(0), end: upTo });
    return true;
  }

  /** @private After an append: the first media starts the video. */
  _afterUpdate() {
    if (!this._positioned && this.video.buffered.length > 0) this._keepUp();
  }

  /**
   * @private The latency control: puts playback into the buffered media when it is not in it,
   * jumps close to the live edge when far behind, plays a little faster when somewhat behind.
   */
  _keepUp() {
    const v = this.video;
    const b = v.buffered;
    if (this.closed || !this._ms || b.length === 0) return;
    const last = b.length - 1;
    const end = b.end(last);
    const t = v.currentTime;
    if (!this._positioned || t < b.start(0)) {
      // A new MediaSource starts at 0, the stream's media later: start at the newest keyframe.
      this._seek(b.start(last));
      this._positioned = true;
      this._play();
      return;
    }
    let inRange = false;
    for (let i = 0; i < b.length; i++) if (t >= b.start(i) && t <= b.end(i)) inRange = true;
    if (!inRange) {
      // Stuck in a hole (dropped media): go on at the next buffered range.
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) > t) {
          this._seek(b.start(i));
          break;
        }
      }
      return;
    }
    const lag = end - t;
    if (lag <= LATENCY.fastAbove) this._caughtUp = true;
    if (lag > (this._caughtUp ? LATENCY.jumpAbove : LATENCY.fastAbove)) {
      this._seek(end - LATENCY.jumpTo);
      v.playbackRate = 1;
    } else if (lag > LATENCY.fastAbove) {
      if (v.playbackRate !== LATENCY.fastRate) v.playbackRate = LATENCY.fastRate;
    } else if (lag < LATENCY.normalBelow && v.playbackRate !== 1) {
      v.playbackRate = 1;
    }
  }

  /** @private */
  _seek(to) {
    this.video.currentTime = to;
    this.counters.jumps++;
  }

  /** @private Starts the video (muted autoplay is always allowed). */
  _play() {
    const v = this.video;
    if (!v.paused) return;
    v.play().catch((e) => console.debug('mediarouter: video.play() refused for now', e.message));
  }

  /** @private Removes media more than KEEP_BEHIND seconds behind currentTime. */
  _cleanup() {
    const sb = this._sb;
    if (!sb || this.closed) return;
    const b = sb.buffered;
    const upTo = this.video.currentTime - KEEP_BEHIND;
    if (b.length > 0 && b.start(0) < upTo && !this._ops.some((o) => o.kind === 'remove')) {
      this._enqueue({ kind: 'remove', start: b.start(0), end: upTo });
    }
  }

  /**
   * @private The browser could not decode the media (the element's error closes the
   * MediaSource): start again on a new MediaSource with the last init segment (the decoder
   * waits for the next keyframe), a few times, then give up.
   */
  _videoError() {
    if (this.closed || !this._ms) return;
    const err = this.video.error;
    const what = err ? `${err.code}${err.message ? ' ' + err.message : ''}` : 'unknown';
    this._mediaErrors++;
    if (this._mediaErrors > MAX_MEDIA_ERRORS || !this._lastInit) {
      this._end('FAILED', `media error in the browser: ${what}`);
      return;
    }
    console.warn(`mediarouter: media error (${what}), starting a new MediaSource`);
    this._newMediaSource(this._lastInit.msg.mime, this._lastInit.data);
  }
}
