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

import { run, launch, openWithSdk, pollUntil, sdkSetup, playFirstFrame, getStats, statusOf, statuses, measurePlaying, report, FINAL } from './lib.mjs';

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
  Object.assign(out, await page.evaluate(sdkSetup, { name: args.name, serverOffer: args.serverOffer, label, timesFromPlay: true }));
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

  Object.assign(out, await playFirstFrame(page, label, log, { timeoutMs: args.firstFrameTimeoutMs, timesFromPlay: true }));

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
  await measurePlaying(page, args.playMs, out);
  out.videoPaused = await page.evaluate(() => window.t.video.paused);
  out.videoSize = await page.evaluate(() => [window.t.video.videoWidth, window.t.video.videoHeight]);

  if (!args.noStop && !FINAL.includes(await statusOf(page))) {
    out.stopRequestedAt = await page.evaluate(() => {
      window.t.stream.stop();
      return Math.round(performance.now() - window.t.t0);
    });
    await pollUntil(async () => FINAL.includes(await statusOf(page)), 8000, 50);
  }
  await report(page, out);
  log(`${label}: statuses ${out.statuses.map((s) => s.status + (s.reason ? `(${s.reason})` : '')).join(' -> ')}`);
  return out;
}
