// Glass-to-glass delay of one viewer in headless Chromium: plays a stream whose frames carry the
// wall-clock time they were made (scripts/bench/stamp_source.py), reads the stamp back from every
// frame the page presents (requestVideoFrameCallback, a canvas) and prints one JSON line with the
// delay from the stamp to the frame's display time: count, p50, p90, p99, max, in ms.
//
// usage: node latency.mjs --http-port 8080 --name live/lat --transport ws|webrtc --seconds 15

import { emit, launch, makeLog, openWithSdk, parseArgs, withTimeout } from '../../tests/browser/lib.mjs';

const opts = parseArgs({ httpPort: 8080, name: 'live/lat', transport: 'ws', seconds: 15 });
const log = makeLog(`latency ${opts.transport}`);
const { context, close } = await launch(log);
try {
  const page = await openWithSdk(context, `http://127.0.0.1:${opts.httpPort}/`, log, 'viewer');
  const result = await withTimeout(
    page.evaluate(async ({ name, transport, seconds }) => {
      const video = document.createElement('video');
      video.muted = true;
      video.playsInline = true;
      document.body.append(video);
      const session = await window.mr.Session.connect();
      const stream = session.createStream({ name, display: video, transport });
      const playStart = performance.now();
      await stream.play();
      const canvas = document.createElement('canvas');
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      const delays = [];
      let badReads = 0;
      let firstFrameMs = null;
      const BLOCK = 16;
      const PER_ROW = 16;
      const read = () => {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        ctx.drawImage(video, 0, 0);
        const pixels = ctx.getImageData(0, 0, PER_ROW * BLOCK, 4 * BLOCK).data;
        const at = (x, y) => pixels[(y * PER_ROW * BLOCK + x) * 4] >= 128;
        let stamp = 0;
        for (let bit = 0; bit < 32; bit++) {
          const x = (bit % PER_ROW) * BLOCK + BLOCK / 2;
          const row = Math.floor(bit / PER_ROW);
          const value = at(x, row * BLOCK + BLOCK / 2);
          // The complement row tells a clean read from a blurred or half-decoded one.
          if (value === at(x, (row + 2) * BLOCK + BLOCK / 2)) return null;
          stamp = stamp * 2 + (value ? 1 : 0);
        }
        return stamp;
      };
      await new Promise((resolve) => {
        const end = performance.now() + seconds * 1000;
        // A stream that stops presenting frames ends the window too.
        setTimeout(resolve, seconds * 1000 + 500);
        const onFrame = (now, meta) => {
          firstFrameMs ??= now - playStart;
          const stamp = read();
          if (stamp === null) badReads++;
          else {
            const shown = performance.timeOrigin + (meta.expectedDisplayTime || now);
            // Both clocks are this machine's; the stamp holds the low 32 bits of epoch ms.
            let delay = (((Math.round(shown) - stamp) % 2 ** 32) + 2 ** 32) % 2 ** 32;
            if (delay >= 2 ** 31) delay -= 2 ** 32;
            // A frame shown before it was made is a misread stamp (a garbled picture).
            if (delay < 0) badReads++;
            else delays.push(delay);
          }
          if (now < end) video.requestVideoFrameCallback(onFrame);
          else resolve();
        };
        video.requestVideoFrameCallback(onFrame);
      });
      const stats = await stream.getStats();
      stream.stop();
      session.disconnect();
      delays.sort((a, b) => a - b);
      const pick = (q) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))];
      return {
        transport: stream.transport,
        frames: delays.length,
        badReads,
        // Frames whose stamp could not be read (half-decoded, garbled) are not in the delays.
        firstFrameMs: Math.round(firstFrameMs),
        p50: pick(0.5),
        p90: pick(0.9),
        p99: pick(0.99),
        max: delays[delays.length - 1],
        bufferSeconds: stats.bufferSeconds ?? null,
      };
    }, opts),
    (opts.seconds + 30) * 1000,
    'latency measurement',
  );
  emit({ ok: true, name: opts.name, ...result });
} catch (e) {
  emit({ ok: false, error: e.message });
} finally {
  await close();
}
