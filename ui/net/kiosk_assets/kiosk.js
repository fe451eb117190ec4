// The kiosk screen (served at / by genre-serve; ui/net/kiosk.py). Left running for days:
// everything it keeps is bounded (a 10-minute strip of 600 one-second slots, the newest 300
// results), the microphone and the worklet outlive any number of reconnects, and a refusal
// the server means (1008, 4401, 4403) stops the retries and says why.
const params = new URLSearchParams(location.search);
const config = JSON.parse(document.getElementById("kiosk-config").textContent);
const $ = (id) => document.getElementById(id);

const HISTORY_S = 600;           // the strip: the last 10 minutes, one slot a second
const STALE_HOPS = 3;            // no result for this many hops (after the first): "stale"
const BACKOFF_S = [0.5, 30];     // first retry delay, largest delay (doubling, with jitter)
const PROBE_S = [1, 2];          // while the server is down: GET readyz this often (jittered), connect once it answers
const DIM_AFTER_S = 4;           // no readout for this long (and not listening): the headline and strip turn grey
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;  // the server's stream-name rule (ui/net/watch.py)
const PERMANENT = new Set([1008, 4401, 4403]);  // refusals that retrying cannot fix
const MAX_BUFFERED = 1 << 20;    // bytes waiting in the socket: past this, audio is dropped
const ENGINE_PARAMS = ["window", "hop", "smoothing", "top_k"];
const watchName = params.get("watch");
const screenName = watchName ? null : ownName();
// ?compute=device: classify on this device, send no audio (device/device.js)
const device = !watchName && (params.get("compute") ?? config.compute) === "device"
  ? (await import("./device/device.js")).create(params, config) : null;

// What the page is doing, for diagnostics (and the tests); every part of it is bounded.
const k = window.kiosk = {
  state: "starting", detail: "", micRequests: 0, connects: 0, opens: 0, results: 0, summaries: 0,
  refusal: null, summary: null, lastResults: [], framesSent: 0, framesDropped: 0, wakeLock: "none",
  sampleRate: null, micLabel: null, mode: watchName ? "watch" : device ? "device" : "listen", name: screenName,
  probes: 0, rollovers: 0, dimmed: false,
};

let colours = config.colours || {};
let sock = null, session = null;  // the open WebSocket and what it said (ready, when)
let attempt = 0, retryAt = 0, retryTimer = 0, busy = false;
// rollover: until when a --max-session reconnect stays unseen; nameTaken: our own name was refused as in use
let probeTimer = 0, serverDown = false, rollover = 0, nameTaken = false;
let ctx = null, worklet = null, source = null, micStream = null, micProblem = null;
let lastResult = null, lastResultAt = 0, levelDb = null;

// ---- settings from the URL ---------------------------------------------------------------
// An own-microphone screen streams under one name for good (its history stays in one place):
// ?name= sets it, else the one made on the first visit, both kept in localStorage.
function ownName() {
  let name = params.get("name");
  if (name) {
    if (NAME_RE.test(name)) localStorage.setItem("kiosk.name", name);
    return name;  // an invalid one is refused by the server, which says what a name may be
  }
  name = localStorage.getItem("kiosk.name");
  if (!name || !NAME_RE.test(name)) {
    const hex = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
    name = `screen-${hex}`;
    localStorage.setItem("kiosk.name", name);
  }
  return name;
}

function query(extra) {
  const q = new URLSearchParams(extra);
  for (const name of ENGINE_PARAMS) if (params.has(name) && !watchName) q.set(name, params.get(name));
  if (screenName) q.set("name", screenName);
  if (params.has("token")) q.set("token", params.get("token"));
  return q;
}

function socketUrl(path, q) {
  const url = new URL(path, location.href);  // relative: works behind a proxy's path prefix
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = q.toString();
  return url.toString();
}

// ---- the connection ---------------------------------------------------------------------
function connect() {
  clearTimeout(retryTimer);
  clearTimeout(probeTimer);
  retryAt = 0;
  serverDown = false;
  const url = watchName
    ? socketUrl("v1/watch", query({ name: watchName }))
    : socketUrl("v1/listen", query({ sample_rate: ctx.sampleRate, channels: 1, format: "s16le" }));
  k.connects++;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  sock = ws;
  session = { ready: null, watching: null, opened: performance.now(), error: null };
  ws.onopen = () => { k.opens++; render(); };
  ws.onmessage = (e) => { if (ws === sock) onEvent(JSON.parse(e.data)); };
  ws.onclose = (e) => { if (ws === sock) onClose(e); };
  render();
}

function onClose(e) {
  const said = session && session.error;  // the error event a refusal sends before closing
  sock = null;
  session = null;
  // this screen's own name still held by its previous connection (the server has not seen it
  // drop yet) or by another tab: worth retrying, unlike the other refusals
  nameTaken = !watchName && e.code === 1008 && (e.reason || "").startsWith("name_in_use:");
  if (PERMANENT.has(e.code) && !nameTaken) {
    k.refusal = { code: e.code, reason: e.reason || (said && said.message) || "" };
    return render();
  }
  if (performance.now() < rollover && e.code === 1000) {  // --max-session: the next session at once, unseen
    k.rollovers++;
    attempt = 0;
    return connect();
  }
  rollover = 0;
  busy = e.code === 1013;
  // jitter: screens that lost the same server do not all come back in the same instant
  const delay = Math.min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** attempt * (0.75 + 0.5 * Math.random()));
  attempt++;
  retryAt = performance.now() + delay * 1000;
  retryTimer = setTimeout(() => { if (!serverDown) connect(); }, delay * 1000);  // down: the probe connects
  if (!busy && !nameTaken) probe();
  render();
}

// While the connection is lost, a cheap GET readyz every 1-2 s: a server seen down (no answer,
// or 503 while it drains or warms up) is reconnected to as soon as it says ready, however long
// the back-off grew meanwhile. Any other answer (a proxy without the route) leaves the back-off in charge.
function probe() {
  clearTimeout(probeTimer);
  const wait = PROBE_S[0] + (PROBE_S[1] - PROBE_S[0]) * Math.random();
  probeTimer = setTimeout(async () => {
    if (!retryAt || sock) return;
    k.probes++;
    let status = 0;
    try {
      // (a bounded wait: a hung server must not stop the probing)
      const answer = await fetch(new URL("readyz", location.href),
                                 { cache: "no-store", signal: AbortSignal.timeout(5000) });
      status = answer.status;
    } catch (e) { /* no answer: down */ }
    if (!retryAt || sock) return;
    if (status === 200 && serverDown) return connect();
    serverDown = status === 0 || status === 503;
    if (serverDown) retryAt = Math.max(retryAt, performance.now() + 1000);  // never "reconnecting in 0 s"
    probe();
    render();
  }, wait * 1000);
}

function onEvent(msg) {
  switch (msg.event) {
    case "watching":
      session.watching = msg;
      attempt = 0;
      break;
    case "ready":
      session.ready = msg;
      session.readyAt = performance.now();
      k.readyAt = Date.now();  // (wall clock: diagnostics compare it with the server's readiness)
      if (msg.colours) colours = msg.colours;
      $("model").textContent = `model ${msg.model} · window ${msg.window_s} s · hop ${msg.hop_s} s`;
      attempt = 0;
      busy = false;
      if (watchName) { $("summary").hidden = true; k.summary = null; }
      break;
    case "result":
      showResult(msg);
      break;
    case "summary":
      k.summaries++;
      k.summary = msg;
      if (session) session.ready = null;  // a watched source ended; a new one sends ready
      if (watchName) showSummary(msg);  // an own-mic screen goes on listening: no "last source" line
      else if (msg.reason === "max_session") rollover = performance.now() + 10000;
      break;
    case "error":
      session.error = msg;
      if (!msg.reason) k.detail = msg.message;
      break;
  }
  render();
}

// ---- what the screen shows -----------------------------------------------------------------
const NO_MUSIC_GREY = "#8a8f98";  // "no music" (a voice, a crowd, a fan): no genre's colour

function colourOf(genre) {
  return colours[genre] || config.silence;
}

function showResult(r) {
  k.results++;
  lastResult = r;
  lastResultAt = performance.now();
  if (watchName && typeof r.level_dbfs === "number") levelDb = r.level_dbfs;
  const lead = r.genre ?? r.label;
  k.lastResults.push({ time_s: r.time_s, genre: lead, label: r.label, silent: r.silent, level: r.level_dbfs,
                      no_music: !!r.no_music, at: Date.now() });
  if (k.lastResults.length > 300) k.lastResults.shift();
  // without music the strip shows a gap (null: the slot stays dark)
  stripMark(r.silent ? config.silence : r.no_music ? null : colourOf(lead), session && session.ready ? session.ready.hop_s : 1);
  draw(r);
}

function draw(r) {
  const genre = $("genre");
  const scores = r.genre_scores && Object.keys(r.genre_scores).length ? r.genre_scores : r.scores;
  const none = !r.silent && !!r.no_music;
  const lead = r.silent || none ? null : (r.genre ?? r.label);
  genre.textContent = lead ?? (none ? "no music" : "quiet");
  genre.dataset.genre = lead ?? "";
  genre.dataset.noMusic = none ? "1" : "";
  genre.dataset.resultS = r.time_s;
  genre.style.color = lead ? colourOf(lead) : none ? NO_MUSIC_GREY : config.silence;
  fit(genre);
  const score = lead ? (scores[lead] ?? 0) : 0;
  const style = lead && r.label && r.label !== lead ? ` · style: ${r.label}` : "";
  // the calibrated confidence (sure / likely / unsure, a close runner-up) where the server has
  // one, else the raw score as before
  const sure = typeof r.confidence === "number" && r.certainty
    ? `${r.certainty}${r.alternative ? ` (or ${r.alternative})` : ""}` : null;
  $("style").textContent = lead ? `${sure ?? `${Math.round(100 * score)} %`}${style}`
    : none && r.talk ? "someone is talking" : "\u00a0";
  const shown = sure ? r.confidence : score;
  $("bar").dataset.confidence = sure ? r.confidence.toFixed(3) : "";
  const fill = $("bar-fill");
  fill.style.width = `${Math.round(100 * Math.max(0, Math.min(1, shown)))}%`;
  fill.style.background = lead ? colourOf(lead) : config.silence;
  $("bar").dataset.score = score.toFixed(3);
  const rest = lead ? Object.entries(scores).filter(([g]) => g !== lead).sort((a, b) => b[1] - a[1]).slice(0, 2) : [];
  $("next").querySelectorAll("li").forEach((li, i) => {
    const [g, v] = rest[i] || ["", 0];
    li.textContent = g ? `${g} ${Math.round(100 * v)} %` : "";
    li.style.color = g ? colourOf(g) : "";
    li.dataset.genre = g;
  });
}

// The headline in the largest size that fits its box (long names on a portrait tablet).
function fit(el) {
  el.style.fontSize = "";
  const base = parseFloat(getComputedStyle(el).fontSize);
  if (el.scrollWidth > el.clientWidth) el.style.fontSize = `${Math.floor(base * el.clientWidth / el.scrollWidth * 0.97)}px`;
}

function showSummary(s) {
  const el = $("summary");
  const shares = Object.entries(s.genre_shares || s.shares || {}).slice(0, 3)
    .map(([g, v]) => `${g} ${Math.round(100 * v)} %`).join(", ");
  const minutes = (s.duration_s || 0) >= 120 ? `${Math.round(s.duration_s / 60)} min` : `${Math.round(s.duration_s || 0)} s`;
  el.textContent = `Last source: ${minutes} · ${shares || "no readout"}`;
  el.dataset.dominant = s.dominant_genre || s.dominant || "";
  el.hidden = false;
}

// The strip: one slot per wall-clock second, so time without results stays dark. A result
// colours the seconds since the previous one, up to the stale limit (a busy server may answer
// every other hop; longer gaps are real and stay dark).
const slots = new Array(HISTORY_S).fill(null);  // [second, colour]
let lastSlot = 0;
function stripMark(colour, hop) {
  const now = Math.floor(Date.now() / 1000);
  const from = Math.max(lastSlot + 1, now - Math.ceil(STALE_HOPS * Math.max(hop, 1)) + 1);
  for (let s = from; s <= now; s++) slots[s % HISTORY_S] = [s, colour];
  lastSlot = now;
}

function drawStrip() {
  const canvas = $("strip"), g = canvas.getContext("2d");
  const now = Math.floor(Date.now() / 1000);
  g.fillStyle = "#222";
  g.fillRect(0, 0, HISTORY_S, 1);
  for (let i = 0; i < HISTORY_S; i++) {
    const s = now - HISTORY_S + 1 + i, slot = slots[s % HISTORY_S];
    if (slot && slot[0] === s && slot[1]) { g.fillStyle = slot[1]; g.fillRect(i, 0, 1, 1); }
  }
}

// ---- the state line ---------------------------------------------------------------------
const MIC_HELP = {
  NotAllowedError: "the browser refused it. Allow the microphone for this page (the lock or microphone icon in " +
    "the address bar: Microphone, Allow), then reload. A kiosk browser can allow it by policy (README, Kiosk).",
  SecurityError: "the browser offers a microphone only to pages opened over HTTPS or from localhost.",
  NotFoundError: "none was found. Connect one (or enable it in the system's sound settings), then reload.",
  OverconstrainedError: "the chosen microphone (?mic=) is not there. Pick another below, or connect it.",
  NotReadableError: "it could not be opened: another program may be using it. Close that program, then reload.",
};

function stateNow() {
  if (k.refusal) {
    const { code, reason } = k.refusal;
    const why = reason.startsWith("token:") ? "the server needs a valid token: check ?token= in this page's address"
      : reason.startsWith("origin:") ? "this page's origin is not allowed: start the server with --allow-origin"
      : reason || `close code ${code}`;
    return ["refused", `refused (${why})`];
  }
  if (micProblem) return ["no-microphone", `no microphone: ${MIC_HELP[micProblem] || micProblem}`];
  if (ctx && ctx.state !== "running") return ["paused", "paused: click or press a key to start listening"];
  if (device) return device.state();
  if (retryAt) {
    if (serverDown) return ["reconnecting", "connection lost: waiting for the server"];
    const left = Math.max(1, Math.ceil((retryAt - performance.now()) / 1000));
    const why = busy ? "server busy"
      : nameTaken ? `the name “${screenName}” is in use (another tab?)` : "connection lost";
    return ["reconnecting", `${why}: reconnecting in ${left} s`];
  }
  const ready = session && sock.readyState === WebSocket.OPEN ? session.ready : null;
  // a --max-session rollover: the screen reads on as before until the new session's readouts are late
  const rolling = performance.now() < rollover;
  if (rolling && (!ready || lastResultAt < session.readyAt)) return ["listening", "listening"];
  if (!sock || sock.readyState !== WebSocket.OPEN) return ["connecting", "connecting"];
  if (watchName && !ready) {
    const ended = k.summary ? "the source ended; " : "";
    return ["waiting", `${ended}waiting for a source named “${watchName}”`];
  }
  if (!ready) return ["connecting", "connecting"];
  const since = (performance.now() - Math.max(session.readyAt, lastResultAt)) / 1000;
  const first = lastResultAt < session.readyAt ? (ready.min_window_s ?? ready.window_s) : 0;
  if (since > first + STALE_HOPS * ready.hop_s) return ["stale", `stale: no result for ${Math.round(since)} s`];
  if (lastResult && lastResultAt >= session.readyAt && lastResult.silent) return ["quiet", "quiet"];
  return ["listening", watchName ? `showing “${watchName}”` : "listening"];
}

function render() {
  const [state, text] = stateNow();
  k.state = state;
  document.body.dataset.state = state;
  const el = $("state");
  if (el.textContent !== text) el.textContent = text;
  $("start").hidden = state !== "paused";
  // a headline that is not being renewed must not look live from across the room
  const age = lastResultAt ? (performance.now() - lastResultAt) / 1000 : 0;
  const dim = !!lastResult && state !== "listening" && state !== "quiet" && age > DIM_AFTER_S;
  if (dim !== k.dimmed) { k.dimmed = dim; document.body.classList.toggle("dim", dim); }
  const ageText = dim ? `last readout ${ago(age)} ago` : "";
  if ($("age").textContent !== ageText) $("age").textContent = ageText;
}

function ago(s) {
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

function tick() {
  render();
  drawStrip();
  const db = levelDb;
  $("meter-fill").style.width = db == null ? "0%" : `${Math.max(0, Math.min(100, (db + 60) / 60 * 100))}%`;
  $("level").textContent = db == null ? "level" : `${db.toFixed(0)} dBFS`;
}

// ---- the microphone ---------------------------------------------------------------------
const AUDIO = { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 };
let frame = null, frameN = 0, peakDb = -120, levelAt = 0;

async function openMic(deviceId) {
  k.micRequests++;
  const audio = deviceId ? { ...AUDIO, deviceId: { exact: deviceId } } : AUDIO;
  return navigator.mediaDevices.getUserMedia({ audio });
}

async function startMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    micProblem = "SecurityError";
    return render();
  }
  let stream;
  try {
    stream = await openMic(null);
    const wanted = (params.get("mic") ?? localStorage.getItem("kiosk.mic") ?? "").toLowerCase();
    const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
    const match = wanted && inputs.find((d) => d.label.toLowerCase().includes(wanted));
    if (match && match.deviceId !== stream.getAudioTracks()[0].getSettings().deviceId) {
      stream.getTracks().forEach((t) => t.stop());
      stream = await openMic(match.deviceId);
    }
  } catch (e) {
    micProblem = e.name || String(e);
    return render();
  }
  micProblem = null;
  ctx = new AudioContext();
  k.sampleRate = ctx.sampleRate;
  await ctx.audioWorklet.addModule(new URL("kiosk/capture.js", location.href));
  worklet = new AudioWorkletNode(ctx, "capture", { numberOfInputs: 1, numberOfOutputs: 1 });
  worklet.port.onmessage = (e) => onBlock(e.data);
  const mute = ctx.createGain();
  mute.gain.value = 0;  // the node must reach the destination to be pulled; nothing is heard
  worklet.connect(mute).connect(ctx.destination);
  frame = new Int16Array(Math.round(ctx.sampleRate / 10));
  useStream(stream);
  ctx.onstatechange = render;
  const resume = () => ctx.state !== "running" && ctx.resume();
  for (const ev of ["click", "keydown", "touchend"]) document.addEventListener(ev, resume);
  if (ctx.state !== "running") ctx.resume().catch(() => {});  // allowed by autoplay policy, or waits for a click
  await listMics();
  navigator.mediaDevices.addEventListener("devicechange", listMics);
  if (device) device.start(k, showResult, render);
  else connect();
}

function useStream(stream) {
  if (source) source.disconnect();
  if (micStream) micStream.getTracks().forEach((t) => t.stop());
  micStream = stream;
  const track = stream.getAudioTracks()[0];
  k.micLabel = track.label;
  k.micSettings = track.getSettings();
  track.onended = () => { micProblem = "NotReadableError"; render(); setTimeout(reopenMic, 3000); };
  source = ctx.createMediaStreamSource(stream);
  source.connect(worklet);
}

async function reopenMic(deviceId) {  // the microphone went away, or another one was picked
  try {
    useStream(await openMic(deviceId || null));
    micProblem = null;
  } catch (e) {
    micProblem = e.name || String(e);
    setTimeout(reopenMic, 10000);
  }
  render();
  listMics();
}

async function listMics() {
  const select = $("mic");
  const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  const current = micStream && micStream.getAudioTracks()[0].getSettings().deviceId;
  select.replaceChildren(...inputs.map((d, i) => new Option(d.label || `microphone ${i + 1}`, d.deviceId, false,
                                                            d.deviceId === current)));
  select.hidden = inputs.length < 2;
}

$("mic").addEventListener("change", (e) => {
  const option = e.target.selectedOptions[0];
  localStorage.setItem("kiosk.mic", option.text);  // remembered by label: device ids change
  reopenMic(option.value);
});

function onBlock(block) {
  let sum = 0;
  for (let i = 0; i < block.length; i++) sum += block[i] * block[i];
  peakDb = Math.max(peakDb, 10 * Math.log10(sum / block.length + 1e-12));
  if (performance.now() - levelAt > 100) { levelDb = peakDb; peakDb = -120; levelAt = performance.now(); }
  if (device) return device.feed(block, ctx.sampleRate);
  for (let i = 0; i < block.length; i++) {
    frame[frameN++] = Math.max(-32768, Math.min(32767, Math.round(block[i] * 32767)));
    if (frameN === frame.length) { sendFrame(); frameN = 0; }
  }
}

function sendFrame() {
  if (sock && sock.readyState === WebSocket.OPEN && session.ready && sock.bufferedAmount < MAX_BUFFERED) {
    sock.send(frame);  // copied by send: the buffer is reused for the next frame
    k.framesSent++;
  } else {
    k.framesDropped++;  // not connected: the audio of that moment is not kept
  }
}

// ---- unattended -------------------------------------------------------------------------
let wakeLock = null;
async function keepAwake() {
  if (!("wakeLock" in navigator)) { k.wakeLock = "unsupported"; return; }
  if (document.visibilityState !== "visible" || wakeLock) return;
  try {
    wakeLock = await navigator.wakeLock.request("screen");
    k.wakeLock = "held";
    wakeLock.addEventListener("release", () => { wakeLock = null; k.wakeLock = "released"; });
  } catch (e) {
    k.wakeLock = `refused: ${e.name}`;
  }
}
document.addEventListener("visibilitychange", keepAwake);  // a hidden page loses the lock

const fsButton = $("fullscreen");
fsButton.hidden = !document.fullscreenEnabled;
fsButton.addEventListener("click", () => document.documentElement.requestFullscreen().catch(() => {}));
document.addEventListener("fullscreenchange", () => { fsButton.hidden = !!document.fullscreenElement; });
window.addEventListener("resize", () => { if (lastResult) fit($("genre")); });
$("start-button").addEventListener("click", () => ctx && ctx.resume());

k.render = draw;  // draws a result record as the screen would (diagnostics: layout checks)
if (screenName) $("name").textContent = screenName;
keepAwake();
setInterval(tick, 250);
tick();
if (watchName) {
  $("level").textContent = "level";
  connect();
} else {
  startMic().catch((e) => { micProblem = e.name || String(e); render(); });
}
