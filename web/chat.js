// Video chat page: publishes this browser's camera and microphone under "your name" and plays
// "the other participant's name" on one signalling session. The other may not be publishing
// yet: a play that ends with FAILED "stream not found" (or STOPPED because the other left) is
// tried again every 2 s, at most MAX_RETRIES times in a row. URL parameters: ?me=NAME&other=NAME
// fill the names, &start=1 starts at load.

import { SESSION_STATUS, STREAM_STATUS, EVENT } from './sdk/mediarouter.js';
import { $, log, showStatus, statusLine, connectSession, disconnectOnLeave, unmuteButton, onSubmit } from './page.js';

/** Seconds between two plays of the other participant. */
const RETRY_MS = 2000;
/** Plays of the other participant in a row before giving up. */
const MAX_RETRIES = 30;

const FINAL = [STREAM_STATUS.STOPPED, STREAM_STATUS.FAILED];

/** Page state, also reachable as window.chat for debugging and tests. */
const chat = { session: null, local: null, remote: null, retries: 0, totalRetries: 0, retryTimer: null, active: false };
window.chat = chat;

function callUi(active) {
  $('start').disabled = active;
  $('hangup').disabled = !active;
  $('unmute').disabled = !active;
  $('my-name').disabled = active;
  $('other-name').disabled = active;
}

/** The session, connected; its end ends the call. */
function session() {
  return connectSession(chat, {
    showServer: false,
    onStatus: (e) => {
      if (e.status === SESSION_STATUS.DISCONNECTED || e.status === SESSION_STATUS.FAILED) hangup(false);
    },
  });
}

/** Whether a play's end means "the other is not (or no longer) publishing": worth a retry. */
function otherAbsent(e) {
  const reason = (e.reason || '').toLowerCase();
  if (e.status === STREAM_STATUS.FAILED) return reason.includes('not found');
  return !reason.includes('client') && !reason.includes('session');
}

function publishMine(s, me) {
  const stream = s.createStream({ name: me, display: $('local-video') });
  chat.local = stream;
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== chat.local) return;
    showStatus('publish', e.status, e.reason);
    log(statusLine(`you (${me})`, e));
  });
  stream.publish().catch(() => {});
}

function playOther(s, other) {
  if (!chat.active) return;
  const stream = s.createStream({ name: other, display: $('remote-video') });
  chat.remote = stream;
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== chat.remote) return;
    showStatus('play', e.status, e.reason);
    log(statusLine(other, e));
    if (e.status === STREAM_STATUS.PLAYING) chat.retries = 0;
    if (FINAL.includes(e.status) && chat.active && otherAbsent(e)) scheduleRetry(s, other);
  });
  stream.play().catch(() => {});
}

function scheduleRetry(s, other) {
  if (chat.retries >= MAX_RETRIES) {
    showStatus('play', STREAM_STATUS.FAILED, `${other} did not publish after ${MAX_RETRIES} tries`);
    log(`giving up on ${other}`);
    return;
  }
  chat.retries += 1;
  chat.totalRetries += 1;
  showStatus('play', 'WAITING', `${other} is not publishing yet; try ${chat.retries} of ${MAX_RETRIES} in ${RETRY_MS / 1000} s`);
  clearTimeout(chat.retryTimer);
  chat.retryTimer = setTimeout(() => {
    if (chat.active && s.status === SESSION_STATUS.ESTABLISHED) playOther(s, other);
  }, RETRY_MS);
}

async function start() {
  const me = $('my-name').value.trim();
  const other = $('other-name').value.trim();
  if (!me) return $('my-name').focus();
  if (!other) return $('other-name').focus();
  if (me === other) {
    showStatus('play', STREAM_STATUS.FAILED, 'your name and the other participant\'s must differ');
    return;
  }
  $('me-label').textContent = me;
  $('other-label').textContent = other;
  callUi(true);
  chat.active = true;
  chat.retries = 0;
  showStatus('publish', 'CONNECTING');
  showStatus('play', 'CONNECTING');
  let s;
  try {
    s = await session();
  } catch (e) {
    showStatus('publish', STREAM_STATUS.FAILED, e.message);
    showStatus('play', STREAM_STATUS.FAILED, e.message);
    chat.active = false;
    callUi(false);
    return;
  }
  publishMine(s, me);
  playOther(s, other);
}

/** Ends the call: no more retries, both streams stopped. */
function hangup(stop = true) {
  if (!chat.active) return;
  chat.active = false;
  clearTimeout(chat.retryTimer);
  if (stop) {
    if (chat.local) chat.local.stop();
    if (chat.remote) chat.remote.stop();
  }
  if ($('play-status').textContent === 'WAITING') showStatus('play', STREAM_STATUS.STOPPED, 'hung up');
  callUi(false);
  log('hung up');
}

onSubmit('chat-form', start);
$('hangup').addEventListener('click', () => hangup());
unmuteButton($('remote-video'), () => chat.remote);
disconnectOnLeave(chat);

const params = new URLSearchParams(location.search);
if (params.get('me')) $('my-name').value = params.get('me');
if (params.get('other')) $('other-name').value = params.get('other');
if (params.get('me') && params.get('other') && ['1', 'true', 'yes'].includes(params.get('start'))) start();
