// Scenario: Chromium publishes its fake camera and microphone over WebRTC through the SDK
// (Stream.publish(), web/sdk/mediarouter.js) and, depending on --mode, other pages of the same
// browser play it back. Prints one JSON line of what was measured; diagnostics go to stderr, with
// progress markers ("pub status=PUBLISHING", "viewer status=PLAYING", "phase=holding") that let a
// test act on time.
//
//   node publish.mjs --base http://127.0.0.1:8080 --name NAME --mode MODE [options]
//
// Modes:
//   publish       one page publishes NAME; reports its statuses and outbound stats (codec, fmtp,
//                 frames sent, keyframes, keyframe requests), holds while the test plays it with
//                 other clients (--hold-ms, or until --until-file exists), then stops.
//   publish-play  page "pub" publishes NAME, page "viewer" plays it with the SDK: inbound codecs,
//                 frames decoded, audio samples, time from play() to the first decoded frame.
//                 With --viewer-first the viewer starts playing (and waits) before the publish.
//   close         like publish-play, then the publisher's tab is closed (no stop message): the
//                 viewer's statuses after that (UNPUBLISHED, then STOPPED after the grace).
//   duplicate     "pub" publishes NAME, "second" publishes NAME too (refused: FAILED "name in
//                 use"); "pub" must go on: its frames sent and a viewer's frames decoded grow.
//   chat          the video-chat page (chat.html) in two tabs, clicked: alice publishes and
//                 plays bob, bob (started --second-delay-ms later) publishes and plays alice;
//                 each tab's decoded frames of the other's video.
//   twoway-page   the Two-Way Streaming page (twoway.html) clicked: publish NAME, play NAME back
//                 in the same page, stats; a second tab plays it too; Stop buttons.
//   keyframe      "pub" publishes NAME; a raw viewer page (RTCPeerConnection with encoded
//                 insertable streams, signalled by hand) plays it, first as is for --play-ms, then
//                 throwing away every received video frame for --drop-ms, which makes Chromium
//                 send keyframe requests (PLI); reports the viewer's PLIs sent and the
//                 publisher's PLIs received and keyframes encoded in each phase.
//
// Options: --video-codec H264|VP8|VP9|AV1, --publish-timeout-ms, --play-ms (measure window),
// --first-frame-timeout-ms, --viewer-first (publish-play),
// --hold-ms / --until-file (publish mode), --grace-wait-ms (close mode), --second-delay-ms
// (chat), --drop-ms (keyframe), --deadline-ms.

import fs from 'node:fs';
import {
  run,
  launch,
  openPage,
  openWithSdk,
  sleep,
  pollUntil,
  text,
  sdkSetup,
  playFirstFrame,
  measurePlaying,
  getStats,
  statusOf,
  statuses,
  measure,
  report,
  FINAL,
} from './lib.mjs';

run(
  'publish',
  {
    base: null,
    name: null,
    mode: 'publish',
    videoCodec: 'H264',
    publishTimeoutMs: 20000,
    firstFrameTimeoutMs: 20000,
    playMs: 3000,
    holdMs: 0,
    untilFile: '',
    graceWaitMs: 20000,
    secondDelayMs: 0,
    viewerFirst: false,
    noStop: false,
    dropMs: 4000,
  },
  async (args, log, onExit) => {
    const { context, close } = await launch(log);
    onExit(close);
    const base = args.base.replace(/\/$/, '');
    const modes = { publish: modePublish, 'publish-play': modePublishPlay, close: modeClose, duplicate: modeDuplicate, chat: modeChat, 'twoway-page': modeTwowayPage, keyframe: modeKeyframe };
    const mode = modes[args.mode];
    if (!mode) throw new Error(`unknown --mode ${args.mode} (${Object.keys(modes).join(', ')})`);
    const out = await mode({ context, base, args, log });
    return { scenario: 'publish', mode: args.mode, name: args.name, ...out };
  },
);

// ------------------------------------------------------------------------------------------------
// In-page helpers (run with page.evaluate; they use window.mr, the SDK module)
// ------------------------------------------------------------------------------------------------

/** In the page: publish() and wait for PUBLISHING (or a final status, or the timeout). */
async function publishAndWait({ videoCodec, timeoutMs }) {
  const t = window.t;
  const started = performance.now();
  let error = null;
  try {
    await t.stream.publish({ videoCodec, publishTimeoutMs: timeoutMs });
  } catch (e) {
    error = e.message;
  }
  return {
    publishMs: Math.round(performance.now() - started),
    error,
    status: t.stream.status,
    reason: t.stream.reason ?? null,
    previewAttached: t.video.srcObject === t.stream.localStream && !!t.stream.localStream,
    local: t.local,
  };
}

/** In the page: the local tracks' state (after a stop they must be ended when the SDK owned them). */
const localTrackStates = () => (window.t.stream.localStream ? window.t.stream.localStream.getTracks().map((tr) => tr.readyState) : []);

/** Stops the page's stream (unless it ended) and waits (bounded) for a final status. */
async function stopAndWait(page) {
  if (FINAL.includes(await statusOf(page))) return statusOf(page);
  await page.evaluate(() => window.t.stream.stop());
  await pollUntil(async () => FINAL.includes(await statusOf(page)), 8000, 50);
  return statusOf(page);
}

function brief(list) {
  return list.map((s) => s.status + (s.reason ? `(${s.reason})` : '')).join(' -> ');
}

/** Opens a page with the SDK and a stream on a connected session. */
async function sdkPage(context, base, name, label, log, preview) {
  const page = await openWithSdk(context, `${base}/index.html`, log, label);
  const r = await page.evaluate(sdkSetup, { name, label, preview });
  if (r.connectError) throw new Error(`${label}: session did not connect: ${r.connectError}`);
  log(`${label}: session ${r.sessionId} (${r.server})`);
  return page;
}

/** Publishes on `page` and reports (does not throw on a refused publish). */
async function publishOn(page, label, args, log) {
  const r = await page.evaluate(publishAndWait, { videoCodec: args.videoCodec, timeoutMs: args.publishTimeoutMs });
  r.localAfter = await page.evaluate(localTrackStates);
  log(`${label}: publish -> ${r.status}${r.reason ? ' (' + r.reason + ')' : ''} after ${r.publishMs} ms${r.error ? ' error ' + r.error : ''}`);
  return r;
}

/** Plays on `page` and measures the first frame and a window of `playMs`. */
async function playOn(page, label, args, log) {
  const out = await playFirstFrame(page, label, log, { timeoutMs: args.firstFrameTimeoutMs });
  await measurePlaying(page, args.playMs, out);
  out.videoSize = await page.evaluate(() => [window.t.video.videoWidth, window.t.video.videoHeight]);
  return out;
}

/** Holds for `holdMs`, or until `untilFile` exists (bounded by holdMs when both are given). */
async function hold(args, log) {
  if (!args.holdMs && !args.untilFile) return;
  log('phase=holding');
  const limit = args.holdMs || 60000;
  if (args.untilFile) {
    const seen = await pollUntil(() => fs.existsSync(args.untilFile), limit, 100);
    log(`hold ended: ${seen ? 'file ' + args.untilFile + ' appeared' : 'no file after ' + limit + ' ms'}`);
  } else {
    await sleep(limit);
  }
}

// ------------------------------------------------------------------------------------------------
// Modes
// ------------------------------------------------------------------------------------------------

async function modePublish({ context, base, args, log }) {
  const page = await sdkPage(context, base, args.name, 'pub', log);
  const pub = { publish: await publishOn(page, 'pub', args, log) };
  if (!FINAL.includes(await statusOf(page))) {
    const m = await measure(page, args.playMs, ['framesSent', 'bytesSent']);
    pub.statsStart = m.start;
    pub.statsEnd = m.end;
    pub.framesSentGrowth = m.growth.framesSent;
    await hold(args, log);
    pub.statsAfterHold = await getStats(page);
    if (!args.noStop) {
      pub.afterStop = await stopAndWait(page);
      pub.localTracksAfterStop = await page.evaluate(localTrackStates);
    }
  }
  return { pub: await report(page, pub) };
}

async function modePublishPlay({ context, base, args, log }) {
  const pubPage = await sdkPage(context, base, args.name, 'pub', log);
  const viewerPage = await sdkPage(context, base, args.name, 'viewer', log);
  let pub;
  let viewer;
  if (args.viewerFirst) {
    // The viewer waits (PENDING) for a publisher that comes a second later.
    const playing = playOn(viewerPage, 'viewer', args, log);
    await pollUntil(async () => (await statusOf(viewerPage)) === 'PENDING', 5000, 50);
    await sleep(1000);
    pub = { publish: await publishOn(pubPage, 'pub', args, log) };
    viewer = await playing;
  } else {
    pub = { publish: await publishOn(pubPage, 'pub', args, log) };
    viewer = await playOn(viewerPage, 'viewer', args, log);
  }
  pub.stats = await getStats(pubPage);
  await hold(args, log);
  viewer.afterStop = await stopAndWait(viewerPage);
  pub.afterStop = await stopAndWait(pubPage);
  pub.localTracksAfterStop = await pubPage.evaluate(localTrackStates);
  return { pub: await report(pubPage, pub), viewer: await report(viewerPage, viewer) };
}

async function modeClose({ context, base, args, log }) {
  const pubPage = await sdkPage(context, base, args.name, 'pub', log);
  const pub = { publish: await publishOn(pubPage, 'pub', args, log) };
  const viewerPage = await sdkPage(context, base, args.name, 'viewer', log);
  const viewer = await playOn(viewerPage, 'viewer', args, log);
  await report(pubPage, pub);
  // The tab goes away as a user closes it: no stop, no disconnect message, the socket just ends.
  const closedAt = await viewerPage.evaluate(() => Math.round(performance.now() - window.t.t0));
  const framesAtClose = ((await getStats(viewerPage)) || {}).framesDecoded ?? 0;
  await pubPage.close({ runBeforeUnload: false });
  log('phase=publisher-closed');
  viewer.closedAt = closedAt;
  viewer.framesAtClose = framesAtClose;
  await pollUntil(async () => FINAL.includes(await statusOf(viewerPage)), args.graceWaitMs, 100);
  viewer.after = (await statuses(viewerPage)).filter((s) => s.t >= closedAt);
  viewer.framesAfter = ((await getStats(viewerPage)) || {}).framesDecoded ?? framesAtClose;
  log(`viewer after the publisher's tab closed: ${brief(viewer.after)}`);
  await stopAndWait(viewerPage);
  return { pub, viewer: await report(viewerPage, viewer) };
}

async function modeDuplicate({ context, base, args, log }) {
  const pubPage = await sdkPage(context, base, args.name, 'pub', log);
  const pub = { publish: await publishOn(pubPage, 'pub', args, log) };
  const viewerPage = await sdkPage(context, base, args.name, 'viewer', log, true);
  const viewer = await playOn(viewerPage, 'viewer', { ...args, playMs: 500 }, log);
  const secondPage = await sdkPage(context, base, args.name, 'second', log);
  const second = { publish: await publishOn(secondPage, 'second', args, log) };
  second.localTracksAfterFail = await secondPage.evaluate(localTrackStates);
  // After the refusal the first publisher goes on: its frames and the viewer's keep growing.
  const [pm, vm] = await Promise.all([measure(pubPage, args.playMs, ['framesSent']), measure(viewerPage, args.playMs, ['framesDecoded'])]);
  pub.framesSentGrowthAfter = pm.growth.framesSent;
  pub.statusAfter = await statusOf(pubPage);
  viewer.framesGrowthAfter = vm.growth.framesDecoded;
  viewer.statusAfter = await statusOf(viewerPage);
  log(`after the refused duplicate: pub ${pub.statusAfter} +${pub.framesSentGrowthAfter} frames sent; viewer ${viewer.statusAfter} +${viewer.framesGrowthAfter} decoded`);
  viewer.afterStop = await stopAndWait(viewerPage);
  pub.afterStop = await stopAndWait(pubPage);
  return { pub: await report(pubPage, pub), second: await report(secondPage, second), viewer: await report(viewerPage, viewer) };
}

/** Waits until the badge `sel` shows one of `wanted` (or a final status); returns what it shows. */
async function waitBadge(page, sel, wanted, ms) {
  const r = await pollUntil(async () => {
    const s = await text(page, sel);
    return wanted.includes(s) || FINAL.includes(s) ? s : null;
  }, ms, 100);
  return r || (await text(page, sel));
}

async function modeChat({ context, base, args, log }) {
  const people = [
    { me: `${args.name}_alice`, other: `${args.name}_bob`, label: 'alice' },
    { me: `${args.name}_bob`, other: `${args.name}_alice`, label: 'bob' },
  ];
  const pages = [];
  for (const p of people) pages.push(await openPage(context, `${base}/chat.html`, log, p.label));
  const start = async (page, p) => {
    await page.fill('#my-name', p.me);
    await page.fill('#other-name', p.other);
    await page.click('#start');
    log(`${p.label}: Start clicked (${p.me} <- ${p.other})`);
  };
  await start(pages[0], people[0]);
  if (args.secondDelayMs) await sleep(args.secondDelayMs);
  await start(pages[1], people[1]);

  const results = await Promise.all(
    pages.map(async (page, i) => {
      const label = people[i].label;
      const r = { label, me: people[i].me, other: people[i].other };
      r.publishStatus = await waitBadge(page, '#publish-status', ['PUBLISHING'], args.publishTimeoutMs);
      r.playStatus = await waitBadge(page, '#play-status', ['PLAYING'], args.firstFrameTimeoutMs + args.secondDelayMs + 5000);
      const frames = await pollUntil(async () => {
        const s = await page.evaluate(() => (window.chat.remote ? window.chat.remote.getStats() : null));
        return s && s.framesDecoded > 0 ? s : null;
      }, 15000, 100);
      r.firstRemoteStats = frames;
      const a = await page.evaluate(() => (window.chat.remote ? window.chat.remote.getStats() : null));
      await sleep(args.playMs);
      const b = await page.evaluate(() => (window.chat.remote ? window.chat.remote.getStats() : null));
      r.remoteStats = b;
      r.remoteFramesGrowth = a && b ? b.framesDecoded - a.framesDecoded : null;
      r.remoteSamplesGrowth = a && b ? b.audioSamples - a.audioSamples : null;
      r.localStats = await page.evaluate(() => (window.chat.local ? window.chat.local.getStats() : null));
      r.page = await page.evaluate(() => ({
        publishStatus: document.getElementById('publish-status').textContent,
        publishReason: document.getElementById('publish-reason').textContent,
        playStatus: document.getElementById('play-status').textContent,
        playReason: document.getElementById('play-reason').textContent,
        retries: window.chat.totalRetries,
        log: [...document.querySelectorAll('#log li')].map((li) => li.textContent).reverse(),
        localVideo: [document.getElementById('local-video').videoWidth, document.getElementById('local-video').videoHeight],
        remoteVideo: [document.getElementById('remote-video').videoWidth, document.getElementById('remote-video').videoHeight],
        remotePaused: document.getElementById('remote-video').paused,
      }));
      log(`${label}: publish ${r.publishStatus}, play ${r.playStatus}, remote +${r.remoteFramesGrowth} frames, retries ${r.page.retries}`);
      return r;
    }),
  );
  // Hang up (the button) and read the statuses.
  for (const [i, page] of pages.entries()) {
    await page.click('#hangup');
    results[i].afterHangup = {
      publish: await waitBadge(page, '#publish-status', [], 8000),
      play: await waitBadge(page, '#play-status', [], 8000),
    };
  }
  return { pages: results };
}

async function modeTwowayPage({ context, base, args, log }) {
  const page = await openPage(context, `${base}/twoway.html`, log, 'twoway');
  const out = {};
  await page.fill('#publish-name', args.name);
  await page.click('#publish');
  out.publishStatus = await waitBadge(page, '#publish-status', ['PUBLISHING'], args.publishTimeoutMs);
  out.publishReason = await text(page, '#publish-reason');
  log(`twoway: publish ${out.publishStatus} ${out.publishReason || ''}`);
  await page.fill('#play-name', args.name);
  await page.click('#play');
  out.playStatus = await waitBadge(page, '#play-status', ['PLAYING'], args.firstFrameTimeoutMs);
  log(`twoway: play ${out.playStatus}`);
  // Stats shown on the page: the remote's resolution and decoded frames, the local frames sent.
  const shown = await pollUntil(async () => {
    const res = await text(page, '#play-resolution');
    const frames = Number(await text(page, '#play-frames'));
    const sent = Number(await text(page, '#publish-frames'));
    return /^\d+x\d+$/.test(res || '') && frames > 0 && sent > 0 ? { res, frames, sent } : null;
  }, 15000, 250);
  const read = async () => ({
    publishResolution: await text(page, '#publish-resolution'),
    publishFrames: Number(await text(page, '#publish-frames')),
    publishBitrate: await text(page, '#publish-bitrate'),
    publishCodec: await text(page, '#publish-codec'),
    playResolution: await text(page, '#play-resolution'),
    playFrames: Number(await text(page, '#play-frames')),
    playBitrate: await text(page, '#play-bitrate'),
    playCodecs: await text(page, '#play-codecs'),
  });
  out.statsShown = !!shown;
  out.stats = await read();
  await sleep(args.playMs);
  out.statsLater = await read();
  out.localVideo = await page.evaluate(() => [document.getElementById('local-video').videoWidth, document.getElementById('local-video').videoHeight]);
  out.remoteVideo = await page.evaluate(() => [document.getElementById('remote-video').videoWidth, document.getElementById('remote-video').videoHeight]);

  // A second tab plays the same name on the same page.
  const other = await openPage(context, `${base}/twoway.html`, log, 'twoway2');
  await other.fill('#play-name', args.name);
  await other.click('#play');
  out.otherPlayStatus = await waitBadge(other, '#play-status', ['PLAYING'], args.firstFrameTimeoutMs);
  const otherFrames = await pollUntil(async () => {
    const n = Number(await text(other, '#play-frames'));
    return n > 0 ? n : null;
  }, 15000, 250);
  out.otherPlayFrames = otherFrames || 0;
  await other.click('#play-stop');
  out.otherAfterStop = await waitBadge(other, '#play-status', [], 8000);

  await page.click('#play-stop');
  out.playAfterStop = await waitBadge(page, '#play-status', [], 8000);
  await page.click('#publish-stop');
  out.publishAfterStop = await waitBadge(page, '#publish-status', [], 8000);
  out.log = await page.evaluate(() => [...document.querySelectorAll('#log li')].map((li) => li.textContent).reverse());
  log(`twoway: ${JSON.stringify(out.stats)}; stops: play ${out.playAfterStop}, publish ${out.publishAfterStop}`);
  return { page: out };
}

/** In the page: plays NAME with a hand-signalled connection whose received video frames pass
 * through an encoded transform that drops them while window.dropping is set. */
async function rawDroppingViewer({ name }) {
  const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws');
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('signalling socket failed'));
  });
  const pc = (window.pc = new RTCPeerConnection({ encodedInsertableStreams: true }));
  window.dropping = false;
  window.viewerStatuses = [];
  pc.ontrack = (e) => {
    if (e.track.kind !== 'video') return;
    const { readable, writable } = e.receiver.createEncodedStreams();
    const drop = new TransformStream({
      transform(frame, out) {
        if (!window.dropping) out.enqueue(frame);
      },
    });
    readable.pipeThrough(drop).pipeTo(writable);
  };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.onicecandidate = (e) =>
    ws.send(JSON.stringify({ type: 'candidate', streamId: 'v1', candidate: e.candidate ? e.candidate.toJSON() : null }));
  ws.onmessage = async (e) => {
    const m = JSON.parse(e.data);
    if (m.type === 'answer') await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
    else if (m.type === 'candidate' && m.candidate) await pc.addIceCandidate(m.candidate);
    else if (m.type === 'status') window.viewerStatuses.push(m.status);
  };
  ws.send(JSON.stringify({ type: 'connect' }));
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  ws.send(JSON.stringify({ type: 'play', streamId: 'v1', name, sdp: offer.sdp }));
}

/** In the page: the raw viewer's inbound video counters. */
async function rawViewerStats() {
  let video = null;
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
  });
  return {
    pliSent: video?.pliCount ?? 0,
    firSent: video?.firCount ?? 0,
    framesDecoded: video?.framesDecoded ?? 0,
    statuses: window.viewerStatuses,
  };
}

async function modeKeyframe({ context, base, args, log }) {
  const pubPage = await sdkPage(context, base, args.name, 'pub', log);
  const pub = await publishOn(pubPage, 'pub', args, log);
  const viewerPage = await openWithSdk(context, `${base}/index.html`, log, 'viewer');
  await viewerPage.evaluate(rawDroppingViewer, { name: args.name });
  const decoding = await pollUntil(async () => (await viewerPage.evaluate(rawViewerStats)).framesDecoded > 0, args.firstFrameTimeoutMs, 100);
  if (!decoding) throw new Error('the raw viewer decoded nothing');
  const sample = async () => ({ pub: await getStats(pubPage), viewer: await viewerPage.evaluate(rawViewerStats) });
  const phase = (a, b) => ({
    viewerPliSent: b.viewer.pliSent + b.viewer.firSent - a.viewer.pliSent - a.viewer.firSent,
    publisherPliReceived: b.pub.pliCount - a.pub.pliCount,
    publisherKeyframes: b.pub.keyFramesEncoded - a.pub.keyFramesEncoded,
    framesDecoded: b.viewer.framesDecoded - a.viewer.framesDecoded,
  });
  const start = await sample();
  await sleep(args.playMs);
  const playing = await sample();
  log('phase=dropping');
  await viewerPage.evaluate(() => {
    window.dropping = true;
  });
  await sleep(args.dropMs);
  await viewerPage.evaluate(() => {
    window.dropping = false;
  });
  // Time for the last request to reach the publisher and its keyframe to be encoded.
  await sleep(500);
  const end = await sample();
  const out = { publish: pub, playing: phase(start, playing), dropping: phase(playing, end), viewerStatuses: end.viewer.statuses };
  log(`keyframe: playing ${JSON.stringify(out.playing)} dropping ${JSON.stringify(out.dropping)}`);
  await stopAndWait(pubPage);
  return out;
}
