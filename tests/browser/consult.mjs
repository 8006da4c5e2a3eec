// Scenario: the Consultation page (web/consult.html) in three tabs of one Chromium, clicked as
// people do. The doctor enters room ROOM (publishes the fake camera as clinic/ROOM); patients A
// and B enter and watch the broadcast; A asks for a private session (a viewer message on the
// broadcast) and waits for it; the doctor's page lists the request and the doctor starts it
// (a private publish of clinic/ROOM-private-<A's session id>); A's second video plays it. Then B
// plays A's private name directly through the SDK in its own page and must be refused, while A
// and both broadcasts play on; a `send` the server cannot pass on gets an error; the doctor ends
// the private session and A's page says so. Measured per video: frames decoded (the SDK's
// getStats(), the video's requestVideoFrameCallback count, getVideoPlaybackQuality()) over
// windows of --window-ms, and the times of each step. Prints one JSON line; progress markers on
// stderr ("step=...").
//
//   node consult.mjs --base http://127.0.0.1:8080 [--room r1] [--window-ms 3000]
//        [--doctor-delay-ms 0] [--mode consult|refused] [--deadline-ms 150000]
//
// --doctor-delay-ms: how long the doctor waits after the request shows before clicking Start
// (beyond the server's play wait, A's page must play the private name again by itself).
// --mode refused: on a server whose application refuses every session, the doctor's page only:
// what its badge shows, and what the SDK's connect() rejects with and the session emits.

import { run, launch, openPage, sleep, pollUntil, text } from './lib.mjs';

run(
  'consult',
  {
    base: null,
    room: 'r1',
    windowMs: 3000,
    doctorDelayMs: 0,
    stepTimeoutMs: 25000,
    mode: 'consult',
  },
  async (args, log, onExit) => {
    const base = args.base.replace(/\/$/, '');
    const { context, close } = await launch(log);
    onExit(close);
    if (args.mode === 'refused') return refusedSession(context, base, args, log);
    const t0 = Date.now();
    const since = () => Date.now() - t0;
    const out = { scenario: 'consult', room: args.room, steps: {} };
    const step = (name, extra = {}) => {
      out.steps[name] = { t: since(), ...extra };
      log(`step=${name} ${JSON.stringify(extra)}`);
    };
    const badge = (page, id) => page.evaluate((i) => document.getElementById(i)?.dataset.status ?? null, id);
    /** Waits until the badge #id shows one of `wanted` (or a final status); returns what it shows. */
    const waitBadge = async (page, id, wanted, ms = args.stepTimeoutMs) => {
      await pollUntil(async () => {
        const s = await badge(page, id);
        return wanted.includes(s) || s === 'FAILED' || s === 'STOPPED';
      }, ms, 100);
      return badge(page, id);
    };

    const enter = async (role, name) => {
      const q = new URLSearchParams({ role, room: args.room, name });
      const page = await openPage(context, `${base}/consult.html?${q}`, log, name);
      await page.click('#start', { timeout: 5000 });
      await pollUntil(() => page.evaluate(() => !!(window.consult.session && window.consult.session.id)), 10000, 100);
      const sessionId = await page.evaluate(() => window.consult.session.id);
      await installCounters(page);
      return { page, sessionId };
    };

    // The doctor broadcasts.
    const doctor = await enter('doctor', 'Dr Grey');
    const doctorStatus = await waitBadge(doctor.page, 'doctor-status', ['PUBLISHING']);
    step('doctor-broadcasting', { status: doctorStatus, sessionId: doctor.sessionId });
    out.doctor = { sessionId: doctor.sessionId, broadcastStatus: doctorStatus, broadcastReason: await text(doctor.page, '#doctor-reason') };
    if (doctorStatus !== 'PUBLISHING') return out;

    // Two patients watch it.
    const a = await enter('patient', 'Alice');
    const b = await enter('patient', 'Bob');
    out.a = { sessionId: a.sessionId, broadcastStatus: await waitBadge(a.page, 'broadcast-status', ['PLAYING']) };
    out.b = { sessionId: b.sessionId, broadcastStatus: await waitBadge(b.page, 'broadcast-status', ['PLAYING']) };
    step('patients-playing', { a: out.a.broadcastStatus, b: out.b.broadcastStatus });
    await Promise.all([waitFrames(a.page, 'broadcast-video'), waitFrames(b.page, 'broadcast-video')]);
    const [aB1, bB1] = await Promise.all([window_(a.page, ['broadcast-video'], args.windowMs), window_(b.page, ['broadcast-video'], args.windowMs)]);
    out.a.broadcastWindow1 = aB1['broadcast-video'];
    out.b.broadcastWindow1 = bB1['broadcast-video'];
    out.a.askDisabledBefore = await a.page.locator('#ask').isDisabled();

    // A asks for a private session: the page sends the request and waits on the private name.
    await a.page.click('#ask', { timeout: 5000 });
    step('a-asked');
    await pollUntil(async () => (await a.page.evaluate(() => document.getElementById('private-hint').dataset.state)) === 'waiting', 5000, 50);
    out.a.waiting = {
      hintState: await a.page.evaluate(() => document.getElementById('private-hint').dataset.state),
      hint: await text(a.page, '#private-hint'),
      privateStatus: await badge(a.page, 'private-status'),
      askDisabled: await a.page.locator('#ask').isDisabled(),
    };
    step('a-waiting', out.a.waiting);

    // The doctor's page lists the request, and the doctor starts the private session.
    const request = `#requests li[data-from="${a.sessionId}"]`;
    const listed = await pollUntil(async () => (await doctor.page.locator(request).count()) > 0, 10000, 50);
    out.request = listed
      ? {
          state: await doctor.page.evaluate((sel) => document.querySelector(sel).dataset.state, request),
          patient: await doctor.page.evaluate((sel) => document.querySelector(sel).dataset.patient, request),
          text: await text(doctor.page, request),
          count: await doctor.page.locator('#requests li').count(),
        }
      : null;
    step('request-listed', { request: out.request });
    if (!listed) return out;
    if (args.doctorDelayMs > 0) await sleep(args.doctorDelayMs);
    // Plays of the private name A's page made again while the doctor had not started.
    out.a.privateWaitsBeforeStart = await a.page.evaluate(() => window.consult.privateWaits);
    out.a.privateStatusBeforeStart = await badge(a.page, 'private-status');
    await doctor.page.click(`${request} .start-private`, { timeout: 5000 });
    step('doctor-started');
    await pollUntil(async () => ['live', 'failed', 'ended'].includes(await doctor.page.evaluate((sel) => document.querySelector(sel).dataset.state, request)), args.stepTimeoutMs, 100);
    out.request.afterStart = {
      state: await doctor.page.evaluate((sel) => document.querySelector(sel).dataset.state, request),
      status: await doctor.page.evaluate((sel) => document.querySelector(`${sel} .badge`).dataset.status, request),
      reason: await text(doctor.page, `${request} .reason`),
    };
    step('doctor-private-state', out.request.afterStart);

    // A's private video plays.
    out.a.privateStatus = await waitBadge(a.page, 'private-status', ['PLAYING']);
    step('a-private-status', { status: out.a.privateStatus, reason: await text(a.page, '#private-reason') });
    out.a.privateReason = await text(a.page, '#private-reason');
    out.a.privateFirstFrame = await waitFrames(a.page, 'private-video');
    step('a-private-frames', { frames: out.a.privateFirstFrame });
    out.a.livehint = {
      state: await a.page.evaluate(() => document.getElementById('private-hint').dataset.state),
      text: await text(a.page, '#private-hint'),
    };
    out.a.privateName = await text(a.page, '#private-name');
    const aP1 = await window_(a.page, ['private-video', 'broadcast-video'], args.windowMs);
    out.a.privateWindow1 = aP1['private-video'];
    out.a.broadcastWindow2 = aP1['broadcast-video'];

    // The server lists both streams, the private one as private.
    out.rest = await listStreams(base);
    step('rest', { streams: out.rest });

    // B plays A's private name directly through the SDK of its page: refused.
    const privateName = `clinic/${args.room}-private-${a.sessionId}`;
    out.b.intrusion = await b.page.evaluate(async ({ name, ms }) => {
      const video = document.createElement('video');
      video.muted = true;
      document.body.append(video);
      const stream = window.consult.session.createStream({ name, display: video });
      const statuses = [];
      stream.on('status', (e) => statuses.push({ status: e.status, reason: e.reason ?? null }));
      const started = performance.now();
      let error = null;
      try {
        await stream.play();
      } catch (e) {
        error = e.message;
      }
      const settled = Math.round(performance.now() - started);
      // A `send` on the refused (ended) play: the server no longer knows the stream.
      const errors = [];
      stream.on('error', (e) => errors.push(e));
      const sent = stream.send({ kind: 'private-request', patient: 'Bob' });
      const deadline = performance.now() + ms;
      while (errors.length === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      window.intruder = stream;
      return { statuses, status: stream.status, reason: stream.reason ?? null, error, settledMs: settled, send: { sent, errors } };
    }, { name: privateName, ms: 3000 });
    step('b-intrusion', out.b.intrusion);

    // A and both broadcasts play on.
    const [aP2, bB2] = await Promise.all([window_(a.page, ['private-video', 'broadcast-video'], args.windowMs), window_(b.page, ['broadcast-video'], args.windowMs)]);
    out.a.privateWindow2 = aP2['private-video'];
    out.a.broadcastWindow3 = aP2['broadcast-video'];
    out.b.broadcastWindow2 = bB2['broadcast-video'];
    out.a.privateStatusAfter = await badge(a.page, 'private-status');
    out.b.broadcastStatusAfter = await badge(b.page, 'broadcast-status');

    // A publish cannot send: the SDK says so at once; sent anyway, the server answers an error.
    out.doctor.send = await doctor.page.evaluate(async () => {
      const stream = window.consult.broadcast;
      let thrown = null;
      try {
        stream.send({ hello: 1 });
      } catch (e) {
        thrown = e.message;
      }
      const errors = [];
      const onError = (e) => errors.push(e);
      window.consult.session.on('error', onError);
      window.consult.session.send({ type: 'send', streamId: stream.id, data: { hello: 1 } });
      const deadline = performance.now() + 3000;
      while (errors.length === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      window.consult.session.off('error', onError);
      return { thrown, errors, broadcastStatus: stream.status };
    });
    step('doctor-send', out.doctor.send);

    // The doctor ends the private session: A's page says so, the broadcast goes on.
    await doctor.page.click(`${request} .end-private`, { timeout: 5000 });
    step('doctor-ended');
    await pollUntil(async () => (await a.page.evaluate(() => document.getElementById('private-hint').dataset.state)) === 'ended', 15000, 100);
    await pollUntil(async () => (await doctor.page.evaluate((sel) => document.querySelector(sel).dataset.state, request)) !== 'live', 8000, 100);
    out.a.afterEnd = {
      hintState: await a.page.evaluate(() => document.getElementById('private-hint').dataset.state),
      hint: await text(a.page, '#private-hint'),
      privateStatus: await badge(a.page, 'private-status'),
      askDisabled: await a.page.locator('#ask').isDisabled(),
      broadcastStatus: await badge(a.page, 'broadcast-status'),
    };
    out.request.afterEnd = {
      state: await doctor.page.evaluate((sel) => document.querySelector(sel).dataset.state, request),
      status: await doctor.page.evaluate((sel) => document.querySelector(`${sel} .badge`).dataset.status, request),
    };
    out.doctor.broadcastStatusAtEnd = await badge(doctor.page, 'doctor-status');
    step('after-end', { a: out.a.afterEnd, request: out.request.afterEnd });
    out.logs = {
      doctor: await pageLog(doctor.page),
      a: await pageLog(a.page),
      b: await pageLog(b.page),
    };
    return out;
  },
);

/**
 * The doctor's page on a server that refuses the session: the badge and reason it shows, then,
 * in the same page, the SDK's own connect(): its rejection and the session's status events.
 */
async function refusedSession(context, base, args, log) {
  const q = new URLSearchParams({ role: 'doctor', room: args.room, name: 'Dr Grey' });
  const page = await openPage(context, `${base}/consult.html?${q}`, log, 'doctor');
  await page.click('#start', { timeout: 5000 });
  await pollUntil(async () => (await page.evaluate(() => document.getElementById('doctor-status').dataset.status)) === 'FAILED', 15000, 100);
  const out = {
    scenario: 'consult-refused',
    page: {
      status: await page.evaluate(() => document.getElementById('doctor-status').dataset.status),
      reason: await text(page, '#doctor-reason'),
      sessionInfo: await text(page, '#session-info'),
      startEnabled: !(await page.locator('#start').isDisabled()),
    },
  };
  out.sdk = await page.evaluate(async () => {
    const { Session, EVENT } = await import('/sdk/mediarouter.js');
    const session = new Session({ appKey: 'clinic', custom: { role: 'doctor' } });
    const events = [];
    session.on(EVENT.STATUS, (e) => events.push({ status: e.status, reason: e.reason ?? null }));
    try {
      await session.connect();
      return { connected: true, events };
    } catch (e) {
      return { connected: false, message: e.message, status: e.status ?? null, reason: e.reason ?? null, events, sessionStatus: session.status, sessionReason: session.reason ?? null };
    }
  });
  log(`refused: ${JSON.stringify(out)}`);
  return out;
}

/**
 * In the page: counts the frames each <video> of the page presents (requestVideoFrameCallback),
 * in window.frameCounts by the video's id.
 */
async function installCounters(page) {
  await page.evaluate(() => {
    window.frameCounts = {};
    for (const video of document.querySelectorAll('video[id]')) {
      window.frameCounts[video.id] = 0;
      if (!('requestVideoFrameCallback' in video)) continue;
      const tick = () => {
        window.frameCounts[video.id] += 1;
        video.requestVideoFrameCallback(tick);
      };
      video.requestVideoFrameCallback(tick);
    }
  });
}

/** Samples of each video of `ids`: frames presented, decoded (SDK and video element), currentTime. */
function sample(page, ids) {
  return page.evaluate(async (ids) => {
    const byVideo = { 'broadcast-video': window.consult.broadcast, 'private-video': window.consult.privatePlay };
    const out = {};
    for (const id of ids) {
      const video = document.getElementById(id);
      const stream = byVideo[id];
      const stats = stream ? await stream.getStats().catch(() => null) : null;
      const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      out[id] = {
        at: Math.round(performance.now()),
        presented: window.frameCounts[id] ?? 0,
        framesDecoded: stats ? stats.framesDecoded : null,
        totalVideoFrames: q ? q.totalVideoFrames : null,
        droppedVideoFrames: q ? q.droppedVideoFrames : null,
        currentTime: video.currentTime,
        width: video.videoWidth,
        height: video.videoHeight,
        status: stream ? stream.status : null,
      };
    }
    return out;
  }, ids);
}

/** Two samples `ms` apart: for each video the growth of its counters over the window. */
async function window_(page, ids, ms) {
  const a = await sample(page, ids);
  await sleep(ms);
  const b = await sample(page, ids);
  const out = {};
  for (const id of ids) {
    const [x, y] = [a[id], b[id]];
    out[id] = {
      ms: y.at - x.at,
      presented: y.presented - x.presented,
      framesDecoded: x.framesDecoded != null && y.framesDecoded != null ? y.framesDecoded - x.framesDecoded : null,
      totalVideoFrames: x.totalVideoFrames != null ? y.totalVideoFrames - x.totalVideoFrames : null,
      currentTime: Number((y.currentTime - x.currentTime).toFixed(3)),
      end: y,
    };
  }
  return out;
}

/**
 * Waits (up to 20 s) until the video `id` decoded or presented a frame (a tab in the background
 * may present few); returns its sample then (or null).
 */
async function waitFrames(page, id) {
  const started = Date.now();
  const ok = await pollUntil(async () => {
    const s = (await sample(page, [id]))[id];
    return s.framesDecoded > 0 || s.presented > 0;
  }, 20000, 50);
  if (!ok) return null;
  return { afterMs: Date.now() - started, ...(await sample(page, [id]))[id] };
}

/** The streams of the server as its Streams page reads them (web port), with the private flag. */
async function listStreams(base) {
  const res = await fetch(`${base}/rest-api/stream/find_all`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  const body = await res.json().catch(() => null);
  if (!Array.isArray(body)) return { httpStatus: res.status, body };
  return body.map((s) => ({ app: s.app, name: s.name, status: s.status, private: s.private, players: s.players }));
}

/** The page's event log, oldest first. */
function pageLog(page) {
  return page.evaluate(() => [...document.querySelectorAll('#log li')].map((li) => li.textContent).reverse());
}
