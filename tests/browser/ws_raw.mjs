// Scenario: a raw signalling client (the `ws` package, not the SDK) on the server's /ws, with a
// Chromium page as its WebRTC peer (offer, candidates and answer relayed by this script), so the
// same raw session can both misbehave and play real media.
//
//   --scenario bad-input: a message before connect, malformed JSON, an unknown type, a stop of an
//     unknown streamId, a play without name, a binary garbage frame and 100 KB of junk text; each
//     answer is recorded; then ping -> pong, and the same session plays --name in Chromium.
//   --scenario silent: connects (ws autoPong off), plays --name in Chromium, answers the server's
//     pings by hand for --alive-ms, then goes silent (answers nothing, sends nothing) and measures
//     when the server closes the socket, and whether the page's media then stops.
//
//   node ws_raw.mjs --base http://127.0.0.1:8080 --scenario bad-input --name test
//   node ws_raw.mjs --base http://127.0.0.1:8080 --scenario silent --name test --alive-ms 4000
//
// Prints one JSON line. Progress markers on stderr: "phase=alive", "phase=silent", "closed".

import WebSocket from 'ws';
import { run, launch, openWithSdk, sleep, pollUntil } from './lib.mjs';

run(
  'ws_raw',
  {
    base: null,
    scenario: null,
    name: null,
    aliveMs: 4000,
    closeTimeoutMs: 20000,
    answerTimeoutMs: 3000,
    playTimeoutMs: 20000,
  },
  async (args, log, onExit) => {
    const wsUrl = args.base.replace(/\/$/, '').replace(/^http/, 'ws') + '/ws';
    const { context, close } = await launch(log);
    onExit(close);
    const page = await openWithSdk(context, `${args.base.replace(/\/$/, '')}/index.html`, log, 'page');
    const client = await RawClient.open(wsUrl, log, args.scenario === 'silent');
    onExit(() => client.close());
    if (args.scenario === 'bad-input') return badInput(client, page, args, log);
    if (args.scenario === 'silent') return silent(client, page, args, log);
    throw new Error(`unknown scenario '${args.scenario}' (bad-input, silent)`);
  },
);

/** A raw WebSocket client recording every message with its arrival time. */
class RawClient {
  static open(url, log, manualPong) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { autoPong: !manualPong, maxPayload: 16 * 1024 * 1024 });
      const c = new RawClient(ws, log);
      const timer = setTimeout(() => reject(new Error(`cannot open ${url} within 10 s`)), 10000);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(c);
      });
      ws.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot open ${url}: ${e.message}`));
      });
    });
  }

  constructor(ws, log) {
    this.ws = ws;
    this.log = log;
    this.t0 = Date.now();
    this.messages = [];
    this.pings = [];
    this.closed = null;
    this.answerPings = true;
    ws.on('message', (data, isBinary) => {
      const text = data.toString();
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        msg = { unparsed: text.slice(0, 200), binary: isBinary };
      }
      this.messages.push({ t: this.now(), msg });
      if (msg.type !== 'candidate') log(`<- ${text.slice(0, 300)}`);
    });
    ws.on('ping', (data) => {
      this.pings.push(this.now());
      if (this.answerPings && ws.readyState === WebSocket.OPEN) ws.pong(data);
    });
    ws.on('close', (code, reason) => {
      this.closed = { t: this.now(), code, reason: reason.toString() };
      log(`closed ${code} ${reason}`);
    });
    ws.on('error', (e) => log(`socket error: ${e.message}`));
  }

  now() {
    return Date.now() - this.t0;
  }

  send(data, what) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(data);
    const shown = typeof data === 'string' ? (data.length > 200 ? `${data.slice(0, 60)}... (${data.length} chars)` : data) : `<binary ${data.length} bytes>`;
    this.log(`-> ${what ? what + ': ' : ''}${shown}`);
    return true;
  }

  json(obj) {
    return this.send(JSON.stringify(obj));
  }

  /** The first message from index `from` on matching `pred`, waiting up to `ms`. */
  async next(pred, ms, from = 0) {
    const hit = await pollUntil(() => {
      for (let i = from; i < this.messages.length; i++) if (pred(this.messages[i].msg)) return this.messages[i];
      return null;
    }, ms, 20);
    return hit;
  }

  close() {
    try {
      this.ws.terminate();
    } catch (e) {
      /* closed */
    }
  }
}

/** In the page: a bare RTCPeerConnection with recvonly transceivers; returns the offer SDP. */
async function pageOffer() {
  const t = (window.t = { candidates: [], gatheringDone: false, frames: 0 });
  const pc = (t.pc = new RTCPeerConnection({ iceServers: [] }));
  t.video = document.createElement('video');
  t.video.muted = true;
  t.video.autoplay = true;
  document.body.prepend(t.video);
  t.stream = new MediaStream();
  pc.ontrack = (e) => {
    t.stream.addTrack(e.track);
    t.video.srcObject = t.stream;
    t.video.play().catch(() => {});
  };
  pc.onicecandidate = (e) => {
    if (e.candidate) t.candidates.push(e.candidate.toJSON());
    else t.gatheringDone = true;
  };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}

/** In the page: receiver stats through the same code as the SDK's Stream.getStats(). */
async function pageStats() {
  const report = await window.t.pc.getStats();
  const codecs = new Map();
  report.forEach((s) => s.type === 'codec' && codecs.set(s.id, s.mimeType));
  const out = { framesDecoded: 0, audioSamples: 0, videoCodec: null, audioCodec: null, width: null, height: null, connectionState: window.t.pc.connectionState };
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const codec = (codecs.get(s.codecId) || '').split('/')[1] || null;
    if (s.kind === 'video') {
      out.framesDecoded += s.framesDecoded || 0;
      out.videoCodec = codec;
      out.width = s.frameWidth ?? null;
      out.height = s.frameHeight ?? null;
    } else {
      out.audioSamples += s.totalSamplesReceived || 0;
      out.audioCodec = codec;
    }
  });
  return out;
}

/**
 * Plays `name` as `streamId` on the raw session with the page as the peer. Returns what happened:
 * statuses for the stream, the first decoded frame, codecs.
 */
async function bridgePlay(client, page, streamId, name, args, log) {
  const from = client.messages.length;
  const sdp = await page.evaluate(pageOffer);
  client.json({ type: 'play', streamId, name, sdp });
  let sentCandidates = 0;
  let sentEnd = false;
  let appliedRemote = 0;
  let answered = false;
  let firstFrameAt = null;
  const deadline = Date.now() + args.playTimeoutMs;
  let stats = null;
  while (Date.now() < deadline) {
    // Our candidates to the server.
    const local = await page.evaluate(() => ({ c: window.t.candidates, done: window.t.gatheringDone }));
    for (; sentCandidates < local.c.length; sentCandidates++) client.json({ type: 'candidate', streamId, candidate: local.c[sentCandidates] });
    if (local.done && !sentEnd) {
      client.json({ type: 'candidate', streamId, candidate: null });
      sentEnd = true;
    }
    // The server's answer and candidates to the page.
    const mine = client.messages.slice(from).map((m) => m.msg).filter((m) => m.streamId === streamId);
    const answer = mine.find((m) => m.type === 'answer');
    if (answer && !answered) {
      await page.evaluate((s) => window.t.pc.setRemoteDescription({ type: 'answer', sdp: s }), answer.sdp);
      answered = true;
    }
    if (answered) {
      const cands = mine.filter((m) => m.type === 'candidate');
      for (; appliedRemote < cands.length; appliedRemote++) {
        const c = cands[appliedRemote].candidate;
        await page.evaluate((c) => (c ? window.t.pc.addIceCandidate(c) : window.t.pc.addIceCandidate()).catch((e) => console.warn('addIceCandidate', e.message)), c);
      }
    }
    const final = mine.find((m) => m.type === 'status' && ['STOPPED', 'FAILED'].includes(m.status));
    const playing = mine.some((m) => m.type === 'status' && m.status === 'PLAYING');
    stats = await page.evaluate(pageStats);
    if (final) break;
    // Playing for real: the status came, video decodes and audio arrives.
    if (playing && stats.framesDecoded > 0) {
      if (firstFrameAt === null) firstFrameAt = Date.now();
      if (stats.audioSamples > 0 || Date.now() - firstFrameAt > 3000) break;
    }
    await sleep(50);
  }
  const mine = client.messages.slice(from).filter((m) => m.msg.streamId === streamId);
  const result = {
    streamId,
    statuses: mine.filter((m) => m.msg.type === 'status').map((m) => ({ status: m.msg.status, reason: m.msg.reason ?? null, t: m.t })),
    answered,
    serverCandidates: mine.filter((m) => m.msg.type === 'candidate').length,
    sentCandidates,
    stats,
  };
  log(`play ${streamId}: ${JSON.stringify(result)}`);
  return result;
}

async function badInput(client, page, args, log) {
  const probes = {};
  const probe = async (key, data, what) => {
    const from = client.messages.length;
    const sent = client.send(data, what);
    const hit = sent ? await client.next((m) => m.type === 'error', args.answerTimeoutMs, from) : null;
    probes[key] = { sent, answer: hit ? hit.msg : null, closed: !!client.closed };
  };

  await probe('before_connect', JSON.stringify({ type: 'play', streamId: 'v1', name: args.name }), 'play before connect');
  const from = client.messages.length;
  client.json({ type: 'connect' });
  const est = await client.next((m) => m.type === 'session', 5000, from);
  const established = !!(est && est.msg.status === 'ESTABLISHED');

  await probe('bad_json', '{"type": "play", "streamId": ', 'malformed JSON');
  await probe('unknown_type', JSON.stringify({ type: 'dance', streamId: 'v1' }), 'unknown type');
  await probe('unknown_stream', JSON.stringify({ type: 'stop', streamId: 'v9' }), 'stop of an unknown stream');
  await probe('missing_name', JSON.stringify({ type: 'play', streamId: 'v2' }), 'play without a name');
  const garbage = Buffer.alloc(4096);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 151 + 7) & 0xff;
  await probe('binary', garbage, 'binary garbage');
  let junk = '';
  while (junk.length < 100 * 1024) junk += 'junk!@#$%^&*(){}[]"\\ ';
  await probe('junk_100k', junk, '100 KB of junk text');

  const pingFrom = client.messages.length;
  const pingAt = Date.now();
  client.json({ type: 'ping' });
  const pong = await client.next((m) => m.type === 'pong', 5000, pingFrom);
  const pongMs = pong ? Date.now() - pingAt : null;

  let play = null;
  if (!client.closed) play = await bridgePlay(client, page, 'v1', args.name, args, log);

  // Stop it: the server answers STOPPED.
  let stop = null;
  if (play && !client.closed) {
    const f = client.messages.length;
    client.json({ type: 'stop', streamId: 'v1' });
    const st = await client.next((m) => m.type === 'status' && m.streamId === 'v1', 5000, f);
    stop = st ? st.msg : null;
  }
  return {
    scenario: 'bad-input',
    established,
    session: est ? est.msg : null,
    probes,
    pong: !!pong,
    pongMs,
    play,
    stop,
    closed: client.closed,
    messages: client.messages.filter((m) => m.msg.type !== 'candidate').map((m) => m.msg).map((m) => (m.sdp ? { ...m, sdp: `<${m.sdp.length} chars>` } : m)),
  };
}

async function silent(client, page, args, log) {
  client.answerPings = true;
  const from = client.messages.length;
  client.json({ type: 'connect' });
  const est = await client.next((m) => m.type === 'session', 5000, from);
  const established = !!(est && est.msg.status === 'ESTABLISHED');
  const play = established ? await bridgePlay(client, page, 'v1', args.name, args, log) : null;

  // Alive: pongs answered by hand, nothing else sent.
  log('phase=alive');
  const aliveStart = client.now();
  const pingsBefore = client.pings.length;
  await pollUntil(() => !!client.closed, args.aliveMs, 50);
  const alive = { ms: client.now() - aliveStart, pings: client.pings.length - pingsBefore, closed: !!client.closed };
  const framesAlive = await page.evaluate(pageStats);

  // Silent: no pong, nothing sent.
  client.answerPings = false;
  log('phase=silent');
  const silentStart = client.now();
  const silentPingsBefore = client.pings.length;
  await pollUntil(() => !!client.closed, args.closeTimeoutMs, 20);
  const closedAfterSilentMs = client.closed ? client.closed.t - silentStart : null;
  log(client.closed ? `closed after ${closedAfterSilentMs} ms of silence` : 'NOT closed');

  // The server freed the peer: the page's media stops.
  let media = null;
  if (client.closed) {
    await sleep(1500);
    const a = await page.evaluate(pageStats);
    await sleep(2000);
    const b = await page.evaluate(pageStats);
    media = { framesAt1500ms: a.framesDecoded, framesAt3500ms: b.framesDecoded, growthAfterClose: b.framesDecoded - a.framesDecoded, connectionState: b.connectionState };
  }
  return {
    scenario: 'silent',
    established,
    keepaliveMs: est ? est.msg.keepaliveMs ?? null : null,
    play,
    alive,
    framesAlive,
    silentPings: client.pings.length - silentPingsBefore,
    closed: client.closed,
    closedAfterSilentMs,
    media,
    lastMessages: client.messages.slice(-5).map((m) => m.msg).filter((m) => m.type !== 'candidate'),
  };
}
