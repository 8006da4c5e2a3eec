// Two-Way Streaming page: publishes this browser's camera and microphone under a name and plays
// any stream by its name, on one signalling session; each side shows its status (with the
// server's reason) and live stats once a second. URL parameters: ?publish=NAME&play=NAME fill
// the names.

import { Session, SESSION_STATUS, STREAM_STATUS, EVENT } from './sdk/mediarouter.js';

const $ = (id) => document.getElementById(id);
const logList = $('log');

/** Page state, also reachable as window.twoway for debugging and tests. */
const twoway = { session: null, publisher: null, player: null, timer: null };
window.twoway = twoway;

function log(text) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, text);
  logList.prepend(li);
  while (logList.children.length > 100) logList.lastChild.remove();
}

function setText(id, value) {
  $(id).textContent = value === null || value === undefined || value === '' ? '–' : String(value);
}

function showStatus(side, status, reason) {
  const badge = $(`${side}-status`);
  badge.textContent = status;
  badge.dataset.status = status;
  $(`${side}-reason`).textContent = reason || '';
}

const FINAL = [STREAM_STATUS.STOPPED, STREAM_STATUS.FAILED];
const PUBLISH_STATS = ['publish-resolution', 'publish-fps', 'publish-bitrate', 'publish-frames', 'publish-codec'];
const PLAY_STATS = ['play-resolution', 'play-fps', 'play-bitrate', 'play-frames', 'play-codecs'];

/** The session, connected (a new one when the last one ended). */
async function session() {
  if (twoway.session && twoway.session.status === SESSION_STATUS.ESTABLISHED) return twoway.session;
  const s = new Session();
  twoway.session = s;
  s.on(EVENT.STATUS, (e) => {
    log(`session ${e.status}${e.reason ? ': ' + e.reason : ''}`);
    $('session-info').textContent = e.status === SESSION_STATUS.ESTABLISHED ? `session ${s.sessionId || ''} · ${s.server || ''}` : `session ${e.status.toLowerCase()}`;
  });
  s.on(EVENT.ERROR, (e) => log(`server error ${e.code}: ${e.message}`));
  await s.connect();
  return s;
}

async function updateStats() {
  const pub = twoway.publisher;
  if (pub && !FINAL.includes(pub.status)) {
    const s = await pub.getStats().catch(() => null);
    if (s && pub === twoway.publisher) {
      setText('publish-resolution', s.width && s.height ? `${s.width}x${s.height}` : null);
      setText('publish-fps', s.framesPerSecond != null ? Math.round(s.framesPerSecond) : null);
      setText('publish-bitrate', s.bitrateKbps != null ? `${s.bitrateKbps} kbps` : null);
      setText('publish-frames', s.framesSent);
      setText('publish-codec', [s.videoCodec, s.audioCodec].filter(Boolean).join(' + '));
    }
  }
  const play = twoway.player;
  if (play && !FINAL.includes(play.status)) {
    const s = await play.getStats().catch(() => null);
    if (s && play === twoway.player) {
      setText('play-resolution', s.width && s.height ? `${s.width}x${s.height}` : null);
      setText('play-fps', s.framesPerSecond != null ? Math.round(s.framesPerSecond) : null);
      setText('play-bitrate', s.bitrateKbps != null ? `${s.bitrateKbps} kbps` : null);
      setText('play-frames', s.framesDecoded);
      setText('play-codecs', [s.videoCodec, s.audioCodec].filter(Boolean).join(' + '));
    }
  }
}

/** Wires a stream's status events to one side of the page. */
function follow(stream, side, onEnd) {
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== twoway[side === 'publish' ? 'publisher' : 'player']) return;
    showStatus(side, e.status, e.reason);
    log(`${side} ${stream.name}: ${e.status}${e.reason ? ' – ' + e.reason : ''}`);
    if (FINAL.includes(e.status)) onEnd();
  });
}

function publishUi(active) {
  $('publish-stop').disabled = !active;
  $('publish').disabled = active;
  $('publish-name').disabled = active;
}

function playUi(active) {
  $('play-stop').disabled = !active;
  $('unmute').disabled = !active;
}

async function publish() {
  const name = $('publish-name').value.trim();
  if (!name) return $('publish-name').focus();
  for (const id of PUBLISH_STATS) setText(id, null);
  publishUi(true);
  showStatus('publish', 'CONNECTING');
  let s;
  try {
    s = await session();
  } catch (e) {
    showStatus('publish', 'FAILED', e.message);
    publishUi(false);
    return;
  }
  const stream = s.createStream({ name, display: $('local-video') });
  twoway.publisher = stream;
  follow(stream, 'publish', () => publishUi(false));
  stream.on(EVENT.LOCAL_STREAM, (e) => log(`camera: ${e.mediaStream.getTracks().map((t) => t.kind).join(' + ')}`));
  stream.publish().catch(() => {
    // The status event already shows why.
  });
}

async function play() {
  const name = $('play-name').value.trim();
  if (!name) return $('play-name').focus();
  if (twoway.player) twoway.player.stop();
  for (const id of PLAY_STATS) setText(id, null);
  playUi(true);
  showStatus('play', 'CONNECTING');
  let s;
  try {
    s = await session();
  } catch (e) {
    showStatus('play', 'FAILED', e.message);
    playUi(false);
    return;
  }
  const stream = s.createStream({ name, display: $('remote-video') });
  twoway.player = stream;
  follow(stream, 'play', () => playUi(false));
  updateUnmute();
  stream.play().catch(() => {});
}

function updateUnmute() {
  $('unmute').textContent = $('remote-video').muted ? 'Unmute' : 'Mute';
}

$('publish-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  publish();
});
$('play-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  play();
});
$('publish-stop').addEventListener('click', () => twoway.publisher && twoway.publisher.stop());
$('play-stop').addEventListener('click', () => twoway.player && twoway.player.stop());
$('unmute').addEventListener('click', () => {
  if (!twoway.player) return;
  if ($('remote-video').muted) twoway.player.unmute().then(updateUnmute);
  else {
    twoway.player.mute();
    updateUnmute();
  }
});
window.addEventListener('pagehide', () => {
  if (twoway.session) twoway.session.disconnect();
});
twoway.timer = setInterval(updateStats, 1000);

const params = new URLSearchParams(location.search);
if (params.get('publish')) $('publish-name').value = params.get('publish');
if (params.get('play')) $('play-name').value = params.get('play');
