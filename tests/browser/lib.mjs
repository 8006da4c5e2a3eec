// Shared helpers of the browser scenarios: command-line parsing, a hard deadline, launching
// Debian's Chromium through playwright-core (fresh temp profile, the flags of TESTING.md), opening
// a page of the server and loading the SDK from the server's own origin, a recorded SDK session
// and stream in such a page (window.t) with its play and measures, and the one JSON line of
// results on stdout (diagnostics go to stderr).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

/** The launch flags of /work/shared/TESTING.md, exactly. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--allow-loopback-in-peer-connection',
];

const started = Date.now();

/** Diagnostics (stderr), prefixed with the scenario and the time since start. */
export function makeLog(tag) {
  return (...parts) => {
    const t = ((Date.now() - started) / 1000).toFixed(2);
    process.stderr.write(`[${tag} +${t}s] ${parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' ')}\n`);
  };
}

/**
 * Parses `--key value`, `--key=value` and bare `--flag` (true) into an object with camelCase
 * keys. `spec` gives the defaults; a key not in it is an error; numbers are parsed when the
 * default is a number, booleans when it is a boolean.
 */
export function parseArgs(spec, argv = process.argv.slice(2)) {
  const out = { ...spec };
  const camel = (k) => k.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    let [k, v] = a.slice(2).split(/=(.*)/s, 2);
    k = camel(k);
    if (!(k in spec)) throw new Error(`unknown option --${a.slice(2).split('=')[0]} (known: ${Object.keys(spec).join(', ')})`);
    if (v === undefined) {
      if (typeof spec[k] === 'boolean') v = 'true';
      else if (i + 1 < argv.length) v = argv[++i];
      else throw new Error(`--${k} needs a value`);
    }
    if (typeof spec[k] === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error(`--${k}: '${v}' is not a number`);
      out[k] = n;
    } else if (typeof spec[k] === 'boolean') {
      out[k] = v === 'true' || v === '1' || v === 'yes';
    } else {
      out[k] = v;
    }
  }
  for (const [k, v] of Object.entries(out)) {
    if (v === null) throw new Error(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} is required`);
  }
  return out;
}

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects with `what` when `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `fn` every `everyMs` until it returns a truthy value (returned) or `ms` pass (null). */
export async function pollUntil(fn, ms, everyMs = 100) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) return null;
    await sleep(everyMs);
  }
}

/** Prints the one result line on stdout. */
export function emit(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

/**
 * Launches Chromium with a fresh temporary profile. Returns {context, close}; close() also
 * removes the profile.
 * @param {(...a: any[]) => void} log
 * @param {{viewport?: {width:number,height:number}, isMobile?: boolean, deviceScaleFactor?: number}} [opts]
 */
export async function launch(log, opts = {}) {
  const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`${executablePath} not found: run scripts/install-test-deps.sh`);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
  log(`launching ${executablePath} (profile ${profile})`);
  const context = await withTimeout(
    chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: opts.viewport || { width: 1280, height: 800 },
      isMobile: opts.isMobile,
      hasTouch: opts.isMobile,
      deviceScaleFactor: opts.deviceScaleFactor,
    }),
    30000,
    'Chromium launch',
  );
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      await withTimeout(context.close(), 10000, 'Chromium close');
    } catch (e) {
      log(`close: ${e.message}`);
    }
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Forwards a page's console messages and errors to stderr. */
export function forwardConsole(page, log, label) {
  page.on('console', (m) => {
    const type = m.type();
    if (type === 'debug' && !process.env.BROWSER_DEBUG) return;
    log(`${label} console.${type}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`${label} page error: ${e.message}`));
  page.on('crash', () => log(`${label} CRASHED`));
}

/** Opens `url` (a page of the server), its console forwarded. Throws when it does not load. */
export async function openPage(context, url, log, label) {
  const page = await context.newPage();
  forwardConsole(page, log, label);
  const res = await withTimeout(page.goto(url, { waitUntil: 'load', timeout: 15000 }), 20000, `load ${url}`);
  if (!res || !res.ok()) throw new Error(`${url}: HTTP ${res ? res.status() : 'no response'}`);
  return page;
}

/**
 * Opens `url` (a page of the server) and loads the SDK from the server's origin as
 * `window.mr` (the module namespace). Throws when the page or the SDK does not load.
 */
export async function openWithSdk(context, url, log, label) {
  const page = await openPage(context, url, log, label);
  await withTimeout(
    page.evaluate(async () => {
      window.mr = await import('/sdk/mediarouter.js');
    }),
    15000,
    'import /sdk/mediarouter.js',
  );
  return page;
}

/** The trimmed text of the first element matching `sel` (null when there is none within 2 s). */
export const text = (page, sel) =>
  page
    .locator(sel)
    .first()
    .textContent({ timeout: 2000 })
    .then((t) => (t || '').trim())
    .catch(() => null);

// ------------------------------------------------------------------------------------------------
// A recorded SDK stream in a page opened with openWithSdk (window.t)
// ------------------------------------------------------------------------------------------------

/** The final stream statuses. */
export const FINAL = ['STOPPED', 'FAILED'];

/**
 * In the page (page.evaluate): a session and one stream of `name`, with the recorder in
 * window.t: every session and stream status with its time (and the transport in use), the
 * errors, the received track kinds and (publish) the local tracks. Times count from now, or
 * (`timesFromPlay`) from the start of playAndFirstFrame. The stream shows on a new <video>
 * (t.video) unless `preview` is false; `serverOffer` asks the server for the offer; `transport`
 * ('auto', 'webrtc', 'ws') is the stream's option when given.
 */
export async function sdkSetup({ name, label, preview, serverOffer, timesFromPlay, transport }) {
  const { Session, EVENT } = window.mr;
  const t = (window.t = {
    statuses: [],
    sessionStatuses: [],
    errors: [],
    tracks: [],
    t0: timesFromPlay ? null : performance.now(),
    firstVideoFrameMs: null,
    local: null,
  });
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
  const options = { name, display: preview === false ? undefined : video };
  if (serverOffer) options.serverOffer = true;
  if (transport) options.transport = transport;
  const stream = (t.stream = session.createStream(options));
  stream.on(EVENT.STATUS, (e) => {
    t.statuses.push({ status: e.status, reason: e.reason ?? null, info: e.info ?? null, t: since(), transport: e.transport ?? null });
    console.info(`${label} status=${e.status} ${e.reason || ''}`);
  });
  stream.on(EVENT.TRACK, (e) => t.tracks.push(e.track.kind));
  stream.on(EVENT.LOCAL_STREAM, (e) => {
    t.local = e.mediaStream.getTracks().map((tr) => ({ kind: tr.kind, label: tr.label, state: tr.readyState }));
  });
  return { sessionId: session.sessionId ?? null, server: session.server ?? null, keepaliveMs: session.keepaliveMs ?? null };
}

/**
 * In the page (after sdkSetup): play() and wait for the first decoded frame (or a final status,
 * or the timeout). The times count from play() (t.p0; with `timesFromPlay` t.t0 too, the clock of
 * the recorded statuses).
 */
export async function playAndFirstFrame({ timeoutMs, timesFromPlay }) {
  const t = window.t;
  const p0 = (t.p0 = performance.now());
  if (timesFromPlay) t.t0 = p0;
  if ('requestVideoFrameCallback' in t.video) {
    t.video.requestVideoFrameCallback(() => {
      t.firstVideoFrameMs = Math.round(performance.now() - p0);
    });
  }
  t.stream.play().catch(() => {});
  const deadline = p0 + timeoutMs;
  while (performance.now() < deadline) {
    const s = await t.stream.getStats();
    if (s && s.framesDecoded > 0) return { ttffMs: Math.round(performance.now() - p0), stats: s };
    if (['STOPPED', 'FAILED'].includes(t.stream.status)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ttffMs: null, stats: await t.stream.getStats() };
}

/**
 * Plays the page's stream (playAndFirstFrame) and logs when the first frame came: {ttffMs,
 * firstStats, firstVideoFrameMs}.
 */
export async function playFirstFrame(page, label, log, { timeoutMs, timesFromPlay }) {
  const first = await page.evaluate(playAndFirstFrame, { timeoutMs, timesFromPlay });
  const out = { ttffMs: first.ttffMs, firstStats: first.stats };
  out.firstVideoFrameMs = await page.evaluate(() => window.t.firstVideoFrameMs);
  log(`${label}: first decoded frame after ${out.ttffMs} ms (video frame callback ${out.firstVideoFrameMs} ms)`);
  return out;
}

/** The page's stream stats (getStats()). */
export const getStats = (page) => page.evaluate(() => window.t.stream.getStats());
/** The page's stream status. */
export const statusOf = (page) => page.evaluate(() => window.t.stream.status);
/** The statuses the page's stream went through, with their times. */
export const statuses = (page) => page.evaluate(() => window.t.statuses);

/** Samples the page's stream stats now and after `ms`: the start, the end and the growth of `keys`. */
export async function measure(page, ms, keys) {
  const a = await getStats(page);
  await sleep(ms);
  const b = await getStats(page);
  const growth = {};
  for (const k of keys) growth[k] = a && b ? b[k] - a[k] : null;
  return { start: a, end: b, growth };
}

/**
 * Unless the page's stream has ended: measures `ms` of playing into `out` (statsStart, statsEnd,
 * framesGrowth, samplesGrowth).
 */
export async function measurePlaying(page, ms, out) {
  if (FINAL.includes(await statusOf(page))) return;
  const m = await measure(page, ms, ['framesDecoded', 'audioSamples']);
  out.statsStart = m.start;
  out.statsEnd = m.end;
  out.framesGrowth = m.growth.framesDecoded;
  out.samplesGrowth = m.growth.audioSamples;
}

/** Adds what the page recorded to `out`: statuses, final status, errors, tracks, session statuses. */
export async function report(page, out) {
  out.statuses = await statuses(page);
  out.status = await statusOf(page);
  out.errors = await page.evaluate(() => window.t.errors);
  out.tracks = await page.evaluate(() => window.t.tracks);
  out.sessionStatuses = await page.evaluate(() => window.t.sessionStatuses);
  return out;
}

/**
 * Runs `main(args, log)` under a hard deadline of `args.deadlineMs`. `main` returns the result
 * object (printed as the JSON line) and may register cleanups with `onExit(fn)`. A thrown error
 * or the deadline is a harness error: stderr says why, the exit code is 2 (error) or 3 (deadline).
 */
export async function run(tag, spec, main) {
  const log = makeLog(tag);
  const cleanups = [];
  const onExit = (fn) => cleanups.push(fn);
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        log(`cleanup: ${e.message}`);
      }
    }
  };
  let args;
  try {
    args = parseArgs({ deadlineMs: 120000, ...spec });
  } catch (e) {
    log(`bad arguments: ${e.message}`);
    process.exit(2);
  }
  const deadline = setTimeout(async () => {
    log(`harness deadline of ${args.deadlineMs} ms reached`);
    await Promise.race([cleanup(), sleep(5000)]);
    process.exit(3);
  }, args.deadlineMs);
  try {
    const result = await main(args, log, onExit);
    await cleanup();
    clearTimeout(deadline);
    emit(result);
    process.exit(0);
  } catch (e) {
    log(`harness error: ${e && e.stack ? e.stack : e}`);
    await Promise.race([cleanup(), sleep(5000)]);
    clearTimeout(deadline);
    process.exit(2);
  }
}
