// Player page: plays a stream name or camera URL with the SDK, shows its status, an event log and
// live receiver stats (resolution, frame rate, bitrate, packets lost) once a second.
// URL parameters: ?name=NAME fills the name, &autoplay=1 starts playing at load.

import { Session, SESSION_STATUS, STREAM_STATUS, EVENT } from './sdk/mediarouter.js';

const $ = (id) => document.getElementById(id);
const form = $('play-form');
const nameInput = $('name');
const playButton = $('play');
const stopButton = $('stop');
const unmuteButton = $('unmute');
const statusBadge = $('status');
const reasonText = $('reason');
const sessionInfo = $('session-info');
const video = $('video');
const logList = $('log');

/** Page state, also reachable as window.player for debugging. */
const player = { session: null, stream: null, statsTimer: null };
window.player = player;

function log(text) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, text);
  logList.prepend(li);
  while (logList.children.length > 100) logList.lastChild.remove();
}

function showStatus(status, reason) {
  statusBadge.textContent = status;
  statusBadge.dataset.status = status;
  reasonText.textContent = reason || '';
}

function setStat(id, value) {
  $(id).textContent = value === null || value === undefined || value === '' ? '–' : String(value);
}

function clearStats() {
  for (const id of ['stat-resolution', 'stat-fps', 'stat-bitrate', 'stat-lost', 'stat-vcodec', 'stat-acodec', 'stat-frames']) setStat(id, null);
}

async function updateStats() {
  const stream = player.stream;
  if (!stream) return;
  let s;
  try {
    s = await stream.getStats();
  } catch (e) {
    return;
  }
  if (!s || stream !== player.stream) return;
  setStat('stat-resolution', s.width && s.height ? `${s.width}x${s.height}` : null);
  setStat('stat-fps', s.framesPerSecond != null ? Math.round(s.framesPerSecond) : null);
  setStat('stat-bitrate', s.bitrateKbps != null ? `${s.bitrateKbps} kbps` : null);
  setStat('stat-lost', s.packetsLost);
  setStat('stat-vcodec', s.videoCodec);
  setStat('stat-acodec', s.audioCodec);
  setStat('stat-frames', s.framesDecoded);
}

/** The session, connected (a new one when the last one ended). */
async function session() {
  if (player.session && player.session.status === SESSION_STATUS.ESTABLISHED) return player.session;
  const s = new Session();
  player.session = s;
  s.on(EVENT.STATUS, (e) => {
    log(`session ${e.status}${e.reason ? ': ' + e.reason : ''}`);
    sessionInfo.textContent = e.status === SESSION_STATUS.ESTABLISHED ? `session ${s.sessionId || ''} · ${s.server || ''}` : `session ${e.status.toLowerCase()}`;
  });
  s.on(EVENT.ERROR, (e) => log(`server error ${e.code}: ${e.message}`));
  showStatus('CONNECTING');
  await s.connect();
  return s;
}

function setPlayingUi(active) {
  stopButton.disabled = !active;
  unmuteButton.disabled = !active;
}

async function play() {
  const name = nameInput.value.trim();
  if (!name) {
    nameInput.focus();
    return;
  }
  const params = new URLSearchParams(location.search);
  params.set('name', name);
  params.delete('autoplay');
  history.replaceState(null, '', `${location.pathname}?${params}`);

  if (player.stream) stopStream();
  clearStats();
  let s;
  try {
    s = await session();
  } catch (e) {
    showStatus('FAILED', e.message);
    log(`cannot connect: ${e.message}`);
    return;
  }
  const stream = s.createStream({ name, display: video });
  player.stream = stream;
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== player.stream) return;
    showStatus(e.status, e.reason);
    const info = e.info ? ` (${Object.entries(e.info).map(([k, v]) => `${k} ${v}`).join(', ')})` : '';
    log(`${stream.name}: ${e.status}${e.reason ? ' – ' + e.reason : ''}${info}`);
    if (e.status === STREAM_STATUS.STOPPED || e.status === STREAM_STATUS.FAILED) {
      setPlayingUi(false);
      clearInterval(player.statsTimer);
      player.statsTimer = null;
    }
  });
  stream.on(EVENT.TRACK, (e) => log(`track: ${e.track.kind}`));
  setPlayingUi(true);
  updateUnmute();
  clearInterval(player.statsTimer);
  player.statsTimer = setInterval(updateStats, 1000);
  stream.play().catch(() => {
    // The status event already shows why.
  });
}

function stopStream() {
  const stream = player.stream;
  if (!stream) return;
  stream.stop();
}

function updateUnmute() {
  unmuteButton.textContent = video.muted ? 'Unmute' : 'Mute';
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  play();
});
stopButton.addEventListener('click', () => stopStream());
unmuteButton.addEventListener('click', () => {
  if (!player.stream) return;
  if (video.muted) player.stream.unmute().then(updateUnmute);
  else {
    player.stream.mute();
    updateUnmute();
  }
});
window.addEventListener('pagehide', () => {
  if (player.session) player.session.disconnect();
});

const params = new URLSearchParams(location.search);
if (params.get('name')) nameInput.value = params.get('name');
if (params.get('name') && ['1', 'true', 'yes'].includes(params.get('autoplay'))) play();
