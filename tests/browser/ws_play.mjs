// Scenario: Chromium pages play one stream name or camera URL through the SDK with a chosen
// transport ('ws': fMP4 over the media WebSocket into MSE; 'auto'; 'webrtc'), one page per
// transport of --transport, one after the other. Measures per page: the transport the SDK chose,
// every status with its time, the time from play() to the first decoded frame, and, after
// --settle-ms (the player's first catch-up jump over the GOP cache's head start), over a window
// of --play-ms (sampled every 250 ms): frames decoded and dropped, currentTime, the buffer ahead
// of currentTime, audio decoded, init segments. Optionally first publishes the name from another
// page over WebRTC (--publish: Chromium's fake camera and microphone), or waits for a second init
// segment of another width (--wait-inits 2 --wait-width 640: a republish in another size). Then
// stops and waits for STOPPED. Prints one JSON line.
//
//   node ws_play.mjs --base http://127.0.0.1:8080 --name test [--transport ws,auto] [--play-ms 3000]
//        [--settle-ms 1000]
//        [--publish] [--wait-inits 2] [--wait-width 640] [--wait-ms 40000]
//        [--first-frame-timeout-ms 20000] [--no-stop] [--deadline-ms 120000]
//
// Progress markers on stderr ("page0 console.info: page0 status=PLAYING ...") let a test act on time.

import { run, launch, openWithSdk, sleep, pollUntil, sdkSetup, playFirstFrame, getStats, statusOf, report, FINAL } from './lib.mjs';

run(
  'ws_play',
  {
    base: null,
    name: null,
    transport: 'ws',
    playMs: 3000,
    settleMs: 1000,
    firstFrameTimeoutMs: 20000,
    publish: false,
    publishTimeoutMs: 20000,
    waitInits: 0,
    waitWidth: 0,
    waitMs: 40000,
    noStop: false,
  },
  async (args, log, onExit) => {
    const { context, close } = await launch(log);
    onExit(close);
    const base = args.base.replace(/\/$/, '');
    const out = { scenario: 'ws_play', name: args.name };

    let pubPage = null;
    if (args.publish) {
      pubPage = await openWithSdk(context, `${base}/index.html`, log, 'pub');
      const r = await pubPage.evaluate(sdkSetup, { name: args.name, label: 'pub', transport: 'webrtc' });
      if (r.connectError) throw new Error(`pub: session did not connect: ${r.connectError}`);
      out.publish = await pubPage.evaluate(async (timeoutMs) => {
        const started = performance.now();
        let error = null;
        try {
          await window.t.stream.publish({ publishTimeoutMs: timeoutMs });
        } catch (e) {
          error = e.message;
        }
        return { ms: Math.round(performance.now() - started), status: window.t.stream.status, reason: window.t.stream.reason ?? null, error };
      }, args.publishTimeoutMs);
      log(`pub: ${JSON.stringify(out.publish)}`);
    }

    out.pages = [];
    const transports = args.transport.split(',').map((s) => s.trim()).filter(Boolean);
    for (const [i, transport] of transports.entries()) {
      const page = await openWithSdk(context, `${base}/index.html`, log, `page${i}`);
      out.pages.push(await playOne(page, i, transport, args, log));
      await page.close();
    }

    if (pubPage) {
      if (!FINAL.includes(await statusOf(pubPage))) {
        await pubPage.evaluate(() => window.t.stream.stop());
        await pollUntil(async () => FINAL.includes(await statusOf(pubPage)), 8000, 50);
      }
      await report(pubPage, out.publish);
    }
    return out;
  },
);

/** The numbers of a measuring window: samples `everyMs` for `ms`. */
async function sampleWindow(page, ms, everyMs = 250) {
  const samples = [];
  const end = Date.now() + ms;
  for (;;) {
    const s = await getStats(page);
    if (s) samples.push(s);
    if (Date.now() >= end || FINAL.includes(await statusOf(page))) break;
    await sleep(everyMs);
  }
  if (samples.length < 2) return { samples: samples.length };
  const a = samples[0];
  const b = samples[samples.length - 1];
  const buffers = samples.map((s) => s.bufferSeconds).filter((x) => typeof x === 'number');
  const grow = (k) => (typeof a[k] === 'number' && typeof b[k] === 'number' ? Math.round((b[k] - a[k]) * 1000) / 1000 : null);
  return {
    samples: samples.length,
    seconds: Math.round(b.timestamp - a.timestamp) / 1000,
    statsStart: a,
    statsEnd: b,
    framesGrowth: grow('framesDecoded'),
    droppedGrowth: grow('framesDropped'),
    currentTimeGrowth: grow('currentTime'),
    audioDecodedGrowth: grow('audioDecodedBytes'),
    bytesGrowth: grow('bytesReceived'),
    jumpsGrowth: grow('jumps'),
    bufferMax: buffers.length ? Math.max(...buffers) : null,
    bufferAvg: buffers.length ? Math.round((buffers.reduce((x, y) => x + y, 0) / buffers.length) * 1000) / 1000 : null,
    bufferEnd: b.bufferSeconds ?? null,
  };
}

async function playOne(page, i, transport, args, log) {
  const label = `page${i}`;
  const out = { index: i, transportOption: transport };
  Object.assign(out, await page.evaluate(sdkSetup, { name: args.name, label, transport, timesFromPlay: true }));
  if (out.connectError) {
    log(`${label}: session did not connect: ${out.connectError}`);
    out.status = 'NO_SESSION';
    out.statuses = [];
    return out;
  }

  Object.assign(out, await playFirstFrame(page, label, log, { timeoutMs: args.firstFrameTimeoutMs, timesFromPlay: true }));
  out.transport = await page.evaluate(() => window.t.stream.transport);
  log(`${label}: transport option ${transport}, in use ${out.transport}`);

  // A republish in another size: a second init segment, then the new width on the video.
  if (args.waitInits > 0) {
    const before = await getStats(page);
    const seen = await pollUntil(async () => {
      const s = await getStats(page);
      if (!s || FINAL.includes(await statusOf(page))) return { ok: false, s };
      const w = await page.evaluate(() => window.t.video.videoWidth);
      if (s.inits >= args.waitInits && (!args.waitWidth || w === args.waitWidth)) return { ok: true, s, w };
      return null;
    }, args.waitMs, 100);
    out.waitInits = {
      wanted: args.waitInits,
      width: args.waitWidth || null,
      seen: !!(seen && seen.ok),
      framesBefore: before ? before.framesDecoded : null,
      stats: seen ? seen.s : await getStats(page),
      videoWidth: await page.evaluate(() => window.t.video.videoWidth),
    };
    log(`${label}: wait for ${args.waitInits} inits${args.waitWidth ? ` and width ${args.waitWidth}` : ''}: ${out.waitInits.seen ? 'seen' : 'NOT seen'}`);
  }

  // Play on and measure (steady playback: after the start's catch-up).
  if (!FINAL.includes(await statusOf(page))) {
    await sleep(args.settleMs);
    Object.assign(out, await sampleWindow(page, args.playMs));
    log(`${label}: window ${JSON.stringify({ frames: out.framesGrowth, dropped: out.droppedGrowth, currentTime: out.currentTimeGrowth, bufferEnd: out.bufferEnd, bufferMax: out.bufferMax, audioBytes: out.audioDecodedGrowth })}`);
  }
  out.videoPaused = await page.evaluate(() => window.t.video.paused);
  out.videoSize = await page.evaluate(() => [window.t.video.videoWidth, window.t.video.videoHeight]);

  if (!args.noStop && !FINAL.includes(await statusOf(page))) {
    await page.evaluate(() => window.t.stream.stop());
    await pollUntil(async () => FINAL.includes(await statusOf(page)), 8000, 50);
    out.statsAfterStop = await getStats(page);
  }
  await report(page, out);
  log(`${label}: statuses ${out.statuses.map((s) => s.status + (s.reason ? `(${s.reason})` : '')).join(' -> ')}`);
  return out;
}
