// Player page: plays a stream name or camera URL with the SDK over the chosen transport (Auto,
// WebRTC, WebSocket/MSE), shows its status, the transport in use, an event log and live receiver
// stats (resolution, frame rate, bitrate, packets lost, buffer over MSE) once a second.
// URL parameters: ?name=NAME fills the name, &transport=auto|webrtc|ws chooses the transport,
// &autoplay=1 starts playing at load.

import { STREAM_STATUS, EVENT } from './sdk/mediarouter.js';
import { $, log, setText, showStatus, statusLine, statsText, showStats, clearStats, refreshStats, connectSession, disconnectOnLeave, unmuteButton, onSubmit } from './page.js';

const nameInput = $('name');
const transportChoice = $('transport-choice');
const stopButton = $('stop');
const video = $('video');

/** Page state, also reachable as window.player for debugging. */
const player = { session: null, stream: null, statsTimer: null };
window.player = player;

/** The live stats: #stat-KEY. */
const STATS = ['resolution', 'fps', 'bitrate', 'lost', 'vcodec', 'acodec', 'frames', 'buffer'];

async function updateStats() {
  const stream = player.stream;
  if (!stream) return;
  await refreshStats(stream, () => stream === player.stream, (s) =>
    showStats('stat', {
      ...statsText(s),
      lost: s.packetsLost,
      vcodec: s.videoCodec,
      acodec: s.audioCodec,
      frames: s.framesDecoded,
      buffer: s.bufferSeconds != null ? `${s.bufferSeconds.toFixed(2)} s` : null,
    }),
  );
}

/** The session, connected (a new one when the last one ended). */
function session() {
  return connectSession(player, { onConnect: () => showStatus(null, 'CONNECTING') });
}

function setPlayingUi(active) {
  stopButton.disabled = !active;
  $('unmute').disabled = !active;
}

async function play() {
  const name = nameInput.value.trim();
  if (!name) {
    nameInput.focus();
    return;
  }
  const transport = transportChoice.value;
  const params = new URLSearchParams(location.search);
  params.set('name', name);
  if (transport === 'auto') params.delete('transport');
  else params.set('transport', transport);
  params.delete('autoplay');
  history.replaceState(null, '', `${location.pathname}?${params}`);

  if (player.stream) stopStream();
  clearStats('stat', STATS);
  setText('transport', null);
  let s;
  try {
    s = await session();
  } catch (e) {
    showStatus(null, 'FAILED', e.message);
    log(`cannot connect: ${e.message}`);
    return;
  }
  const stream = s.createStream({ name, display: video, transport });
  player.stream = stream;
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== player.stream) return;
    showStatus(null, e.status, e.reason);
    // 'auto' until play() has chosen.
    if (e.transport !== 'auto') setText('transport', e.transport);
    const info = e.info ? ` (${Object.entries(e.info).map(([k, v]) => `${k} ${v}`).join(', ')})` : '';
    log(`${statusLine(stream.name, e)}${info}`);
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

const updateUnmute = unmuteButton(video, () => player.stream);
onSubmit('play-form', play);
stopButton.addEventListener('click', () => stopStream());
disconnectOnLeave(player);

const params = new URLSearchParams(location.search);
if (params.get('name')) nameInput.value = params.get('name');
if (['auto', 'webrtc', 'ws'].includes(params.get('transport'))) transportChoice.value = params.get('transport');
if (params.get('name') && ['1', 'true', 'yes'].includes(params.get('autoplay'))) play();
