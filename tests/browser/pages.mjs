// Scenario: the server's own pages clicked through as a user does. Player page: fill the name,
// click Play, read the status badge and the live stats (resolution, frame rate, ...), click Stop.
// Streams page: wait until it lists the stream (and the camera pull), click the stream's Play
// link (and the camera's), and read the Player it opens. Prints one JSON line; with
// --screenshots DIR it also saves desktop (1280x800) and phone (390x844) screenshots. With
// --transport auto|webrtc|ws the Player's transport choice is set before Play (the Player then
// shows the transport in use in #transport); --player-only skips the index and Streams pages.
//
//   node pages.mjs --base http://127.0.0.1:8080 --name test [--camera cam1] [--screenshots DIR]
//        [--transport ws] [--player-only]

import fs from 'node:fs';
import path from 'node:path';
import { run, launch, openPage, pollUntil, text } from './lib.mjs';

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

run(
  'pages',
  {
    base: null,
    name: null,
    camera: '',
    screenshots: '',
    playTimeoutMs: 20000,
    transport: '',
    playerOnly: false,
  },
  async (args, log, onExit) => {
    const base = args.base.replace(/\/$/, '');
    const { context, close } = await launch(log, { viewport: DESKTOP });
    onExit(close);
    if (args.screenshots) fs.mkdirSync(args.screenshots, { recursive: true });
    const shot = async (page, file, viewport) => {
      if (!args.screenshots) return;
      if (viewport) await page.setViewportSize(viewport);
      await page.screenshot({ path: path.join(args.screenshots, file), fullPage: true });
      log(`screenshot ${file}`);
    };

    const open = (url, label) => openPage(context, url, log, label);

    /** Waits for the Player's badge to show PLAYING and the stats to show a resolution and a frame rate. */
    const readPlayer = async (page) => {
      const playing = await pollUntil(async () => {
        const s = await text(page, '#status');
        return s === 'PLAYING' || s === 'FAILED' || s === 'STOPPED' ? s : null;
      }, args.playTimeoutMs, 100);
      const stats = await pollUntil(async () => {
        const r = await text(page, '#stat-resolution');
        const f = Number(await text(page, '#stat-fps'));
        return /^\d+x\d+$/.test(r || '') && f > 0 ? { resolution: r, fps: f } : null;
      }, playing === 'PLAYING' ? 15000 : 0, 250);
      return {
        url: page.url(),
        status: await text(page, '#status'),
        reason: await text(page, '#reason'),
        resolution: stats ? stats.resolution : await text(page, '#stat-resolution'),
        fps: stats ? stats.fps : await text(page, '#stat-fps'),
        bitrate: await text(page, '#stat-bitrate'),
        packetsLost: await text(page, '#stat-lost'),
        videoCodec: await text(page, '#stat-vcodec'),
        audioCodec: await text(page, '#stat-acodec'),
        framesDecoded: await text(page, '#stat-frames'),
        transport: await text(page, '#transport'),
        buffer: await text(page, '#stat-buffer'),
      };
    };
    const clickStop = async (page) => {
      if (await page.locator('#stop').isDisabled()) return text(page, '#status');
      await page.click('#stop', { timeout: 5000 });
      await pollUntil(async () => ['STOPPED', 'FAILED'].includes(await text(page, '#status')), 8000, 100);
      return text(page, '#status');
    };

    const out = { scenario: 'pages', name: args.name };

    // Index.
    if (!args.playerOnly) {
      const index = await open(`${base}/`, 'index');
      out.index = { links: await index.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href'))) };
      await shot(index, 'index-desktop.png');
      await shot(index, 'index-phone.png', PHONE);
      await index.close();
    }

    // Player, clicked through.
    const player = await open(`${base}/player.html`, 'player');
    await player.fill('#name', args.name);
    if (args.transport) await player.selectOption('#transport-choice', args.transport);
    await player.click('#play');
    out.player = await readPlayer(player);
    // Unmute (a click: a user gesture) and read the video element back.
    if (!(await player.locator('#unmute').isDisabled())) {
      await player.click('#unmute', { timeout: 5000 });
      await pollUntil(() => player.evaluate(() => !document.getElementById('video').muted), 3000, 100);
    }
    out.player.unmuteButton = await text(player, '#unmute');
    out.player.videoMuted = await player.evaluate(() => document.getElementById('video').muted);
    out.player.videoPaused = await player.evaluate(() => document.getElementById('video').paused);
    log(`player: ${JSON.stringify(out.player)}`);
    await shot(player, 'player-desktop.png');
    await shot(player, 'player-phone.png', PHONE);
    await player.setViewportSize(DESKTOP);
    out.player.afterStop = await clickStop(player);
    await player.close();
    if (args.playerOnly) return out;

    // Streams page.
    const streams = await open(`${base}/streams.html`, 'streams');
    await pollUntil(() => streams.evaluate(() => document.body.dataset.loaded === '1'), 10000, 100);
    const listed = async () =>
      streams.evaluate(() => ({
        streams: [...document.querySelectorAll('#streams li[data-name]')].map((li) => ({ name: li.dataset.name, app: li.dataset.app, text: li.innerText })),
        cameras: [...document.querySelectorAll('#cameras li[data-uri]')].map((li) => ({ name: li.dataset.name, uri: li.dataset.uri, text: li.innerText })),
        errors: [...document.querySelectorAll('.list .error')].map((e) => e.innerText),
      }));
    const wanted = (l) => l.streams.some((s) => s.name === args.name) && (!args.camera || l.cameras.some((c) => c.name === args.camera || c.uri.includes(args.camera)));
    await pollUntil(async () => wanted(await listed()), 12000, 250);
    out.streams = await listed();
    log(`streams page lists ${JSON.stringify(out.streams)}`);
    await shot(streams, 'streams-desktop.png');
    await shot(streams, 'streams-phone.png', PHONE);
    await streams.setViewportSize(DESKTOP);

    const clickPlay = async (selector, label) => {
      const link = streams.locator(selector).first();
      if ((await link.count()) === 0) return { clicked: false };
      const href = await link.getAttribute('href');
      await Promise.all([streams.waitForURL(/player\.html/, { timeout: 10000 }), link.click()]);
      const r = { clicked: true, href, ...(await readPlayer(streams)) };
      log(`${label} from the Streams page: ${JSON.stringify(r)}`);
      r.afterStop = await clickStop(streams);
      await streams.goBack({ waitUntil: 'load', timeout: 10000 });
      await pollUntil(async () => wanted(await listed()), 12000, 250);
      return r;
    };
    out.streamLink = await clickPlay(`#streams li[data-name="${cssEscape(args.name)}"] .play-link`, 'stream');
    if (args.camera) {
      const byName = `#cameras li[data-name="${cssEscape(args.camera)}"] .play-link`;
      const sel = (await streams.locator(byName).count()) > 0 ? byName : `#cameras li[data-uri*="${cssEscape(args.camera)}"] .play-link`;
      out.cameraLink = await clickPlay(sel, 'camera');
    }
    return out;
  },
);

function cssEscape(s) {
  return s.replace(/["\\]/g, '\\$&');
}
