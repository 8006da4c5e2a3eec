// Scenario: N Chromium pages each open a session with the SDK (loaded from the server) and play
// one stream name or camera URL over WebRTC. Measures per page: every status with its time, time
// from play() to the first decoded frame (getStats polled every 50 ms, and the video element's
// first requestVideoFrameCallback), codecs, frames and audio samples, and whether frames keep
// growing; optionally waits for a sequence of statuses (e.g. UNPUBLISHED,PLAYING), sends junk on
// the session first, then stops and waits for STOPPED. Prints one JSON line.
//
//   node play.mjs --base http://127.0.0.1:8080 --name test [--pages 3] [--play-ms 3000]
//        [--wait-for UNPUBLISHED,PLAYING] [--wait-for-ms 20000] [--first-frame-timeout-ms 20000]
//        [--server-offer] [--junk-first] [--no-stop] [--deadline-ms 120000]
//
// Progress markers on stderr ("page0 console.info: status=PLAYING ...") let a test act on time.

import { run, launch, openWithSdk, sleep, pollUntil } from './lib.mjs';

const FINAL = ['STOPPED', 'FAILED'];

run(
  'play',
  {
    base: null,
    name: null,
    pages: 1,
    playMs: 3000,
    waitFor: '',
    waitForMs: 20000,
    firstFrameTimeoutMs: 20000,
    serverOffer: false,
    junkFirst: false,
    noStop: false,
  },
  async (args, log, onExit) => {
    const { context, close } = await launch(log);
    onExit(close);
    const base = args.base.replace(/\/$/, '');
    const pages = [];
    for (let i = 0; i < args.pages; i++) {
      pages.push(await openWithSdk(context, `${base}/index.html`, log, `page${i}`));
    }
    const results = await Promise.all(pages.map((page, i) => playOne(page, i, args, log)));
    return {
      scenario: 'play',
      name: args.name,
      pages: results,
    };
  },
);

/** In the page: session, stream and the status recorder. */
async function setup({ name, serverOffer, label }) {
  const { Session, EVENT } = window.mr;
  const t = (window.t = { statuses: [], sessionStatuses: [], errors: [], tracks: [], t0: null, firstVideoFrameMs: null });
  const since = () => (t.t0 === null ? 0 : Math.round(performance.now() - t.t0));
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.style.width = '320px';
  document.body.prepend(video);
  t.video = video;
  const session = (t.session = new Session());
  session.on(EVENT.STATUS, (e) => {
    t.sessionStatuses.push({ status: e.status, reason: e.reason ?? null, t: since() });
    console.info(`${label} session=${e.status} ${e.reason || ''}`);
  });
  session.on(EVENT.ERROR, (e) => {
    t.errors.push({ code: e.code, message: e.message, ref: e.ref ?? null, t: since() });
    console.info(`${label} error=${e.code} ${e.message}`);
  });
  try {
    await session.connect();
  } catch (e) {
    return { connectError: e.message, sessionId: null, server: null, keepaliveMs: null };
  }
  const stream = (t.stream = session.createStream({ name, display: video, serverOffer }));
  stream.on(EVENT.STATUS, (e) => {
    t.statuses.push({ status: e.status, reason: e.reason ?? null, info: e.info ?? null, t: since() });
    console.info(`${label} status=${e.status} ${e.reason || ''}`);
  });
  stream.on(EVENT.TRACK, (e) => t.tracks.push(e.track.kind));
  return { sessionId: session.sessionId ?? null, server: session.server ?? null, keepaliveMs: session.keepaliveMs ?? null };
}

/** In the page: raw junk on the session's own socket, then a ping. */
async function junk() {
  const t = window.t;
  const ws = t.session.ws;
  const before = t.errors.length;
  ws.send('{"type": "play", oops');
  const bin = new Uint8Array(4096);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 151 + 7) & 0xff;
  ws.send(bin);
  let text = '';
  while (text.length < 100 * 1024) text += 'junk!@#$%^&*()\u00e9\u4e2d ';
  ws.send(text);
  const deadline = performance.now() + 5000;
  while (t.errors.length - before < 3 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  let pongMs = null;
  let pingError = null;
  try {
    pongMs = Math.round(await t.session.ping(5000));
  } catch (e) {
    pingError = e.message;
  }
  return { errors: t.errors.slice(before), pongMs, pingError, sessionStatus: t.session.status };
}

/** In the page: play() and wait for the first decoded frame (or a final status, or the timeout). */
async function playAndFirstFrame({ timeoutMs }) {
  const t = window.t;
  t.t0 = performance.now();
  if ('requestVideoFrameCallback' in t.video) {
    t.video.requestVideoFrameCallback(() => {
      t.firstVideoFrameMs = Math.round(performance.now() - t.t0);
    });
  }
  t.stream.play().catch(() => {});
  const deadline = t.t0 + timeoutMs;
  while (performance.now() < deadline) {
    const s = await t.stream.getStats();
    if (s && s.framesDecoded > 0) return { ttffMs: Math.round(performance.now() - t.t0), stats: s };
    if (['STOPPED', 'FAILED'].includes(t.stream.status)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ttffMs: null, stats: await t.stream.getStats() };
}

const getStats = (page) => page.evaluate(() => window.t.stream.getStats());
const statusOf = (page) => page.evaluate(() => window.t.stream.status);
const statuses = (page) => page.evaluate(() => window.t.statuses);

/** Whether `wanted` appears in order (not necessarily adjacent) in `seen` from index `from`. */
function sequenceIndex(seen, wanted, from) {
  let j = 0;
  for (let i = from; i < seen.length && j < wanted.length; i++) {
    if (seen[i].status === wanted[j]) {
      j++;
      if (j === wanted.length) return i;
    }
  }
  return -1;
}

async function playOne(page, i, args, log) {
  const label = `page${i}`;
  const out = { index: i };
  Object.assign(out, await page.evaluate(setup, { name: args.name, serverOffer: args.serverOffer, label }));
  log(`${label}: session ${out.sessionId} (${out.server})`);
  if (out.connectError) {
    log(`${label}: session did not connect: ${out.connectError}`);
    out.status = 'NO_SESSION';
    out.statuses = [];
    out.sessionStatuses = await page.evaluate(() => window.t.sessionStatuses);
    return out;
  }

  if (args.junkFirst) {
    out.junk = await page.evaluate(junk);
    log(`${label}: junk answered with ${JSON.stringify(out.junk)}`);
  }

  const first = await page.evaluate(playAndFirstFrame, { timeoutMs: args.firstFrameTimeoutMs });
  out.ttffMs = first.ttffMs;
  out.firstStats = first.stats;
  out.firstVideoFrameMs = await page.evaluate(() => window.t.firstVideoFrameMs);
  log(`${label}: first decoded frame after ${out.ttffMs} ms (video frame callback ${out.firstVideoFrameMs} ms)`);

  // A sequence of statuses to wait for after the play started (e.g. UNPUBLISHED,PLAYING).
  if (args.waitFor) {
    const wanted = args.waitFor.split(',').map((s) => s.trim()).filter(Boolean);
    const idx = await pollUntil(async () => {
      const seen = await statuses(page);
      const k = sequenceIndex(seen, wanted, 0);
      if (k >= 0) return { k };
      const last = seen[seen.length - 1];
      if (last && FINAL.includes(last.status) && !wanted.includes(last.status)) return { k: -1 };
      return null;
    }, args.waitForMs, 100);
    out.waitFor = { wanted, seen: !!(idx && idx.k >= 0) };
    log(`${label}: wait for ${wanted.join(' then ')}: ${out.waitFor.seen ? 'seen' : 'NOT seen'}`);
    if (out.waitFor.seen && wanted[wanted.length - 1] === 'PLAYING') {
      // Resumed: frames must grow again (allow a keyframe interval or two).
      const base = (await getStats(page)) || { framesDecoded: 0 };
      const grown = await pollUntil(async () => {
        const s = await getStats(page);
        return s && s.framesDecoded > base.framesDecoded ? s : null;
      }, 15000, 100);
      out.waitFor.framesBefore = base.framesDecoded;
      out.waitFor.framesAfter = grown ? grown.framesDecoded : base.framesDecoded;
    }
  }

  // Play on for play-ms and measure that decoding goes on.
  if (!FINAL.includes(await statusOf(page))) {
    const a = await getStats(page);
    await sleep(args.playMs);
    const b = await getStats(page);
    out.statsStart = a;
    out.statsEnd = b;
    out.framesGrowth = a && b ? b.framesDecoded - a.framesDecoded : null;
    out.samplesGrowth = a && b ? b.audioSamples - a.audioSamples : null;
  }
  out.videoPaused = await page.evaluate(() => window.t.video.paused);
  out.videoSize = await page.evaluate(() => [window.t.video.videoWidth, window.t.video.videoHeight]);

  if (!args.noStop && !FINAL.includes(await statusOf(page))) {
    out.stopRequestedAt = await page.evaluate(() => {
      window.t.stream.stop();
      return Math.round(performance.now() - window.t.t0);
    });
    await pollUntil(async () => FINAL.includes(await statusOf(page)), 8000, 50);
  }
  out.statuses = await statuses(page);
  out.status = await statusOf(page);
  out.tracks = await page.evaluate(() => window.t.tracks);
  out.errors = await page.evaluate(() => window.t.errors);
  out.sessionStatuses = await page.evaluate(() => window.t.sessionStatuses);
  log(`${label}: statuses ${out.statuses.map((s) => s.status + (s.reason ? `(${s.reason})` : '')).join(' -> ')}`);
  return out;
}
