// Streams page: lists the live streams (POST /rest-api/stream/find_all) and the camera pulls
// (POST /rest-api/rtsp/find_all) of this server, with a Play link each to the Player page
// (name filled in, autoplay), refreshed every few seconds. Private streams are marked.

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);

// A server with rest.api_key set wants it for the listings too: taken once from ?apiKey= and
// kept for this tab only, out of the address bar.
const apiKey = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get('apiKey');
  if (given) {
    sessionStorage.setItem('mediarouter.apiKey', given);
    params.delete('apiKey');
    history.replaceState(null, '', `${location.pathname}${params.size ? '?' + params : ''}`);
  }
  return sessionStorage.getItem('mediarouter.apiKey') || '';
})();

for (const el of document.querySelectorAll('.host')) el.textContent = location.hostname || 'localhost';

/**
 * POSTs `{}` to a REST listing of this origin. Resolves with the array ([] on 404: none), or
 * rejects with a readable message.
 * @param {string} path
 * @returns {Promise<object[]>}
 */
async function list(path) {
  const headers = { 'Content-Type': 'application/json' };
  if (apiKey) headers['X-API-Key'] = apiKey;
  const res = await fetch(`/rest-api/${path}`, {
    method: 'POST',
    headers,
    body: '{}',
    cache: 'no-store',
  });
  if (res.status === 401) {
    throw new Error(`${path}: this server's listings need its REST API key (rest.api_key): open streams.html?apiKey=KEY`);
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    body = null;
  }
  if (res.status === 404 && body && !Array.isArray(body)) return [];
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}${body && body.error ? ' ' + body.error : ''}`);
  if (!Array.isArray(body)) throw new Error(`${path}: not a JSON list`);
  return body;
}

/** The Player link that plays `name`. */
function playerHref(name, autoplay = true) {
  const q = new URLSearchParams({ name });
  if (autoplay) q.set('autoplay', '1');
  return `player.html?${q}`;
}

/** What the Player plays for a stream object: a camera URL as it is, else app/name. */
function streamPlayName(s) {
  if (/^rtsps?:\/\//i.test(s.name || '')) return s.name;
  return s.app ? `${s.app}/${s.name}` : s.name;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function badge(status) {
  return el('span', { class: 'badge', dataset: { status: status || '' } }, status || '?');
}

function details(pairs) {
  const dl = el('dl');
  for (const [k, v] of pairs) {
    if (v === null || v === undefined || v === '') continue;
    dl.append(el('dt', {}, k), el('dd', {}, String(v)));
  }
  return dl;
}

function playLink(name, label, needsCredentials) {
  const a = el('a', { class: 'button primary play-link', href: playerHref(name, !needsCredentials) }, label);
  if (needsCredentials) a.title = 'The password is hidden: type it in the Player';
  return a;
}

function streamItem(s) {
  const playName = streamPlayName(s);
  const v = s.video;
  const a = s.audio;
  const p = s.players || {};
  const video = v ? [v.codec, v.width && v.height ? `${v.width}x${v.height}` : null].filter(Boolean).join(' ') : null;
  const audio = a ? [a.codec, a.sample_rate ? `${a.sample_rate / 1000} kHz` : null, a.channels ? `${a.channels} ch` : null].filter(Boolean).join(' ') : null;
  const viewers = p.total !== undefined ? `${p.total} (RTMP ${p.rtmp ?? 0}, WebRTC ${p.webrtc ?? 0}, WS ${p.websocket ?? 0})` : null;
  return el(
    'li',
    { class: 'card item', dataset: { name: s.name, app: s.app || '' } },
    el('div', { class: 'item-head' }, el('span', { class: 'item-name mono' }, s.app ? `${s.app}/${s.name}` : s.name), badge(s.status)),
    details([
      ['Source', s.publisher ? `${s.publisher.protocol} ${s.publisher.address || ''}`.trim() : null],
      ['Video', video],
      ['Audio', audio],
      ['Bitrate', s.bitrate_in_kbps !== undefined ? `${s.bitrate_in_kbps} kbps` : null],
      ['Viewers', viewers],
      ['Access', s.private ? 'private: one viewer only' : null],
    ]),
    el('div', { class: 'actions' }, playLink(playName, 'Play', playName.includes('***'))),
  );
}

function cameraItem(c) {
  // An on-demand pull is named by its URL (password masked); a REST-started one by its name.
  const byUrl = /^rtsps?:\/\//i.test(c.name || '');
  const playName = byUrl ? c.name : c.app ? `${c.app}/${c.name}` : c.name;
  const tracks = (c.tracks || []).map((t) => `${t.media} ${t.codec}${t.supported === false ? ' (unsupported)' : ''}`).join(', ');
  return el(
    'li',
    { class: 'card item', dataset: { uri: c.uri || '', name: c.name || '' } },
    el('div', { class: 'item-head' }, el('span', { class: 'item-name mono' }, byUrl ? c.uri : c.name), badge(c.status)),
    details([
      ['URL', byUrl ? null : c.uri],
      ['Tracks', tracks],
      ['Viewers', c.viewers],
      ['Started', c.on_demand === undefined ? null : c.on_demand ? 'on demand' : 'REST'],
      ['Reconnects', c.reconnects || null],
      ['Last error', c.last_error],
    ]),
    el('div', { class: 'actions' }, playLink(playName, 'Play', playName.includes('***'))),
  );
}

function render(listId, items, make) {
  const ul = $(listId);
  ul.replaceChildren(...items.map(make));
  $(`${listId}-empty`).hidden = items.length > 0;
  $(`${listId}-count`).textContent = items.length ? `(${items.length})` : '';
}

function renderError(listId, message) {
  const ul = $(listId);
  ul.replaceChildren(el('li', { class: 'card error' }, message));
  $(`${listId}-empty`).hidden = true;
  $(`${listId}-count`).textContent = '';
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const [streams, cameras] = await Promise.allSettled([list('stream/find_all'), list('rtsp/find_all')]);
  busy = false;
  if (streams.status === 'fulfilled') render('streams', streams.value, streamItem);
  else renderError('streams', `Cannot list the streams: ${streams.reason.message}`);
  if (cameras.status === 'fulfilled') render('cameras', cameras.value, cameraItem);
  else renderError('cameras', `Cannot list the camera pulls: ${cameras.reason.message}`);
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = '1';
}

let timer = null;
function schedule() {
  clearInterval(timer);
  timer = $('auto').checked ? setInterval(refresh, REFRESH_MS) : null;
}

$('refresh').addEventListener('click', refresh);
$('auto').addEventListener('change', schedule);
refresh();
schedule();
