// mediarouter browser SDK: a Session is one WebSocket to the server's /ws signalling endpoint
// (web/sdk/PROTOCOL.md); each Stream on it either plays one server stream (an RTMP publish, a
// WebRTC publish, an IP camera by its rtsp:// URL) into a <video> element, over an
// RTCPeerConnection or as fMP4 on a WebSocket of its own into Media Source Extensions (mse.js),
// or publishes the browser's camera and microphone (H.264 + Opus) under a name. Every status
// change is an event; getStats() reads the receiver (play) or sender (publish) numbers. A viewer
// may send small JSON messages to the publisher of what it plays (stream.send()); a publishing
// page gets them as `message` events. Plain ES module, no dependencies, no build step.
//
//   import { Session, SESSION_STATUS, STREAM_STATUS } from '/sdk/mediarouter.js';
//   const session = await Session.connect();
//   const stream = session.createStream({ name: 'test', display: document.querySelector('video') });
//   stream.on(STREAM_STATUS.PLAYING, () => console.log('playing'));
//   await stream.play();
//
//   const mine = session.createStream({ name: 'doctor', display: document.querySelector('#me') });
//   await mine.publish();                // camera + mic, resolves when PUBLISHING

import { MsePlayer, mseSupported, wsPlayUrl } from './mse.js';

/** SDK version (not the server's). */
export const VERSION = '0.1.0';

/**
 * Session statuses, as the `status` of a Session and the name of its status events.
 * @readonly
 * @enum {string}
 */
export const SESSION_STATUS = Object.freeze({
  /** Created, not connected yet. */
  NEW: 'NEW',
  /** WebSocket opening or `connect` sent, waiting for ESTABLISHED. */
  PENDING: 'PENDING',
  /** The server accepted the session: streams may be played. */
  ESTABLISHED: 'ESTABLISHED',
  /** Ended normally (client disconnect, server goodbye, socket closed after ESTABLISHED). */
  DISCONNECTED: 'DISCONNECTED',
  /** Ended on an error (cannot connect, refused by the application with a reason, timed out). */
  FAILED: 'FAILED',
});

/**
 * Stream statuses, as the `status` of a Stream and the name of its status events. All but NEW
 * come from the server's `status` messages; the SDK itself sets FAILED when the session or the
 * peer connection breaks, and STOPPED when the session is closed under a playing stream.
 * @readonly
 * @enum {string}
 */
export const STREAM_STATUS = Object.freeze({
  NEW: 'NEW',
  /** play accepted; negotiating, or waiting for the publisher / camera. */
  PENDING: 'PENDING',
  /** media is being sent to this viewer. */
  PLAYING: 'PLAYING',
  /** (publish) the server receives this browser's media. */
  PUBLISHING: 'PUBLISHING',
  /** the publisher went away; waiting for a republish (then PLAYING again). */
  UNPUBLISHED: 'UNPUBLISHED',
  /** the viewer cannot keep up: the server skipped to a keyframe; playback goes on. */
  NOT_ENOUGH_BANDWIDTH: 'NOT_ENOUGH_BANDWIDTH',
  /** ended normally (final for this play). */
  STOPPED: 'STOPPED',
  /** ended on an error, see `reason` (final for this play). */
  FAILED: 'FAILED',
});

/**
 * Event names other than statuses.
 * @readonly
 * @enum {string}
 */
export const EVENT = Object.freeze({
  /** Session and Stream: every status change, with {status, reason, info}. */
  STATUS: 'status',
  /** Session: an `error` message from the server, {code, message, ref}. Stream: errors about it. */
  ERROR: 'error',
  /** Stream (publish): a viewer's `send`, {from, data} (`from`: the viewer's session id).
   * Session: the same for any of its publishes, {streamId, from, data}. */
  MESSAGE: 'message',
  /** Session: every message received from the server (parsed JSON), for debugging. */
  RECEIVED: 'received',
  /** Stream: the MediaStream got a track, {track, mediaStream}. */
  TRACK: 'track',
  /** Stream: RTCPeerConnection connection state, {state}. */
  CONNECTION_STATE: 'connectionstate',
  /** Stream (publish): the local camera/microphone MediaStream is ready, {mediaStream}. */
  LOCAL_STREAM: 'localstream',
});

/**
 * Video codecs a publish may ask for (`videoCodec` option). The server takes H.264 (every kind
 * of player gets it) and VP8 (WebRTC viewers only: RTMP cannot carry it); it refuses an offer
 * with neither (FAILED "codec not supported: ...").
 * @readonly
 * @enum {string}
 */
export const VIDEO_CODEC = Object.freeze({
  /** H.264 first (packetization-mode=1 first, constrained baseline 42e01f first among those),
   * the browser's other codecs after it. The default. */
  H264: 'H264',
  /** VP8 only. */
  VP8: 'VP8',
  /** VP9 only (refused by the server). */
  VP9: 'VP9',
  /** AV1 only (refused by the server). */
  AV1: 'AV1',
});

/**
 * Media transports of a play (`transport` option).
 * @readonly
 * @enum {string}
 */
export const TRANSPORT = Object.freeze({
  /** WebRTC where the browser has it, except for streams whose H.264 has B-frames (they play
   * smoothly over 'ws' only): the server's `describe` tells. The default. */
  AUTO: 'auto',
  /** RTCPeerConnection (H.264 + Opus or G.711). */
  WEBRTC: 'webrtc',
  /** fMP4 over a WebSocket into Media Source Extensions (H.264 + AAC). Play only. */
  WS: 'ws',
});

/** Largest `data` of stream.send(), serialised (the server refuses more). */
export const MAX_SEND_BYTES = 8192;

/** How long play() with transport 'auto' waits for the server's `description` (ms). */
const DESCRIBE_TIMEOUT_MS = 2000;

const FINAL_STREAM = new Set([STREAM_STATUS.STOPPED, STREAM_STATUS.FAILED]);

/** What getStats() reads for each direction: the RTP entries and the names of their counters. */
const STATS_SIDE = Object.freeze({
  play: {
    rtp: 'inbound-rtp',
    bytes: 'bytesReceived',
    frames: 'framesDecoded',
    packets: 'packetsReceived',
    videoPackets: 'videoPacketsReceived',
    audioPackets: 'audioPacketsReceived',
  },
  publish: {
    rtp: 'outbound-rtp',
    bytes: 'bytesSent',
    frames: 'framesSent',
    packets: 'packetsSent',
    videoPackets: 'videoPacketsSent',
    audioPackets: 'audioPacketsSent',
  },
});
const FINAL_SESSION = new Set([SESSION_STATUS.DISCONNECTED, SESSION_STATUS.FAILED]);

/** The signalling URL of the page's own server: ws(s)://HOST/ws. */
export function defaultUrl() {
  if (typeof location === 'undefined' || !location.host) return 'ws://127.0.0.1:8080/ws';
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** A minimal event emitter: on/once/off/emit; a throwing handler does not stop the others. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
  }

  /**
   * Adds a handler for an event (a status name such as 'PLAYING', or an EVENT value).
   * @param {string} event
   * @param {(data: any) => void} handler
   * @returns {this}
   */
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return this;
  }

  /**
   * Like on(), for the next occurrence only.
   * @param {string} event
   * @param {(data: any) => void} handler
   * @returns {this}
   */
  once(event, handler) {
    const wrapped = (data) => {
      this.off(event, wrapped);
      handler(data);
    };
    return this.on(event, wrapped);
  }

  /**
   * Removes a handler (or every handler of the event when none is given).
   * @param {string} event
   * @param {Function} [handler]
   * @returns {this}
   */
  off(event, handler) {
    const set = this._handlers.get(event);
    if (set) {
      if (handler) set.delete(handler);
      else set.clear();
    }
    return this;
  }

  /** @protected */
  _emit(event, data) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        handler(data);
      } catch (e) {
        console.error(`mediarouter: a '${event}' handler threw`, e);
      }
    }
  }
}

/**
 * @typedef {object} SessionOptions
 * @property {string} [url] signalling URL, default ws(s)://<page host>/ws
 * @property {string} [appKey] application of names without one (server default: `live`)
 * @property {string} [token] passed to the server with `connect`: the application's backend
 *   sees it, and a publish or play without a token of its own uses it
 * @property {object} [custom] any fields, passed to the server with `connect`
 * @property {RTCIceServer[]} [iceServers] default ICE servers of the session's streams (none
 *   needed on a LAN or loopback)
 * @property {number} [timeoutMs] how long to wait for ESTABLISHED (default 10000)
 */

/**
 * One signalling session: one WebSocket, any number of streams.
 *
 * Events: each SESSION_STATUS value ('ESTABLISHED', 'DISCONNECTED', 'FAILED', ...) with
 * {status, reason, sessionId}; 'status' for every change; 'error' for server `error` messages
 * ({code, message, ref}); 'message' for a viewer's message to one of its publishes ({streamId,
 * from, data}); 'received' for every message received.
 */
export class Session extends Emitter {
  /** @param {SessionOptions} [options] */
  constructor(options = {}) {
    super();
    this.options = { timeoutMs: 10000, ...options };
    this.url = options.url || defaultUrl();
    /** @type {string} */
    this.status = SESSION_STATUS.NEW;
    /** @type {string|undefined} reason of the last DISCONNECTED/FAILED */
    this.reason = undefined;
    /** @type {string|undefined} */
    this.sessionId = undefined;
    /** @type {string|undefined} the server's name and version */
    this.server = undefined;
    /** @type {number|undefined} the server's keepalive timeout */
    this.keepaliveMs = undefined;
    /** @type {Map<string, Stream>} streams by streamId */
    this.streams = new Map();
    /** @type {WebSocket|null} */
    this.ws = null;
    this._nextId = 1;
    this._pongWaiters = [];
    // describe() calls waiting for their `description`: {name, resolve}.
    this._describeWaiters = [];
    this._connecting = null;
  }

  /**
   * Creates a session and connects it: resolves once ESTABLISHED, rejects on FAILED or timeout
   * (see connect()).
   * @param {SessionOptions} [options]
   * @returns {Promise<Session>}
   */
  static connect(options) {
    return new Session(options).connect();
  }

  /**
   * Opens the WebSocket, sends `connect` and waits for ESTABLISHED. Rejects when the session
   * ends first: the application refused it (the server's `session` FAILED, its reason, e.g.
   * "the token has expired" or a backend's), the socket could not open or closed, or no answer
   * came within `timeoutMs`. The error's message is the reason; it also has `status` ('FAILED' or
   * 'DISCONNECTED') and `reason`. The session emits its FAILED status (with the reason) first.
   * @returns {Promise<Session>}
   */
  connect() {
    if (this._connecting) return this._connecting;
    if (this.status === SESSION_STATUS.ESTABLISHED) return Promise.resolve(this);
    this._connecting = new Promise((resolve, reject) => {
      const done = (err) => {
        clearTimeout(timer);
        this.off(SESSION_STATUS.ESTABLISHED, onOk).off(SESSION_STATUS.FAILED, onEnd);
        this.off(SESSION_STATUS.DISCONNECTED, onEnd);
        this._connecting = null;
        if (err) reject(err);
        else resolve(this);
      };
      const onOk = () => done();
      const onEnd = (e) => {
        const err = new Error(e.reason || `session ${e.status.toLowerCase()}`);
        err.status = e.status;
        err.reason = e.reason;
        done(err);
      };
      const timer = setTimeout(() => {
        this._end(SESSION_STATUS.FAILED, `no answer to connect within ${this.options.timeoutMs} ms`);
      }, this.options.timeoutMs);
      this.on(SESSION_STATUS.ESTABLISHED, onOk).on(SESSION_STATUS.FAILED, onEnd);
      this.on(SESSION_STATUS.DISCONNECTED, onEnd);
      this._open();
    });
    return this._connecting;
  }

  /** @private */
  _open() {
    this.reason = undefined;
    this._setStatus(SESSION_STATUS.PENDING);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._end(SESSION_STATUS.FAILED, `cannot open ${this.url}: ${e.message}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const msg = { type: 'connect' };
      if (this.options.appKey) msg.appKey = this.options.appKey;
      if (this.options.token) msg.token = this.options.token;
      if (this.options.custom) msg.custom = this.options.custom;
      this.send(msg);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return; // binary frames: WebSocket media transport (#6)
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        console.warn('mediarouter: not JSON from the server', ev.data);
        return;
      }
      this._onMessage(msg);
    };
    ws.onerror = () => {
      // The close event follows with the details.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.status === SESSION_STATUS.ESTABLISHED) {
        this._end(SESSION_STATUS.DISCONNECTED, `socket closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`);
      } else if (!FINAL_SESSION.has(this.status)) {
        this._end(SESSION_STATUS.FAILED, `cannot connect to ${this.url} (${ev.code})`);
      }
    };
  }

  /** @returns {string|undefined} the server's id of this session (`sessionId` of ESTABLISHED,
   * e.g. "s-1a2b3c4d"): what a publisher sees as `from` in the messages of this session's plays */
  get id() {
    return this.sessionId;
  }

  /**
   * Sends one protocol message (an object with a `type`). Returns false when the socket is not
   * open.
   * @param {object} msg
   * @returns {boolean}
   */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Sends `{"type":"ping"}` and resolves with the round-trip time in ms when the `pong` comes;
   * rejects after `timeoutMs`.
   * @param {number} [timeoutMs]
   * @returns {Promise<number>}
   */
  ping(timeoutMs = 5000) {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const waiter = { resolve: () => resolve(performance.now() - started) };
      const timer = setTimeout(() => {
        this._pongWaiters = this._pongWaiters.filter((w) => w !== waiter);
        reject(new Error(`no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      waiter.clear = () => clearTimeout(timer);
      this._pongWaiters.push(waiter);
      if (!this.send({ type: 'ping' })) {
        waiter.clear();
        this._pongWaiters = this._pongWaiters.filter((w) => w !== waiter);
        reject(new Error('session is not connected'));
      }
    });
  }

  /**
   * Asks the server to describe a stream as it is now (`describe`): resolves with its
   * `description` ({name, status, video: {codec, width, height, profile, bFrames}, audio:
   * {codec, sampleRate, channels}}), or null when none comes within `timeoutMs` (an older
   * server, a closed session). Never rejects.
   * @param {string} name `test` or `live/test`
   * @param {number} [timeoutMs]
   * @returns {Promise<object|null>}
   */
  describe(name, timeoutMs = DESCRIBE_TIMEOUT_MS) {
    return new Promise((resolve) => {
      const waiter = {
        name,
        resolve: (d) => {
          clearTimeout(timer);
          this._describeWaiters = this._describeWaiters.filter((w) => w !== waiter);
          resolve(d);
        },
      };
      const timer = setTimeout(() => waiter.resolve(null), timeoutMs);
      this._describeWaiters.push(waiter);
      if (!this.send({ type: 'describe', name })) waiter.resolve(null);
    });
  }

  /**
   * @typedef {object} StreamOptions
   * @property {string} name `test`, `live/test`, or a camera URL `rtsp://user:pass@host/path`
   * @property {HTMLVideoElement|HTMLElement} [display] a <video>, or a container that gets one
   * @property {'auto'|'webrtc'|'ws'} [transport] media transport of play(): 'auto' (default:
   *   'ws' when the browser has no WebRTC or the stream's H.264 has B-frames, else 'webrtc'),
   *   'webrtc', or 'ws' (fMP4 over a WebSocket into Media Source Extensions); see TRANSPORT
   * @property {string} [streamId] unique in the session (default v1, v2, ...)
   * @property {RTCIceServer[]} [iceServers] overrides the session's
   * @property {string} [token] sent with this play or publish (and on the media WebSocket of a
   *   'ws' play) instead of the session's: e.g. a signed token for this one stream
   * @property {boolean} [private] (publish) only one viewer, the first the server admits, may
   *   play the stream; the others get FAILED "the stream is private: another viewer holds it"
   * @property {boolean} [serverOffer] let the server make the offer (default: the client offers)
   * @property {boolean} [muted] start muted (default true: muted autoplay is always allowed)
   * @property {number} [playTimeoutMs] play() rejects when not PLAYING by then (default 0: no
   *   limit; the server's own timeouts end the play with a status)
   * @property {MediaStream} [localStream] (publish) the media to publish; the SDK never stops
   *   the tracks of a stream it was given. Default: getUserMedia(`constraints`).
   * @property {MediaStreamConstraints} [constraints] (publish) for getUserMedia when no
   *   `localStream` is given (default `{video: true, audio: true}`)
   * @property {'H264'|'VP8'|'VP9'|'AV1'} [videoCodec] (publish) 'H264' (default): H.264 offered
   *   first; any other: that codec only (VIDEO_CODEC)
   * @property {number} [publishTimeoutMs] publish() rejects when not PUBLISHING by then
   *   (default 0: no limit)
   */

  /**
   * Creates a stream of this session (nothing is sent until play() or publish()).
   * @param {StreamOptions} options
   * @returns {Stream}
   */
  createStream(options) {
    if (!options || !options.name) throw new Error('createStream: name is required');
    let streamId = options.streamId;
    if (!streamId) {
      do streamId = `v${this._nextId++}`;
      while (this.streams.has(streamId));
    } else if (this.streams.has(streamId)) {
      throw new Error(`createStream: streamId '${streamId}' is taken`);
    }
    const stream = new Stream(this, { ...options, streamId });
    this.streams.set(streamId, stream);
    return stream;
  }

  /** Stops every stream, sends `disconnect` and closes the socket. */
  disconnect() {
    for (const stream of this.streams.values()) {
      if (stream.status !== STREAM_STATUS.NEW) stream._close(STREAM_STATUS.STOPPED, 'session disconnected', true);
    }
    this.send({ type: 'disconnect' });
    const ws = this.ws;
    this._end(SESSION_STATUS.DISCONNECTED, 'disconnected by client');
    if (ws) {
      // Give the disconnect message a moment to leave before closing.
      setTimeout(() => {
        try {
          ws.close(1000, 'bye');
        } catch (e) {
          /* already closed */
        }
      }, 50);
    }
  }

  /** @private */
  _setStatus(status, reason) {
    this.status = status;
    if (reason !== undefined) this.reason = reason;
    const data = { status, reason, sessionId: this.sessionId };
    this._emit(status, data);
    this._emit(EVENT.STATUS, data);
  }

  /** @private */
  _end(status, reason) {
    if (FINAL_SESSION.has(this.status)) return;
    for (const w of this._pongWaiters) w.clear();
    this._pongWaiters = [];
    for (const w of [...this._describeWaiters]) w.resolve(null);
    const ws = this.ws;
    this.ws = null;
    if (ws && status === SESSION_STATUS.FAILED) {
      try {
        ws.close();
      } catch (e) {
        /* ignore */
      }
    }
    const streamStatus = status === SESSION_STATUS.FAILED ? STREAM_STATUS.FAILED : STREAM_STATUS.STOPPED;
    for (const stream of this.streams.values()) {
      if (stream.status !== STREAM_STATUS.NEW) stream._close(streamStatus, `session ${status.toLowerCase()}: ${reason}`, true);
    }
    this._setStatus(status, reason);
  }

  /** @private */
  _onMessage(msg) {
    this._emit(EVENT.RECEIVED, msg);
    const stream = typeof msg.streamId === 'string' ? this.streams.get(msg.streamId) : undefined;
    switch (msg.type) {
      case 'session':
        if (msg.status === SESSION_STATUS.ESTABLISHED) {
          this.sessionId = msg.sessionId;
          this.server = msg.server;
          this.keepaliveMs = msg.keepaliveMs;
          this._setStatus(SESSION_STATUS.ESTABLISHED, msg.reason);
        } else if (FINAL_SESSION.has(msg.status)) {
          this._end(msg.status, msg.reason || 'closed by server');
        } else if (msg.status) {
          this._setStatus(msg.status, msg.reason);
        }
        break;
      case 'pong': {
        const w = this._pongWaiters.shift();
        if (w) {
          w.clear();
          w.resolve();
        }
        break;
      }
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'error': {
        const err = { code: msg.code, message: msg.message, ref: msg.ref };
        this._emit(EVENT.ERROR, err);
        // A server without `describe` (or refusing one): no description will come.
        if (msg.ref === 'describe') for (const w of [...this._describeWaiters]) w.resolve(null);
        const target = typeof msg.ref === 'string' ? this.streams.get(msg.ref) : undefined;
        if (target) target._onError(err);
        break;
      }
      case 'message': {
        // A viewer's `send` to one of our publishes: streamId is the publish's own.
        const data = { streamId: msg.streamId, from: msg.from, data: msg.data };
        if (stream) stream._emit(EVENT.MESSAGE, { from: msg.from, data: msg.data });
        this._emit(EVENT.MESSAGE, data);
        break;
      }
      case 'description':
        for (const w of this._describeWaiters.filter((w) => sameStream(w.name, msg.name))) w.resolve(msg);
        break;
      case 'status':
      case 'answer':
      case 'offer':
      case 'candidate':
        if (stream) stream._onMessage(msg);
        else console.debug(`mediarouter: '${msg.type}' for unknown stream '${msg.streamId}'`);
        break;
      default:
        console.debug('mediarouter: unhandled message', msg);
    }
  }
}

/**
 * @typedef {object} StreamStats
 * @property {'webrtc'|'ws'} transport
 * @property {number|null} width decoded video width
 * @property {number|null} height
 * @property {number|null} framesPerSecond decoded frame rate
 * @property {number|null} bitrateKbps received (audio + video) since the previous getStats()
 * @property {number} packetsLost audio + video
 * @property {number} framesDecoded
 * @property {number} audioSamples totalSamplesReceived
 * @property {string|null} videoCodec e.g. 'H264'
 * @property {string|null} audioCodec e.g. 'opus', 'PCMA'
 * @property {number} bytesReceived audio + video
 * @property {number} videoPacketsReceived
 * @property {number} audioPacketsReceived
 * @property {number} timestamp ms (performance clock of the stats report)
 */

/**
 * @typedef {object} WsStreamStats The stats of a play over transport 'ws': width, height,
 *   framesPerSecond, bitrateKbps, packetsLost (0), framesDecoded, audioSamples (null),
 *   videoCodec ('H264'), audioCodec ('AAC'), bytesReceived and timestamp as in StreamStats, and:
 * @property {'ws'} transport
 * @property {number} framesDropped from getVideoPlaybackQuality()
 * @property {number|null} bufferSeconds buffered media ahead of currentTime
 * @property {number} currentTime
 * @property {number} playbackRate 1, or a little more while catching up
 * @property {number} fragments media fragments received
 * @property {number} fragmentsDropped fragments the browser could not take in time
 * @property {number} inits init segments received (a new one after a republish in another format)
 * @property {number} jumps seeks of the latency control
 * @property {boolean} audio whether the last init segment has an audio track
 * @property {number|null} audioDecodedBytes Chromium's webkitAudioDecodedByteCount
 */

/**
 * @typedef {object} PublishStats
 * @property {number|null} width encoded (sent) video width
 * @property {number|null} height
 * @property {number|null} framesPerSecond sent frame rate
 * @property {number|null} bitrateKbps sent (audio + video) since the previous getStats()
 * @property {number} framesSent
 * @property {number} framesEncoded
 * @property {number} keyFramesEncoded
 * @property {number} pliCount keyframe requests received from the server
 * @property {string|null} videoCodec e.g. 'H264', 'VP8'
 * @property {string|null} videoFmtp the video format's fmtp line, e.g.
 *   'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f'
 * @property {string|null} audioCodec e.g. 'opus'
 * @property {number} bytesSent audio + video
 * @property {number} videoPacketsSent
 * @property {number} audioPacketsSent
 * @property {number} packetsLost as the server reports it (remote-inbound-rtp), audio + video
 * @property {string|null} qualityLimitationReason 'none', 'cpu', 'bandwidth', ...
 * @property {number} timestamp ms (performance clock of the stats report)
 */

/**
 * One stream of a session: played with play(), or published with publish().
 *
 * Events: each STREAM_STATUS value with {status, reason, info, name, streamId}; 'status' for
 * every change; 'track' when a media track arrives (play); 'localstream' when the camera and
 * microphone are ready (publish); 'message' when a viewer of this publish sends something
 * ({from, data}); 'connectionstate'; 'error' for server errors that name this stream.
 */
export class Stream extends Emitter {
  /**
   * Use Session.createStream().
   * @param {Session} session
   * @param {StreamOptions & {streamId: string}} options
   */
  constructor(session, options) {
    super();
    this.session = session;
    this.options = {
      transport: TRANSPORT.AUTO,
      muted: true,
      serverOffer: false,
      playTimeoutMs: 0,
      videoCodec: VIDEO_CODEC.H264,
      publishTimeoutMs: 0,
      ...options,
    };
    /** @type {string} what is played or published: `test`, `live/test` (or a camera URL to play) */
    this.name = options.name;
    /** @type {string} the streamId of the protocol */
    this.id = options.streamId;
    if (!Object.values(TRANSPORT).includes(this.options.transport)) {
      throw new Error(`unknown transport '${this.options.transport}' (${Object.values(TRANSPORT).join(', ')})`);
    }
    /** @type {string} the transport in use once play() or publish() started ('webrtc' or 'ws'),
     * the `transport` option before */
    this.transport = this.options.transport;
    /** @type {string} */
    this.status = STREAM_STATUS.NEW;
    /** @type {string|undefined} */
    this.reason = undefined;
    /** @type {object|undefined} `info` of the last status ({video, audio}) */
    this.info = undefined;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {MsePlayer|null} the play over transport 'ws' */
    this._mse = null;
    // play() is choosing its transport ('auto': waiting for the server's description).
    this._choosing = false;
    // Counts play()/publish() attempts: an async step of an older one does nothing.
    this._attempt = 0;
    /** @type {MediaStream|null} the received media (play) */
    this.mediaStream = null;
    /** @type {MediaStream|null} the published camera/microphone (publish), for a preview */
    this.localStream = null;
    /** @type {'play'|'publish'|null} what the last play()/publish() call does */
    this.direction = null;
    /** @type {HTMLVideoElement|null} */
    this.video = resolveDisplay(options.display);
    this._pendingCandidates = [];
    this._remoteSet = false;
    this._lastStats = null;
    this._playing = null;
    this._ended = false;
    // Whether the play/publish message went out (a stop before it needs no server answer).
    this._announced = false;
    // Whether the SDK acquired localStream (then it stops its tracks at the end).
    this._ownsLocal = false;
    // Publish: our own ICE candidates held until the server's answer (see _startPublish).
    this._localCandidates = null;
  }

  /**
   * A promise that resolves when the status becomes `wanted`, rejects when the stream ends first
   * or after `timeoutMs` (0: no limit). It never counts as an unhandled rejection: status events
   * already tell the same.
   * @private
   */
  _waitFor(wanted, timeoutMs) {
    const p = new Promise((resolve, reject) => {
      let timer = null;
      const cleanup = () => {
        clearTimeout(timer);
        this.off(EVENT.STATUS, onStatus);
      };
      const onStatus = (e) => {
        if (e.status === wanted) {
          cleanup();
          resolve(this);
        } else if (FINAL_STREAM.has(e.status)) {
          cleanup();
          reject(new Error(`${e.status}: ${e.reason || 'no reason'}`));
        }
      };
      this.on(EVENT.STATUS, onStatus);
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          this.off(EVENT.STATUS, onStatus);
          reject(new Error(`not ${wanted} within ${timeoutMs} ms (status ${this.status})`));
        }, timeoutMs);
      }
    });
    p.catch(() => {});
    return p;
  }

  /** @private Resets the per-attempt state before a play() or publish(). */
  _reset(direction) {
    if (!this.session.streams.has(this.id)) this.session.streams.set(this.id, this);
    this.direction = direction;
    this._attempt++;
    this._choosing = false;
    this.transport = direction === 'publish' ? TRANSPORT.WEBRTC : this.options.transport;
    this._remoteSet = false;
    this._pendingCandidates = [];
    this._localCandidates = null;
    this._lastStats = null;
    this._ended = false;
    this._announced = false;
    this.reason = undefined;
    this.info = undefined;
  }

  /**
   * Starts playing: chooses the transport ('auto': see TRANSPORT), then either creates the peer
   * connection and negotiates, or opens the media WebSocket; attaches the media to the display.
   * Resolves with the stream when it is PLAYING, rejects when it ends first (STOPPED/FAILED) or
   * after `playTimeoutMs`. Status events fire either way; `transport` tells which one plays.
   * @returns {Promise<Stream>}
   */
  play() {
    const notReady = this._notReady(null);
    if (notReady) return Promise.reject(notReady);
    if (this.pc || this._mse || this._choosing) return this._playing || Promise.resolve(this);
    return this._begin('play', STREAM_STATUS.PLAYING, this.options.playTimeoutMs, () => this._startPlay());
  }

  /**
   * @private Play: the transport (at once, or once the server described the stream), then it.
   * A known transport starts before the first await, as play() always did.
   */
  async _startPlay() {
    const chosen = this._chooseTransport();
    if (typeof chosen === 'string') return this._startTransport(chosen);
    const attempt = this._attempt;
    this._choosing = true;
    const transport = await chosen;
    if (attempt !== this._attempt) return undefined;
    this._choosing = false;
    // Stopped while waiting for the description.
    if (this._ended) return undefined;
    return this._startTransport(transport);
  }

  /** @private */
  _startTransport(transport) {
    this.transport = transport;
    return transport === TRANSPORT.WS ? this._startWs() : this._startWebrtc();
  }

  /**
   * @private The transport of this play: the option when it names one; for 'auto', 'ws' without
   * RTCPeerConnection, else 'ws' when the server describes H.264 with B-frames (which WebRTC
   * plays badly) and the browser has MSE, else 'webrtc' (camera URLs and unknown streams too).
   * @returns {string|Promise<string>}
   */
  _chooseTransport() {
    const wanted = this.options.transport;
    if (wanted !== TRANSPORT.AUTO) return wanted;
    if (typeof window === 'undefined' || typeof window.RTCPeerConnection !== 'function') return TRANSPORT.WS;
    if (isCameraUrl(this.name) || !mseSupported()) return TRANSPORT.WEBRTC;
    return this.session.describe(this.name).then((d) => (d && d.video && d.video.bFrames === true ? TRANSPORT.WS : TRANSPORT.WEBRTC));
  }

  /**
   * @private Play over 'ws': fMP4 on the media WebSocket of the session's server into MSE on
   * the display (a <video> of its own, not in the page, when the stream has none).
   */
  async _startWs() {
    if (!mseSupported()) throw new Error('Media Source Extensions are not available in this browser');
    if (!this.video) this.video = document.createElement('video');
    const player = new MsePlayer({
      url: wsPlayUrl(this.session.url, this.name, {
        appKey: this.session.options.appKey,
        token: this.options.token || this.session.options.token,
      }),
      video: this.video,
      muted: this.options.muted,
      onStatus: (msg) => {
        if (this._mse === player) this._onMessage(msg);
      },
      onEnd: (status, reason) => {
        if (this._mse === player) this._close(status, reason, true);
      },
    });
    this._mse = player;
    this._announced = true;
    player.open();
  }

  /**
   * Publishes the local camera and microphone (or the given `localStream`) under this stream's
   * name: gets the media, offers sendonly tracks (H.264 first unless `videoCodec` says
   * otherwise, Opus), trickles ICE both ways and shows the local media on the display (muted).
   * Resolves with the stream when the server says PUBLISHING (media arrives), rejects when it
   * ends first (STOPPED/FAILED: `name in use: ...`, `codec not supported: ...`, a refused
   * camera) or after `publishTimeoutMs`. It may be called again after STOPPED/FAILED.
   * @param {{localStream?: MediaStream, constraints?: MediaStreamConstraints,
   *   videoCodec?: 'H264'|'VP8'|'VP9'|'AV1', publishTimeoutMs?: number}} [options] override the
   *   stream's (`token` and `private` are the stream's: createStream())
   * @returns {Promise<Stream>}
   */
  publish(options = {}) {
    const notReady = this._notReady("transport 'ws' cannot publish: use 'webrtc' or 'auto'");
    if (notReady) return Promise.reject(notReady);
    if (this.pc || this._mse || this._choosing) {
      return this.direction === 'publish' && this._playing ? this._playing : Promise.reject(new Error(`stream is busy (${this.direction})`));
    }
    const opts = { ...this.options, ...options };
    const codec = String(opts.videoCodec || VIDEO_CODEC.H264).toUpperCase();
    if (!Object.values(VIDEO_CODEC).includes(codec)) {
      return Promise.reject(new Error(`unknown videoCodec '${opts.videoCodec}' (${Object.values(VIDEO_CODEC).join(', ')})`));
    }
    return this._begin('publish', STREAM_STATUS.PUBLISHING, opts.publishTimeoutMs || 0, () => this._startPublish({ ...opts, videoCodec: codec }));
  }

  /**
   * @private Why play() or publish() cannot start now, or null: the 'ws' transport when
   * `wsReason` is given (publish), a session that is not ESTABLISHED.
   * @returns {Error|null}
   */
  _notReady(wsReason) {
    if (wsReason && this.options.transport === TRANSPORT.WS) return new Error(wsReason);
    if (this.session.status !== SESSION_STATUS.ESTABLISHED) {
      return new Error(`session is ${this.session.status}, not ESTABLISHED`);
    }
    return null;
  }

  /**
   * @private What play() and publish() share once they may start: resets the attempt, becomes
   * PENDING and runs `start` (the negotiation; a failure ends the stream FAILED "client: ...").
   * Returns the promise of the `wanted` status (see _waitFor).
   */
  _begin(direction, wanted, timeoutMs, start) {
    this._reset(direction);
    this._playing = this._waitFor(wanted, timeoutMs);

    this._setStatus(STREAM_STATUS.PENDING, undefined, undefined, true);
    start().catch((e) => {
      this._close(STREAM_STATUS.FAILED, `client: ${e.message || e}`, true);
    });
    return this._playing;
  }

  /**
   * Stops playing or publishing: sends `stop`, closes the peer connection and (publish) stops
   * the camera and microphone tracks the SDK acquired itself. The status becomes STOPPED when
   * the server confirms (or at once when the session is gone or nothing was sent yet). Over
   * 'ws': sends `stop` on the media socket, closes it and ends the MediaSource; STOPPED at once.
   */
  stop() {
    if (this._ended || this.status === STREAM_STATUS.NEW) return;
    if (this._mse) {
      const player = this._mse;
      this._mse = null;
      player.stop();
      this._close(STREAM_STATUS.STOPPED, 'stopped by client', true);
      return;
    }
    if (!this._announced) {
      // Nothing was sent to the server yet (still getting the camera or making the offer).
      this._close(STREAM_STATUS.STOPPED, 'stopped by client', true);
      return;
    }
    const sent = this.session.send({ type: 'stop', streamId: this.id });
    this._closePeer();
    this._releaseLocal();
    if (!sent) {
      this._close(STREAM_STATUS.STOPPED, 'stopped by client (session closed)', true);
      return;
    }
    // The server answers STOPPED; do not wait for ever if it does not.
    const timer = setTimeout(() => {
      this.off(EVENT.STATUS, onStatus);
      this._close(STREAM_STATUS.STOPPED, 'stopped by client (no answer from the server)', true);
    }, 5000);
    const onStatus = (e) => {
      if (FINAL_STREAM.has(e.status)) {
        clearTimeout(timer);
        this.off(EVENT.STATUS, onStatus);
      }
    };
    this.on(EVENT.STATUS, onStatus);
  }

  /**
   * Sends `data` (any JSON value, at most MAX_SEND_BYTES serialised) to the publisher of the
   * stream this one plays: a publisher on a signalling session gets it as a `message` event
   * ({from: this session's id, data}); an RTMP or camera source gets nothing, and neither does
   * a publisher that is not there (yet). The server says nothing when it passes the message on;
   * it answers an `error` (this stream's 'error' event and the session's) when it cannot:
   * `not_playing` (the server has not attached the play yet), `unknown_stream` (never played, or
   * ended), `bad_request`.
   * @param {*} data
   * @returns {boolean} false when the session's socket is not open
   * @throws {Error} on a publish (messages go from viewers to publishers), on a play over 'ws'
   *   (no signalling stream to send on), on data that is not JSON or too large
   */
  send(data) {
    if (this.direction === 'publish') throw new Error('send: a publish cannot send; its viewers send to it');
    if (this.transport === TRANSPORT.WS && this.direction === 'play') {
      throw new Error("send: a play over 'ws' has no signalling stream; play over 'webrtc'");
    }
    const json = data === undefined ? undefined : JSON.stringify(data);
    if (json === undefined) throw new Error('send: data must be a JSON value');
    const bytes = new TextEncoder().encode(json).length;
    if (bytes > MAX_SEND_BYTES) throw new Error(`send: data is ${bytes} bytes serialised, at most ${MAX_SEND_BYTES}`);
    return this.session.send({ type: 'send', streamId: this.id, data });
  }

  /** Unmutes the display (call from a user gesture: a click). Returns the video's play() promise. */
  unmute() {
    if (!this.video) return Promise.resolve();
    this.video.muted = false;
    return this.video.play().catch((e) => {
      console.warn('mediarouter: unmuted playback refused by the browser', e);
      this.video.muted = true;
      return this.video.play().catch(() => {});
    });
  }

  /** Mutes the display. */
  mute() {
    if (this.video) this.video.muted = true;
  }

  /** @returns {boolean} whether the display is muted (true without a display). */
  get muted() {
    return this.video ? this.video.muted : true;
  }

  /**
   * Statistics. Playing over WebRTC: the receiver's (RTCPeerConnection.getStats() inbound-rtp of
   * audio and video, StreamStats). Playing over 'ws': the video element's and the media
   * socket's (WsStreamStats). Publishing: the sender's (outbound-rtp, PublishStats). The bitrate
   * covers the time since the previous call (null on the first call).
   * @returns {Promise<StreamStats|WsStreamStats|PublishStats|null>} null when nothing plays or
   *   publishes
   */
  async getStats() {
    if (this._mse) return this._mse.stats();
    if (!this.pc) return null;
    if (this.direction === 'publish') return this._publishStats();
    const out = {
      transport: TRANSPORT.WEBRTC,
      width: null,
      height: null,
      framesPerSecond: null,
      bitrateKbps: null,
      packetsLost: 0,
      framesDecoded: 0,
      audioSamples: 0,
      videoCodec: null,
      audioCodec: null,
      bytesReceived: 0,
      videoPacketsReceived: 0,
      audioPacketsReceived: 0,
      timestamp: 0,
    };
    return this._readStats(STATS_SIDE.play, out, (s) => {
      if (s.type !== 'inbound-rtp') return;
      out.packetsLost += s.packetsLost || 0;
      if (s.kind === 'audio') out.audioSamples += s.totalSamplesReceived || 0;
    });
  }

  /** @private Sender statistics (outbound-rtp) of a publish. */
  _publishStats() {
    const out = {
      transport: TRANSPORT.WEBRTC,
      width: null,
      height: null,
      framesPerSecond: null,
      bitrateKbps: null,
      framesSent: 0,
      framesEncoded: 0,
      keyFramesEncoded: 0,
      pliCount: 0,
      videoCodec: null,
      videoFmtp: null,
      audioCodec: null,
      bytesSent: 0,
      videoPacketsSent: 0,
      audioPacketsSent: 0,
      packetsLost: 0,
      qualityLimitationReason: null,
      timestamp: 0,
    };
    return this._readStats(STATS_SIDE.publish, out, (s, codec) => {
      if (s.type === 'remote-inbound-rtp') {
        out.packetsLost += Math.max(0, s.packetsLost || 0);
        return;
      }
      if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
      out.framesEncoded += s.framesEncoded || 0;
      out.keyFramesEncoded += s.keyFramesEncoded || 0;
      out.pliCount += s.pliCount || 0;
      out.qualityLimitationReason = s.qualityLimitationReason ?? out.qualityLimitationReason;
      if (codec && codec.sdpFmtpLine) out.videoFmtp = codec.sdpFmtpLine;
    });
  }

  /**
   * @private Fills `out` (StreamStats or PublishStats) from RTCPeerConnection.getStats(). The
   * `side.rtp` entries (inbound-rtp or outbound-rtp) give what both directions count: bytes,
   * frames, packets, the video size and frame rate, the codecs; `visit(entry, codec)` then sees
   * every entry of the report for the rest. Last, the bitrate (and a frame rate when the browser
   * gives none) since the previous call.
   * @param {typeof STATS_SIDE.play} side
   */
  async _readStats(side, out, visit) {
    const report = await this.pc.getStats();
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s);
    });
    report.forEach((s) => {
      if (s.type !== side.rtp) {
        visit(s, null);
        return;
      }
      const codec = codecs.get(s.codecId);
      const codecName = codec && codec.mimeType ? codec.mimeType.split('/')[1] : null;
      out[side.bytes] += s[side.bytes] || 0;
      out.timestamp = Math.max(out.timestamp, s.timestamp || 0);
      if (s.kind === 'video') {
        out.width = s.frameWidth ?? out.width;
        out.height = s.frameHeight ?? out.height;
        out.framesPerSecond = s.framesPerSecond ?? out.framesPerSecond;
        out[side.frames] += s[side.frames] || 0;
        out[side.videoPackets] += s[side.packets] || 0;
        if (codecName) out.videoCodec = codecName;
      } else if (s.kind === 'audio') {
        out[side.audioPackets] += s[side.packets] || 0;
        if (codecName) out.audioCodec = codecName;
      }
      visit(s, codec);
    });
    const { bytes, frames } = side;
    const last = this._lastStats;
    if (last && out.timestamp > last.timestamp) {
      const secs = (out.timestamp - last.timestamp) / 1000;
      out.bitrateKbps = Math.max(0, Math.round(((out[bytes] - last[bytes]) * 8) / 1000 / secs));
      if (out.framesPerSecond == null && out[frames] >= last[frames]) {
        out.framesPerSecond = Math.round((out[frames] - last[frames]) / secs);
      }
    }
    this._lastStats = { timestamp: out.timestamp, [bytes]: out[bytes], [frames]: out[frames] };
    return out;
  }

  // ---------------------------------------------------------------------------------------------

  /** @private Publish: local media, sendonly transceivers with the codec order, offer. */
  async _startPublish(opts) {
    const pc = this._newPeer(opts);
    // The server takes candidates only once it has made its answer: ours wait for it.
    this._localCandidates = [];

    let local = opts.localStream || null;
    const owned = !local;
    if (!local) {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error('getUserMedia is not available (a secure context, https or localhost, is needed)');
      }
      try {
        local = await navigator.mediaDevices.getUserMedia(opts.constraints || { video: true, audio: true });
      } catch (e) {
        throw new Error(`camera/microphone refused: ${e.name || ''} ${e.message || e}`.trim());
      }
    }
    if (this.pc !== pc) {
      // Stopped while the browser was asking for the camera.
      if (owned) stopTracks(local);
      return;
    }
    this.localStream = local;
    this._ownsLocal = owned;
    if (this.video) this._attachLocal();
    this._emit(EVENT.LOCAL_STREAM, { mediaStream: local });

    const videoTracks = local.getVideoTracks();
    const audioTracks = local.getAudioTracks();
    if (videoTracks.length === 0 && audioTracks.length === 0) throw new Error('the local stream has no track');
    for (const track of videoTracks.slice(0, 1)) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [local] });
      preferVideoCodec(transceiver, opts.videoCodec);
    }
    for (const track of audioTracks.slice(0, 1)) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [local] });
    }
    await this._offer(pc, 'publish');
  }

  /** @private Publish: sends the candidates held until the server's answer. */
  _flushLocalCandidates(pc) {
    if (this.pc !== pc || !this._localCandidates) return;
    const held = this._localCandidates;
    this._localCandidates = null;
    for (const candidate of held) this.session.send({ type: 'candidate', streamId: this.id, candidate });
  }

  /** @private Shows the local media on the display (always muted: no echo). */
  _attachLocal() {
    this._show(this.localStream, true, 'preview play()');
  }

  /** @private Stops the local tracks the SDK acquired (a given localStream is left alone). */
  _releaseLocal() {
    const local = this.localStream;
    if (!local || !this._ownsLocal) return;
    this._ownsLocal = false;
    stopTracks(local);
    if (this.video && this.video.srcObject === local) this.video.srcObject = null;
  }

  /**
   * @private A new peer connection of this stream (play or publish), as `this.pc`: our ICE
   * candidates go to the server (or wait in `_localCandidates` while it is a list), and a failed
   * connection ends the stream FAILED.
   */
  _newPeer(opts) {
    const iceServers = opts.iceServers || this.session.options.iceServers || [];
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    pc.onicecandidate = (ev) => {
      if (this.pc !== pc) return;
      const candidate = ev.candidate ? ev.candidate.toJSON() : null;
      if (this._localCandidates) this._localCandidates.push(candidate);
      else this.session.send({ type: 'candidate', streamId: this.id, candidate });
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      this._emit(EVENT.CONNECTION_STATE, { state: pc.connectionState });
      if (pc.connectionState === 'failed' && !FINAL_STREAM.has(this.status)) {
        this.session.send({ type: 'stop', streamId: this.id });
        this._close(STREAM_STATUS.FAILED, 'peer connection failed (client side)', true);
      }
    };
    return pc;
  }

  /** @private Makes our offer and sends it as `type` (play or publish), unless stopped meanwhile. */
  async _offer(pc, type) {
    const offer = await pc.createOffer();
    if (this.pc !== pc) return;
    await pc.setLocalDescription(offer);
    if (this.pc !== pc) return;
    this._announced = true;
    this.session.send(this._request(type, { sdp: pc.localDescription.sdp }));
  }

  /**
   * @private The `play` or `publish` message of this stream with `fields`: its own `token` when
   * it has one (else the server uses the session's), `private` on a private publish.
   */
  _request(type, fields) {
    const msg = { type, streamId: this.id, name: this.name, ...fields };
    if (this.options.token) msg.token = this.options.token;
    if (type === 'publish' && this.options.private) msg.private = true;
    return msg;
  }

  /** @private Play: recvonly transceivers (or the server's offer), the media on the display. */
  async _startWebrtc() {
    const pc = this._newPeer(this.options);
    this.mediaStream = new MediaStream();
    if (this.video) this._attach();

    pc.ontrack = (ev) => {
      if (this.pc !== pc) return;
      this.mediaStream.addTrack(ev.track);
      if (this.video) this._attach();
      this._emit(EVENT.TRACK, { track: ev.track, mediaStream: this.mediaStream });
    };

    if (this.options.serverOffer) {
      // The server sends an `offer`; _onMessage answers it.
      this._announced = true;
      this.session.send(this._request('play', {}));
      return;
    }
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await this._offer(pc, 'play');
  }

  /** @private Puts the MediaStream on the video element (muted autoplay). */
  _attach() {
    this._show(this.mediaStream, this.options.muted, 'video.play()');
  }

  /**
   * @private Puts `media` on the display (autoplay, inline, muted when `muted`) and starts the
   * video once the media has a track; `what` names the play() call in the debug message.
   */
  _show(media, muted, what) {
    const v = this.video;
    if (v.srcObject !== media) {
      v.srcObject = media;
      v.autoplay = true;
      v.playsInline = true;
      if (muted) v.muted = true;
    }
    if (media.getTracks().length > 0 && v.paused) {
      v.play().catch((e) => console.debug(`mediarouter: ${what} refused for now`, e.message));
    }
  }

  /** @private */
  _onMessage(msg) {
    const pc = this.pc;
    switch (msg.type) {
      case 'status':
        if (msg.status === STREAM_STATUS.STOPPED || msg.status === STREAM_STATUS.FAILED) {
          this._close(msg.status, msg.reason, false, msg.info);
        } else {
          this._setStatus(msg.status, msg.reason, msg.info);
        }
        break;
      case 'answer':
        if (!pc) return;
        // Publish: the server is ready for our candidates now.
        this._flushLocalCandidates(pc);
        pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp })
          .then(() => this._remoteApplied(pc))
          .catch((e) => this._negotiationFailed(pc, `cannot apply the server's answer: ${e.message}`));
        break;
      case 'offer':
        if (!pc) return;
        pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp })
          .then(() => this._remoteApplied(pc))
          .then(() => pc.createAnswer())
          .then((answer) => pc.setLocalDescription(answer))
          .then(() => {
            if (this.pc === pc) this.session.send({ type: 'answer', streamId: this.id, sdp: pc.localDescription.sdp });
          })
          .catch((e) => this._negotiationFailed(pc, `cannot answer the server's offer: ${e.message}`));
        break;
      case 'candidate':
        if (!pc) return;
        if (!this._remoteSet) this._pendingCandidates.push(msg.candidate);
        else this._addCandidate(pc, msg.candidate);
        break;
      default:
        break;
    }
  }

  /** @private */
  _remoteApplied(pc) {
    if (this.pc !== pc) return;
    this._remoteSet = true;
    const queued = this._pendingCandidates;
    this._pendingCandidates = [];
    for (const c of queued) this._addCandidate(pc, c);
  }

  /** @private */
  _addCandidate(pc, candidate) {
    // null: end of candidates.
    const p = candidate ? pc.addIceCandidate(candidate) : pc.addIceCandidate();
    p.catch((e) => console.warn('mediarouter: addIceCandidate failed', candidate, e.message));
  }

  /** @private */
  _negotiationFailed(pc, reason) {
    if (this.pc !== pc) return;
    this.session.send({ type: 'stop', streamId: this.id });
    this._close(STREAM_STATUS.FAILED, reason, true);
  }

  /** @private */
  _onError(err) {
    this._emit(EVENT.ERROR, err);
    // A play the server refused outright (no status will come for it).
    if (['duplicate_stream', 'too_many_streams', 'bad_request'].includes(err.code) && this.status === STREAM_STATUS.PENDING) {
      this._close(STREAM_STATUS.FAILED, `${err.code}: ${err.message}`, true);
    }
  }

  /** @private */
  _setStatus(status, reason, info, force) {
    if (!force && this.status === status && reason === undefined && info === undefined) return;
    this.status = status;
    this.reason = reason;
    if (info !== undefined) this.info = info;
    const data = { status, reason, info: this.info, name: this.name, streamId: this.id, transport: this.transport };
    this._emit(status, data);
    this._emit(EVENT.STATUS, data);
  }

  /** @private Ends this play or publish with a final status. */
  _close(status, reason, local, info) {
    this._closePeer();
    this._closeMse();
    this._choosing = false;
    this._releaseLocal();
    // The first final status of a play wins (a local STOPPED/FAILED, then the server's own).
    if (this._ended) return;
    this._ended = true;
    this._setStatus(status, reason, info, true);
  }

  /** @private Closes the media socket of a 'ws' play (nothing more is sent on it). */
  _closeMse() {
    const player = this._mse;
    this._mse = null;
    if (player) player.close();
  }

  /** @private */
  _closePeer() {
    const pc = this.pc;
    this.pc = null;
    this._remoteSet = false;
    this._pendingCandidates = [];
    this._localCandidates = null;
    if (pc) {
      try {
        pc.close();
      } catch (e) {
        /* ignore */
      }
    }
  }
}

/** Whether `name` is a camera URL (`rtsp://...`, `rtsps://...`) rather than a stream name. */
function isCameraUrl(name) {
  return /^rtsps?:\/\//i.test(name);
}

/**
 * Whether a `description` of `answered` (as the server names it: `live/test`) answers a
 * describe of `asked` (`test` in the session's application, or `live/test`).
 */
function sameStream(asked, answered) {
  if (typeof answered !== 'string') return false;
  return asked === answered || (!asked.includes('/') && answered.endsWith(`/${asked}`));
}

function stopTracks(mediaStream) {
  for (const track of mediaStream.getTracks()) {
    try {
      track.stop();
    } catch (e) {
      /* ignore */
    }
  }
}

/**
 * Orders the browser's video codec capabilities for a publish. 'H264': the H.264 formats first,
 * packetization-mode=1 before 0 and, among those, constrained baseline (profile-level-id
 * 42e01f) first; then the other codecs as the browser listed them. Any other codec (e.g. 'VP8'):
 * that codec only, with the browser's helper formats (rtx, red, ulpfec, flexfec).
 * @param {RTCRtpCodec[]} codecs from RTCRtpSender/RTCRtpReceiver.getCapabilities('video')
 * @param {string} wanted codec name, e.g. 'H264'
 * @returns {RTCRtpCodec[]}
 */
export function orderVideoCodecs(codecs, wanted) {
  const name = (c) => (c.mimeType || '').split('/')[1]?.toLowerCase() || '';
  const want = String(wanted).toLowerCase();
  const helper = (c) => ['rtx', 'red', 'ulpfec', 'flexfec-03'].includes(name(c));
  const mine = codecs.filter((c) => name(c) === want);
  if (want !== 'h264') return mine.length > 0 ? [...mine, ...codecs.filter(helper)] : [];
  const rank = (c) => {
    const fmtp = (c.sdpFmtpLine || '').toLowerCase();
    const mode1 = /packetization-mode=1/.test(fmtp);
    const cb = /profile-level-id=42e01f/.test(fmtp);
    return (mode1 ? 0 : 2) + (cb ? 0 : 1);
  };
  // Array.prototype.sort is stable: equal ranks keep the browser's order.
  const h264 = mine.map((c, i) => ({ c, i })).sort((a, b) => rank(a.c) - rank(b.c) || a.i - b.i).map((x) => x.c);
  return [...h264, ...codecs.filter((c) => name(c) !== 'h264')];
}

/**
 * Applies orderVideoCodecs() to a video transceiver. Returns false (with a console warning)
 * when the browser cannot set codec preferences; the offer then has the browser's own order
 * (the server still picks H.264 from it).
 * @param {RTCRtpTransceiver} transceiver
 * @param {string} wanted
 */
function preferVideoCodec(transceiver, wanted) {
  if (typeof transceiver.setCodecPreferences !== 'function') {
    console.warn('mediarouter: setCodecPreferences is not supported; offering the browser\'s codec order');
    return false;
  }
  // Browsers have accepted sender capabilities, receiver capabilities or both over time.
  const sources = [globalThis.RTCRtpSender, globalThis.RTCRtpReceiver];
  let lastError = null;
  for (const source of sources) {
    const caps = source && source.getCapabilities ? source.getCapabilities('video') : null;
    if (!caps) continue;
    const ordered = orderVideoCodecs(caps.codecs, wanted);
    if (ordered.length === 0) {
      lastError = new Error(`the browser cannot send ${wanted}`);
      continue;
    }
    try {
      transceiver.setCodecPreferences(ordered);
      return true;
    } catch (e) {
      lastError = e;
    }
  }
  if (wanted.toUpperCase() !== VIDEO_CODEC.H264) throw new Error(`cannot offer ${wanted} only: ${lastError ? lastError.message : 'no capabilities'}`);
  console.warn('mediarouter: codec preferences not applied:', lastError && lastError.message);
  return false;
}

/** @returns {HTMLVideoElement|null} */
function resolveDisplay(display) {
  if (!display) return null;
  if (typeof display === 'string') display = document.querySelector(display);
  if (!display) return null;
  if (display.tagName === 'VIDEO') return display;
  const video = document.createElement('video');
  video.style.width = '100%';
  video.style.height = '100%';
  display.appendChild(video);
  return video;
}
