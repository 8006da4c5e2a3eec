// Consultation page: a doctor broadcasts the camera to every patient of a room (`clinic/ROOM`);
// a patient may ask for a private one-on-one session, which the doctor publishes once more as a
// private stream (`clinic/ROOM-private-SESSION`: the server lets one viewer, the first it admits,
// play it) for that patient alone. The request is a viewer message on the broadcast
// (stream.send()) that the doctor's page gets as a `message` event naming the patient's session;
// the patient plays the private name at once and waits for the doctor (the server holds a play
// of a name nobody publishes yet for stream.play_wait_timeout_ms, and the page plays it again
// while the doctor has not started). URL parameters: ?role=doctor|patient&room=NAME&name=NAME
// fill the form, &start=1 enters the room at load.

import { SESSION_STATUS, STREAM_STATUS, EVENT } from './sdk/mediarouter.js';
import { $, log, showStatus, statusLine, connectSession, disconnectOnLeave, onSubmit, refreshStats, statsText, setText } from './page.js';

/** The application of the page's streams. */
const APP = 'clinic';
/** `data.kind` of a patient's request for a private session. */
const REQUEST = 'private-request';
/** What a room name may hold: it becomes part of stream names. */
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,40}$/;
/** What a session id may hold: the doctor puts it in a stream name. */
const SESSION_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Time between two plays of the broadcast while the doctor is not broadcasting. */
const RETRY_MS = 2000;
/** Plays of the broadcast in a row before giving up. */
const MAX_BROADCAST_RETRIES = 30;
/**
 * Plays of the private name in a row while the doctor has not started the session: each waits
 * the server's stream.play_wait_timeout_ms (10 s by default) before "stream not found".
 */
const MAX_PRIVATE_WAITS = 6;
/** Pause before the private name is played again (lets the ended play settle first). */
const REWAIT_MS = 250;
const STATS_MS = 1000;

const FINAL = [STREAM_STATUS.STOPPED, STREAM_STATUS.FAILED];

/** The broadcast of a room. */
const broadcastName = (room) => `${APP}/${room}`;
/** The private session of a room's patient, by the patient's session id. */
const privateName = (room, sessionId) => `${APP}/${room}-private-${sessionId}`;

/**
 * Page state, also reachable as window.consult for debugging and tests. Doctor: `camera` (the
 * MediaStream both publishes share), `broadcast` (its publish), `requests` (by the patient's
 * session id: {from, patient, stream, state, li}). Patient: `broadcast` (its play),
 * `privatePlay`, `asking` (a private session was asked for and is not over).
 */
const consult = {
  session: null,
  role: null,
  room: null,
  name: null,
  active: false,
  camera: null,
  broadcast: null,
  requests: new Map(),
  privatePlay: null,
  asking: false,
  privateWaits: 0,
  broadcastRetries: 0,
  retryTimer: null,
  statsTimer: null,
};
window.consult = consult;

function formUi(active) {
  for (const id of ['start', 'room', 'my-name', 'role-doctor', 'role-patient']) $(id).disabled = active;
  $('leave').disabled = !active;
}

const chosenRole = () => ($('role-doctor').checked ? 'doctor' : 'patient');

/** Enters the room in the chosen role: connects the session, then broadcasts or watches. */
async function enter() {
  const room = $('room').value.trim();
  const name = $('my-name').value.trim();
  if (!ROOM_PATTERN.test(room)) {
    log('the room name takes letters, digits, - and _ (at most 40)');
    return $('room').focus();
  }
  if (!name) return $('my-name').focus();
  const role = chosenRole();
  Object.assign(consult, { role, room, name, active: true });
  document.body.dataset.role = role;
  $('doctor').hidden = role !== 'doctor';
  $('patient').hidden = role !== 'patient';
  formUi(true);
  const badge = role === 'doctor' ? 'doctor' : 'broadcast';
  showStatus(badge, 'CONNECTING');
  let s;
  try {
    s = await connectSession(consult, {
      showServer: false,
      onStatus: (e) => {
        if (e.status === SESSION_STATUS.DISCONNECTED || e.status === SESSION_STATUS.FAILED) leave(false);
      },
    });
  } catch (e) {
    showStatus(badge, STREAM_STATUS.FAILED, e.message);
    consult.active = false;
    formUi(false);
    return;
  }
  $('session-info').dataset.sessionId = s.id;
  if (role === 'doctor') startDoctor(s);
  else startPatient(s);
}

/** Leaves the room: every stream of the page stopped (`stop`), the camera released. */
function leave(stop = true) {
  if (!consult.active) return;
  consult.active = false;
  clearTimeout(consult.retryTimer);
  clearInterval(consult.statsTimer);
  if (stop) {
    if (consult.broadcast) consult.broadcast.stop();
    if (consult.privatePlay) consult.privatePlay.stop();
    for (const r of consult.requests.values()) if (r.stream) r.stream.stop();
  }
  if (consult.camera) for (const track of consult.camera.getTracks()) track.stop();
  if ($('broadcast-status').dataset.status === 'WAITING') showStatus('broadcast', STREAM_STATUS.STOPPED, 'left the room');
  Object.assign(consult, { camera: null, broadcast: null, privatePlay: null, asking: false });
  consult.requests.clear();
  $('requests').replaceChildren();
  formUi(false);
  updatePatientButtons();
  log('left the room');
}

// ------------------------------------------------------------------------------------------------
// Doctor
// ------------------------------------------------------------------------------------------------

/** Opens the camera (shared by the broadcast and every private session) and broadcasts it. */
async function startDoctor(s) {
  const name = broadcastName(consult.room);
  $('doctor-name').textContent = name;
  let camera;
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    showStatus('doctor', STREAM_STATUS.FAILED, `camera/microphone refused: ${e.message}`);
    return;
  }
  if (!consult.active) {
    for (const track of camera.getTracks()) track.stop();
    return;
  }
  consult.camera = camera;
  const stream = s.createStream({ name, display: $('doctor-video'), localStream: camera });
  consult.broadcast = stream;
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== consult.broadcast) return;
    showStatus('doctor', e.status, e.reason);
    log(statusLine(`broadcast ${name}`, e));
  });
  stream.on(EVENT.MESSAGE, (e) => {
    if (stream === consult.broadcast) onPatientMessage(s, e);
  });
  stream.publish().catch(() => {});
}

/** A viewer's message on the broadcast: a request for a private session is listed. */
function onPatientMessage(s, { from, data }) {
  if (!data || data.kind !== REQUEST || typeof from !== 'string' || !SESSION_PATTERN.test(from)) {
    log(`a message from ${from} ignored: ${JSON.stringify(data).slice(0, 100)}`);
    return;
  }
  const patient = String(data.patient || 'a patient').slice(0, 60);
  let r = consult.requests.get(from);
  if (!r) {
    r = { from, patient, stream: null, state: null, li: requestItem(s, from) };
    consult.requests.set(from, r);
    $('requests').append(r.li);
  }
  r.patient = patient;
  r.li.dataset.patient = patient;
  r.li.querySelector('.patient').textContent = patient;
  // A patient asking again after the end of a session (or before it started) is listed again.
  if (!r.stream || FINAL.includes(r.stream.status)) setRequest(r, 'requested', 'REQUESTED', 'asks for a private session');
  log(`${patient} (${from}) asks for a private session`);
}

/** The list item of a request: who, the private stream's status, Start and End. */
function requestItem(s, from) {
  const li = document.createElement('li');
  li.dataset.from = from;
  const who = document.createElement('span');
  who.className = 'who';
  const patient = document.createElement('strong');
  patient.className = 'patient';
  const id = document.createElement('span');
  id.className = 'muted small mono';
  id.textContent = ` ${from}`;
  who.append(patient, id);
  const badge = document.createElement('span');
  badge.className = 'badge';
  const reason = document.createElement('span');
  reason.className = 'muted small reason';
  const start = document.createElement('button');
  start.type = 'button';
  start.className = 'primary start-private';
  start.textContent = 'Start private session';
  start.addEventListener('click', () => startPrivate(s, consult.requests.get(from)));
  const end = document.createElement('button');
  end.type = 'button';
  end.className = 'end-private';
  end.textContent = 'End';
  end.addEventListener('click', () => {
    const r = consult.requests.get(from);
    if (r && r.stream) r.stream.stop();
  });
  li.append(who, badge, reason, start, end);
  return li;
}

/**
 * Shows a request's `state` (requested, starting, live, ended, failed: the li's data-state), the
 * status of its private stream in its badge and the reason; Start while none is under way, End
 * while one is.
 */
function setRequest(r, state, status, reason) {
  r.state = state;
  r.li.dataset.state = state;
  const badge = r.li.querySelector('.badge');
  badge.textContent = status;
  badge.dataset.status = status;
  r.li.querySelector('.reason').textContent = reason || '';
  const running = state === 'starting' || state === 'live';
  r.li.querySelector('.start-private').disabled = running;
  r.li.querySelector('.end-private').disabled = !running;
}

/** Publishes the camera once more, privately, under the patient's private name. */
function startPrivate(s, r) {
  if (!r || !consult.active || !consult.camera) return;
  if (!r.stream) {
    const name = privateName(consult.room, r.from);
    // The page's camera: stopping this publish leaves the broadcast's tracks alone.
    r.stream = s.createStream({ name, localStream: consult.camera, private: true });
    r.stream.on(EVENT.STATUS, (e) => {
      log(statusLine(`private session with ${r.patient} (${name})`, e));
      const state = { PUBLISHING: 'live', STOPPED: 'ended', FAILED: 'failed' }[e.status] || 'starting';
      setRequest(r, state, e.status, e.reason);
    });
  }
  setRequest(r, 'starting', STREAM_STATUS.PENDING, '');
  r.stream.publish().catch(() => {});
}

// ------------------------------------------------------------------------------------------------
// Patient
// ------------------------------------------------------------------------------------------------

/** Plays the broadcast (again every RETRY_MS while the doctor is not there). */
function startPatient(s) {
  $('broadcast-name').textContent = broadcastName(consult.room);
  $('private-name').textContent = privateName(consult.room, s.id);
  setHint('idle', 'Ask for a private session: only you will see it.');
  consult.broadcastRetries = 0;
  const stream = s.createStream({ name: broadcastName(consult.room), display: $('broadcast-video') });
  consult.broadcast = stream;
  stream.on(EVENT.STATUS, (e) => {
    if (stream !== consult.broadcast) return;
    showStatus('broadcast', e.status, e.reason);
    log(statusLine('broadcast', e));
    if (e.status === STREAM_STATUS.PLAYING) consult.broadcastRetries = 0;
    if (FINAL.includes(e.status) && consult.active && doctorAbsent(e)) retryBroadcast(stream);
    updatePatientButtons();
  });
  stream.play().catch(() => {});
  consult.statsTimer = setInterval(showPatientStats, STATS_MS);
}

/** Whether a play's end means "the doctor is not (or no longer) broadcasting": worth a retry. */
function doctorAbsent(e) {
  const reason = (e.reason || '').toLowerCase();
  if (e.status === STREAM_STATUS.FAILED) return reason.includes('not found');
  return !reason.includes('client') && !reason.includes('session');
}

function retryBroadcast(stream) {
  if (consult.broadcastRetries >= MAX_BROADCAST_RETRIES) {
    showStatus('broadcast', STREAM_STATUS.FAILED, `the doctor did not broadcast after ${MAX_BROADCAST_RETRIES} tries`);
    return;
  }
  consult.broadcastRetries += 1;
  showStatus('broadcast', 'WAITING', `the doctor is not broadcasting; try ${consult.broadcastRetries} of ${MAX_BROADCAST_RETRIES} in ${RETRY_MS / 1000} s`);
  clearTimeout(consult.retryTimer);
  consult.retryTimer = setTimeout(() => {
    if (consult.active && stream === consult.broadcast) stream.play().catch(() => {});
  }, RETRY_MS);
}

/** Asks the doctor (a message on the broadcast) and plays the private name at once. */
function ask() {
  const s = consult.session;
  const broadcast = consult.broadcast;
  if (!consult.active || !broadcast || broadcast.status !== STREAM_STATUS.PLAYING || consult.asking) return;
  try {
    broadcast.send({ kind: REQUEST, patient: consult.name });
  } catch (e) {
    log(`cannot ask: ${e.message}`);
    return;
  }
  log('asked the doctor for a private session');
  consult.asking = true;
  consult.privateWaits = 0;
  let p = consult.privatePlay;
  if (!p) {
    p = s.createStream({ name: privateName(consult.room, s.id), display: $('private-video') });
    consult.privatePlay = p;
    p.on(EVENT.STATUS, (e) => {
      if (p === consult.privatePlay) onPrivateStatus(p, e);
    });
  }
  p.play().catch(() => {});
  updatePatientButtons();
}

/** The private play's statuses: waiting, playing, ended by the doctor, refused. */
function onPrivateStatus(p, e) {
  log(statusLine('private session', e));
  const notStarted = e.status === STREAM_STATUS.FAILED && /not found/i.test(e.reason || '');
  if (notStarted && consult.asking && consult.active && consult.privateWaits < MAX_PRIVATE_WAITS) {
    // The doctor has not started it within the server's wait: wait on with a new play.
    consult.privateWaits += 1;
    showStatus('private', STREAM_STATUS.PENDING, '');
    setTimeout(() => {
      if (consult.active && consult.asking && p === consult.privatePlay) p.play().catch(() => {});
    }, REWAIT_MS);
    return;
  }
  showStatus('private', e.status, e.reason);
  switch (e.status) {
    case STREAM_STATUS.PENDING:
      setHint('waiting', 'waiting for the doctor…');
      break;
    case STREAM_STATUS.PLAYING:
      consult.privateWaits = 0;
      setHint('live', 'Private session with the doctor: nobody else can watch it.');
      // One doctor to hear: the broadcast goes quiet while the private session plays.
      if (consult.broadcast) consult.broadcast.mute();
      break;
    case STREAM_STATUS.UNPUBLISHED:
      // The doctor ended the session.
      consult.asking = false;
      p.stop();
      setHint('ended', 'The doctor ended the private session. You may ask again.');
      break;
    case STREAM_STATUS.STOPPED:
      if (consult.asking) setHint('ended', `The private session ended: ${e.reason || ''}. You may ask again.`);
      consult.asking = false;
      break;
    case STREAM_STATUS.FAILED:
      consult.asking = false;
      setHint('failed', notStarted ? 'The doctor did not start the session. You may ask again.' : `Refused: ${e.reason || 'no reason'}. You may ask again.`);
      break;
    default:
      break;
  }
  updatePatientButtons();
}

/** The line under the private video, with its state in data-state (idle, waiting, live, ended, failed). */
function setHint(state, text) {
  const hint = $('private-hint');
  hint.dataset.state = state;
  hint.textContent = text;
}

function updatePatientButtons() {
  const broadcast = consult.broadcast;
  const playing = !!broadcast && broadcast.status === STREAM_STATUS.PLAYING && consult.role === 'patient';
  $('ask').disabled = !consult.active || !playing || consult.asking;
  $('unmute').disabled = !consult.active || consult.role !== 'patient' || !audible();
  $('unmute').textContent = audible() && !audible().muted ? 'Mute' : 'Unmute';
}

/** The patient's stream the Unmute button acts on: the private session while it plays, else the broadcast. */
function audible() {
  const p = consult.privatePlay;
  if (p && p.status === STREAM_STATUS.PLAYING) return p;
  const b = consult.broadcast;
  return b && b.status === STREAM_STATUS.PLAYING ? b : null;
}

function toggleMute() {
  const stream = audible();
  if (!stream) return;
  if (stream.muted) stream.unmute().then(updatePatientButtons);
  else {
    stream.mute();
    updatePatientButtons();
  }
}

/** Frames decoded and the resolution of the broadcast and the private session. */
function showPatientStats() {
  for (const [prefix, stream] of [['broadcast', consult.broadcast], ['private', consult.privatePlay]]) {
    if (!stream) continue;
    refreshStats(stream, () => consult.active, (st) => {
      setText(`${prefix}-frames`, st.framesDecoded);
      setText(`${prefix}-resolution`, statsText(st).resolution);
    });
  }
}

onSubmit('consult-form', enter);
$('leave').addEventListener('click', () => leave());
$('ask').addEventListener('click', ask);
$('unmute').addEventListener('click', toggleMute);
disconnectOnLeave(consult);

const params = new URLSearchParams(location.search);
if (params.get('role') === 'doctor') $('role-doctor').checked = true;
if (params.get('role') === 'patient') $('role-patient').checked = true;
if (params.get('room')) $('room').value = params.get('room');
if (params.get('name')) $('my-name').value = params.get('name');
if (params.get('room') && params.get('name') && ['1', 'true', 'yes'].includes(params.get('start'))) enter();
