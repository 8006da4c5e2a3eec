// What the pages that play or publish (Player, Two-Way Streaming, Video Chat) share: the event
// log, the status badges, the live stats, the signalling session with its #session-info line, the
// Unmute button and the forms. Plain ES module, no dependencies but the SDK.

import { Session, SESSION_STATUS, EVENT } from './sdk/mediarouter.js';

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** `PREFIX-name`, or `name` alone without a prefix. */
const prefixed = (prefix, name) => (prefix ? `${prefix}-${name}` : name);

/** Adds a timed line at the top of the #log list (the newest 100 are kept). */
export function log(text) {
  const logList = $('log');
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, text);
  logList.prepend(li);
  while (logList.children.length > 100) logList.lastChild.remove();
}

/** Shows `value` in the element `id`, a dash when there is none (null, undefined or ''). */
export function setText(id, value) {
  $(id).textContent = value === null || value === undefined || value === '' ? '–' : String(value);
}

/**
 * Shows a stream status in the badge #PREFIX-status and the server's reason in #PREFIX-reason
 * (#status and #reason when `prefix` is null).
 */
export function showStatus(prefix, status, reason) {
  const badge = $(prefixed(prefix, 'status'));
  badge.textContent = status;
  badge.dataset.status = status;
  $(prefixed(prefix, 'reason')).textContent = reason || '';
}

/** `LABEL: STATUS – reason`, the log line of a stream status event. */
export function statusLine(label, e) {
  return `${label}: ${e.status}${e.reason ? ' – ' + e.reason : ''}`;
}

/** The resolution, frame rate and bitrate of SDK stats (a play's or a publish's), as shown. */
export function statsText(s) {
  return {
    resolution: s.width && s.height ? `${s.width}x${s.height}` : null,
    fps: s.framesPerSecond != null ? Math.round(s.framesPerSecond) : null,
    bitrate: s.bitrateKbps != null ? `${s.bitrateKbps} kbps` : null,
  };
}

/** The codecs of SDK stats as shown: `H264 + opus`. */
export function codecsText(s) {
  return [s.videoCodec, s.audioCodec].filter(Boolean).join(' + ');
}

/** Shows each value in #PREFIX-KEY (a dash for none). */
export function showStats(prefix, values) {
  for (const [key, value] of Object.entries(values)) setText(prefixed(prefix, key), value);
}

/** Shows a dash in #PREFIX-KEY for each key. */
export function clearStats(prefix, keys) {
  for (const key of keys) setText(prefixed(prefix, key), null);
}

/**
 * Reads `stream.getStats()` and hands them to `show` unless `current()` says the page moved on
 * to another stream meanwhile. A failed read (or no peer connection) shows nothing.
 */
export async function refreshStats(stream, current, show) {
  const s = await stream.getStats().catch(() => null);
  if (s && current()) show(s);
}

/**
 * The page's signalling session, connected: `state.session` while it is ESTABLISHED, else a new
 * one (kept in `state.session`). Its status changes go to the log and to #session-info (with the
 * server's name when `showServer`), its errors to the log; `onStatus(e)` sees each status event
 * after that, and `onConnect()` runs just before a new session connects.
 * @param {{session: Session|null}} state
 * @param {{showServer?: boolean, onStatus?: (e: object) => void, onConnect?: () => void}} [options]
 * @returns {Promise<Session>}
 */
export async function connectSession(state, { showServer = true, onStatus = null, onConnect = null } = {}) {
  if (state.session && state.session.status === SESSION_STATUS.ESTABLISHED) return state.session;
  const s = new Session();
  state.session = s;
  s.on(EVENT.STATUS, (e) => {
    log(`session ${e.status}${e.reason ? ': ' + e.reason : ''}`);
    const server = showServer ? ` · ${s.server || ''}` : '';
    $('session-info').textContent = e.status === SESSION_STATUS.ESTABLISHED ? `session ${s.sessionId || ''}${server}` : `session ${e.status.toLowerCase()}`;
    if (onStatus) onStatus(e);
  });
  s.on(EVENT.ERROR, (e) => log(`server error ${e.code}: ${e.message}`));
  if (onConnect) onConnect();
  await s.connect();
  return s;
}

/** Disconnects the page's session (`state.session`) when the page goes away. */
export function disconnectOnLeave(state) {
  window.addEventListener('pagehide', () => {
    if (state.session) state.session.disconnect();
  });
}

/**
 * Wires the #unmute button to the played stream `current()` shown on `video`: a click unmutes
 * it (a user gesture) or mutes it again. Returns the function that sets the button's label.
 */
export function unmuteButton(video, current) {
  const button = $('unmute');
  const update = () => {
    button.textContent = video.muted ? 'Unmute' : 'Mute';
  };
  button.addEventListener('click', () => {
    const stream = current();
    if (!stream) return;
    if (video.muted) stream.unmute().then(update);
    else {
      stream.mute();
      update();
    }
  });
  return update;
}

/** Runs `action` when the form `formId` is submitted (the page stays). */
export function onSubmit(formId, action) {
  $(formId).addEventListener('submit', (ev) => {
    ev.preventDefault();
    action();
  });
}
