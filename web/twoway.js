// Two-Way Streaming page: publishes this browser's camera and microphone under a name and plays
// any stream by its name, on one signalling session; each side shows its status (with the
// server's reason) and live stats once a second. URL parameters: ?publish=NAME&play=NAME fill
// the names.

import { STREAM_STATUS, EVENT } from './sdk/mediarouter.js';
import {
  $,
  log,
  showStatus,
  statusLine,
  statsText,
  codecsText,
  showStats,
  clearStats,
  refreshStats,
  connectSession,
  disconnectOnLeave,
  unmuteButton,
  onSubmit,
} from './page.js';

/** Page state, also reachable as window.twoway for debugging and tests. */
const twoway = { session: null, publisher: null, player: null, timer: null };
window.twoway = twoway;

const FINAL = [STREAM_STATUS.STOPPED, STREAM_STATUS.FAILED];
/** The stats of each side: #publish-KEY and #play-KEY. */
const PUBLISH_STATS = ['resolution', 'fps', 'bitrate', 'frames', 'codec'];
const PLAY_STATS = ['resolution', 'fps', 'bitrate', 'frames', 'codecs'];

/** The page state's field of a side's stream. */
const streamKey = (side) => (side === 'publish' ? 'publisher' : 'player');

async function updateStats() {
  const pub = twoway.publisher;
  if (pub && !FINAL.includes(pub.status)) {
    await refreshStats(pub, () => pub === twoway.publisher, (s) => showStats('publish', { ...statsText(s), frames: s.framesSent, codec: codecsText(s) }));
  }
  const play = twoway.player;
  if (play && !FINAL.includes(play.status)) {
    await refreshStats(play, () => play === twoway.player, (s) => showStats('play', { ...statsText(s), frames: s.framesDecoded, codecs: codecsText(s) }));
  }
}

/** Wires a stream's status events to one side of the page. */
function follow(stream, side, onEnd) {
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== twoway[streamKey(side)]) return;
    showStatus(side, e.status, e.reason);
    log(statusLine(`${side} ${stream.name}`, e));
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

/** The name typed in for a side, or '' (with the input focused) when there is none. */
function nameOf(side) {
  const input = $(`${side}-name`);
  const name = input.value.trim();
  if (!name) input.focus();
  return name;
}

/**
 * Opens one side for `name`: clears its stats, shows CONNECTING, connects the session and makes
 * the stream shown on the video `videoId`, kept in the page state and followed. Null when the
 * session could not connect (the side then shows FAILED).
 */
async function openSide(side, name, videoId, stats, ui) {
  clearStats(side, stats);
  ui(true);
  showStatus(side, 'CONNECTING');
  let s;
  try {
    s = await connectSession(twoway);
  } catch (e) {
    showStatus(side, 'FAILED', e.message);
    ui(false);
    return null;
  }
  const stream = s.createStream({ name, display: $(videoId) });
  twoway[streamKey(side)] = stream;
  follow(stream, side, () => ui(false));
  return stream;
}

async function publish() {
  const name = nameOf('publish');
  if (!name) return;
  const stream = await openSide('publish', name, 'local-video', PUBLISH_STATS, publishUi);
  if (!stream) return;
  stream.on(EVENT.LOCAL_STREAM, (e) => log(`camera: ${e.mediaStream.getTracks().map((t) => t.kind).join(' + ')}`));
  stream.publish().catch(() => {
    // The status event already shows why.
  });
}

async function play() {
  const name = nameOf('play');
  if (!name) return;
  if (twoway.player) twoway.player.stop();
  const stream = await openSide('play', name, 'remote-video', PLAY_STATS, playUi);
  if (!stream) return;
  updateUnmute();
  stream.play().catch(() => {});
}

const updateUnmute = unmuteButton($('remote-video'), () => twoway.player);
onSubmit('publish-form', publish);
onSubmit('play-form', play);
$('publish-stop').addEventListener('click', () => twoway.publisher && twoway.publisher.stop());
$('play-stop').addEventListener('click', () => twoway.player && twoway.player.stop());
disconnectOnLeave(twoway);
twoway.timer = setInterval(updateStats, 1000);

const params = new URLSearchParams(location.search);
if (params.get('publish')) $('publish-name').value = params.get('publish');
if (params.get('play')) $('play-name').value = params.get('play');
