// Scenario: the SDK's tokens against a server whose application wants one for every publish and
// play. In one Chromium page, each case a session of its own: plays of --name over WebRTC and
// over the media WebSocket ('ws') with no token, with the stream's `token` option, with only the
// session's token, and with a token for another stream; a publish of --publish-name with and
// without its token. Per case: the statuses, what play()/publish() rejected with, the frames
// decoded (or sent) once PLAYING (PUBLISHING), and for 'ws' the media WebSocket's URL. Prints one
// JSON line.
//
//   node sdk_access.mjs --base http://127.0.0.1:8080 --name tok --play-token T --other-token T2
//        --publish-name pubtok --publish-token T3 [--deadline-ms 120000]

import { run, launch, openWithSdk } from './lib.mjs';

run(
  'sdk_access',
  {
    base: null,
    name: null,
    playToken: null,
    otherToken: null,
    publishName: null,
    publishToken: null,
    caseTimeoutMs: 15000,
  },
  async (args, log, onExit) => {
    const { context, close } = await launch(log);
    onExit(close);
    const base = args.base.replace(/\/$/, '');
    const page = await openWithSdk(context, `${base}/index.html`, log, 'page');
    const cases = [
      ['webrtcNoToken', { transport: 'webrtc' }],
      ['webrtcStreamToken', { transport: 'webrtc', streamToken: args.playToken }],
      ['webrtcSessionToken', { transport: 'webrtc', sessionToken: args.playToken }],
      ['webrtcOtherToken', { transport: 'webrtc', streamToken: args.otherToken }],
      ['wsNoToken', { transport: 'ws', appKey: 'live' }],
      ['wsStreamToken', { transport: 'ws', appKey: 'live', streamToken: args.playToken }],
      ['wsSessionToken', { transport: 'ws', appKey: 'live', sessionToken: args.playToken }],
      ['publishNoToken', { publish: true }],
      ['publishToken', { publish: true, streamToken: args.publishToken }],
    ];
    const out = { scenario: 'sdk_access', cases: {} };
    for (const [label, c] of cases) {
      const name = c.publish ? args.publishName : args.name;
      out.cases[label] = await page.evaluate(oneCase, { ...c, name, ms: args.caseTimeoutMs });
      log(`${label}: ${JSON.stringify(out.cases[label])}`);
    }
    return out;
  },
);

/** In the page: one session and one stream, played or published, then stopped. */
async function oneCase({ name, transport, appKey, sessionToken, streamToken, publish, ms }) {
  const { Session } = window.mr;
  const options = {};
  if (appKey) options.appKey = appKey;
  if (sessionToken) options.token = sessionToken;
  const session = new Session(options);
  await session.connect();
  const video = document.createElement('video');
  video.muted = true;
  document.body.append(video);
  const streamOptions = { name, display: video, playTimeoutMs: ms };
  if (transport) streamOptions.transport = transport;
  if (streamToken) streamOptions.token = streamToken;
  const stream = session.createStream(streamOptions);
  const statuses = [];
  stream.on('status', (e) => statuses.push({ status: e.status, reason: e.reason ?? null }));
  let error = null;
  let wsUrl = null;
  try {
    const started = publish ? stream.publish({ publishTimeoutMs: ms }) : stream.play();
    // A 'ws' play opens its media socket at once; a refused one closes it soon after.
    wsUrl = stream._mse ? stream._mse.url : null;
    await started;
  } catch (e) {
    error = e.message;
  }
  let frames = 0;
  const deadline = performance.now() + 10000;
  while (['PLAYING', 'PUBLISHING'].includes(stream.status) && frames === 0 && performance.now() < deadline) {
    const s = await stream.getStats();
    frames = (s && (publish ? s.framesSent : s.framesDecoded)) || 0;
    if (frames === 0) await new Promise((r) => setTimeout(r, 100));
  }
  const result = { status: stream.status, reason: stream.reason ?? null, error, statuses, frames, wsUrl };
  stream.stop();
  session.disconnect();
  video.remove();
  return result;
}
