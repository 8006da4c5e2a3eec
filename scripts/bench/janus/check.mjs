// A real WebRTC client against the Janus of the benchmarks: headless Chromium opens viewer.html
// (served from http://127.0.0.1), watches the streaming mountpoint through Janus's HTTP API and
// samples getStats() every second. Prints one JSON line: the offer's codec lines, the first
// sample with a decoded frame, the rates over the window (video frames decoded per second, audio
// samples per second) and, with --server-pid, Janus's CPU over the same window, as % of a core.
// Exits non-zero when video does not decode at >= 25 frames/s or no audio arrives.
//
// usage: node check.mjs --page http://127.0.0.1:PORT/viewer.html --janus http://127.0.0.1:18088/janus
//          [--mountpoint 1] [--seconds 20] [--server-pid PID]

import fs from 'node:fs';
import { emit, launch, makeLog, openPage, parseArgs, sleep, withTimeout } from '../../../tests/browser/lib.mjs';

const opts = parseArgs({ page: null, janus: 'http://127.0.0.1:18088/janus', mountpoint: 1, seconds: 20, serverPid: 0 });
const log = makeLog('janus check');

/** utime + stime of a process in clock ticks (USER_HZ = 100), 0 when it is gone. */
function cpuTicks(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

const { context, close } = await launch(log);
let result;
try {
  const page = await openPage(context, opts.page, log, 'viewer');
  const offer = await withTimeout(page.evaluate(([b, id]) => window.watch(b, id), [opts.janus, opts.mountpoint]), 20000, 'watch');
  log('offer', offer);
  // Up to 5 s for the first decoded frame: Janus forwards from wherever the source is, so the
  // decoder waits for the next keyframe (2 s GOP).
  let first = null;
  for (let i = 0; i < 50 && !first; i++) {
    await sleep(100);
    const s = await page.evaluate(() => window.sample());
    if (s.video && s.video.framesDecoded > 0) first = s;
  }
  if (!first) throw new Error('no video frame decoded within 5 s');
  log('first frame', first);
  await sleep(1000);
  const start = await page.evaluate(() => window.sample());
  const cpuStart = opts.serverPid ? cpuTicks(opts.serverPid) : 0;
  const wallStart = Date.now();
  for (let i = 0; i < opts.seconds; i++) {
    await sleep(1000);
    if (i % 5 === 4) log('sample', await page.evaluate(() => window.sample()));
  }
  const end = await page.evaluate(() => window.sample());
  const wallS = (Date.now() - wallStart) / 1000;
  const cpuS = opts.serverPid ? (cpuTicks(opts.serverPid) - cpuStart) / 100 : null;
  const span = (end.at - start.at) / 1000;
  const rate = (a, b, key) => (b && a ? (b[key] - a[key]) / span : 0);
  const fps = rate(start.video, end.video, 'framesDecoded');
  const samplesPerS = rate(start.audio, end.audio, 'totalSamplesReceived');
  result = {
    ok: fps >= 25 && samplesPerS > 40000,
    offer,
    firstFrameMs: Math.round(first.at),
    videoCodec: end.video && end.video.codec,
    audioCodec: end.audio && end.audio.codec,
    size: end.video && `${end.video.frameWidth}x${end.video.frameHeight}`,
    decoder: end.video && end.video.decoder,
    framesDecodedPerS: Number(fps.toFixed(2)),
    framesDropped: end.video && end.video.framesDropped - start.video.framesDropped,
    videoPacketsLost: end.video && end.video.packetsLost,
    nacks: end.video && end.video.nackCount,
    plis: end.video && end.video.pliCount,
    // Time a frame spent in the receiver's jitter buffer, on average over the window.
    jitterBufferMs: end.video && Number(((1000 * (end.video.jitterBufferDelay - start.video.jitterBufferDelay)) /
      Math.max(1, end.video.jitterBufferEmittedCount - start.video.jitterBufferEmittedCount)).toFixed(1)),
    audioSamplesPerS: Math.round(samplesPerS),
    audioPacketsLost: end.audio && end.audio.packetsLost,
    audioConcealedSamples: end.audio && end.audio.concealedSamples - start.audio.concealedSamples,
    videoCurrentTime: end.videoTime,
    serverCpuPercent: cpuS === null ? null : Number(((cpuS / wallS) * 100).toFixed(2)),
  };
} catch (e) {
  result = { ok: false, error: e.message };
} finally {
  await close();
}
emit(result);
process.exit(result.ok ? 0 : 1);
