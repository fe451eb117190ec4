// Device mode of the kiosk page (/?compute=device): the screen classifies its microphone itself.
// kiosk.js captures as always and hands each block here instead of sending it to the server; the
// engine (engine.js, the stream/ engine in JavaScript) cuts windows, the Worker (worker.js) runs
// the ONNX graphs, and the readouts are drawn by kiosk.js as if a server had sent them. Audio
// never leaves the page; with ?report=1 (or the server's default) only readouts (JSON) are posted
// back, so /v1/watch screens and the history see this screen too.
import { DeviceEngine, mergeLogits } from "./engine.js";

const SLOW_RATIO = 0.8;   // the model's time per hop above this share of the hop: not keeping up
const SLOW_WINDOWS = 5;   // judged over this many windows
const HOP_FALLBACK_S = 2; // first step down: a 2 s hop; then one network
const STALE_HOPS = 3;     // no readout for this many hops after the first (and the model's time): "stale"

// The Worker and the graphs: one per page, shared by every engine on it.
export class DeviceModel {
  constructor(base) {
    this.base = base;
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.calls = new Map();
    this.next = 0;
    this.ready = new Promise((resolve, reject) => {
      this.worker.onmessage = (e) => {
        const msg = e.data;
        if (msg.type === "loaded") {
          Object.assign(this, { manifest: msg.manifest, threads: msg.threads, loadMs: msg.ms, loadSteps: msg.steps });
          resolve(this);
        }
        else if (msg.id != null && this.calls.has(msg.id)) {
          const { ok, fail } = this.calls.get(msg.id);
          this.calls.delete(msg.id);
          msg.type === "error" ? fail(new Error(msg.message)) : ok(msg);
        } else if (msg.type === "error") reject(new Error(msg.message));
      };
      this.worker.onerror = (e) => reject(new Error(e.message || "the model worker failed to start"));
    });
    this.worker.postMessage({ type: "load", base: new URL(base, location.href).href });
  }

  // Merged probabilities for each patch, from the networks named in `nets`.
  async run(patches, nets) {
    const id = this.next++;
    const msg = await new Promise((ok, fail) => {
      this.calls.set(id, { ok, fail });
      this.worker.postMessage({ type: "run", id, patches, nets });
    });
    this.lastMs = msg.ms;
    return patches.map((_, i) => {
      const probs = mergeLogits(this.manifest, Object.fromEntries(Object.entries(msg.logits).map(([n, rows]) => [n, rows[i]])), nets);
      if (msg.music) probs.music = msg.music[i];  // the presence head's P(music) of this patch
      return probs;
    });
  }

  engine(settings) {
    return new DeviceEngine(this.manifest, (patches, nets) => this.run(patches, nets), settings);
  }
}

// Settings from the page's address, as the server's /v1/listen takes them.
function urlSettings(params) {
  const s = {};
  for (const [q, key] of [["window", "window_s"], ["hop", "hop_s"], ["smoothing", "smoothing_s"], ["top_k", "top_k"]]) {
    const v = params.get(q);
    if (v != null && v !== "" && Number.isFinite(Number(v))) s[key] = Number(v);
  }
  return s;
}

// The screen's side: start(k, show, render) once the microphone runs, then feed(block, rate).
export function create(params, config) {
  const base = config.device_base || "kiosk/device/model/";
  const d = {
    model: null, engine: null, problem: null, fallback: null, started: 0, firstResultMs: null,
    loading: true, reportUrl: null, posted: 0, postFailed: 0,
    // when each step happened (ms since the page's navigation began): bench/kiosk.py --device --first
    timeline: { created: performance.now() },
  };
  // the model loads while the page asks for the microphone
  const loading = new DeviceModel(base).ready;
  loading.then((m) => {  // (a failure is handled in start)
    // the worker's own steps, from its start: model.json, then the three sessions (the runtime compiled)
    Object.assign(d.timeline, { loaded: performance.now(), workerManifest: m.loadSteps.manifestMs,
                                workerSessions: m.loadMs });
  }, () => {});
  // the microphone's audio until the model is there: the stream starts when the microphone does (as a
  // server's stream starts with its first frame), so the first readout waits for whichever comes last,
  // the model or the first 3 s of audio, not for both in a row. Bounded: one window of audio.
  let early = [], earlyN = 0;

  d.start = async (k, show, render) => {
    d.started = performance.now();
    k.device = d;
    try {
      d.model = await loading;
    } catch (e) {
      d.problem = `the model could not be loaded (${e.message})`;
      d.loading = false;
      return render();
    }
    d.loading = false;
    d.engine = d.model.engine(urlSettings(params));
    d.timeline.engine = performance.now();
    // readouts (never audio) go back under the screen's name where the server asks for them
    // (--kiosk-compute device) or the address does (?report=1)
    const report = params.get("report") ?? (config.device_report ? "1" : "0");
    if (report === "1") d.reportUrl = reportUrl(params, k.name);
    d.engine.onResult = (r) => {
      d.lastAt = performance.now();
      if (d.firstResultMs == null) { d.firstResultMs = d.lastAt - d.started; d.timeline.firstResult = d.lastAt; }
      if (params.get("adapt") !== "0") keepUp(d);  // ?adapt=0: keep hop and networks whatever it costs
      show(r);
      if (d.reportUrl) post(d, r);
    };
    if (params.get("nets") === "1") d.engine.useNets(d.model.manifest.nets.slice(0, 1).map((e) => e.name));
    const m = d.model.manifest;
    document.getElementById("model").textContent =
      `on this device · model ${m.model} · window ${d.engine.c.window_s} s · hop ${d.engine.c.hop_s} s`;
    for (const [block, rate] of early) d.engine.feed(block, rate);  // what the microphone heard meanwhile
    early = null;
    render();
  };

  d.feed = (block, rate) => {
    if (d.timeline.mic == null) d.timeline.mic = performance.now();
    if (d.engine) {
      if (!d.paused) d.engine.feed(block, rate);
    } else if (early && !d.problem) {
      early.push([Float32Array.from(block), rate]);
      earlyN += block.length;
      while (earlyN > 12 * rate && early.length > 1) earlyN -= early.shift()[0].length;
    }
  };

  d.state = () => {
    if (d.problem) return ["error", `device mode: ${d.problem}`];
    if (d.loading) return ["connecting", "loading the model on this device"];
    const e = d.engine, last = e.latest;
    const note = d.fallback ? ` (this device is slow: ${d.fallback})` : "";
    if (e.stats.lastError) return ["error", `device mode: the model failed (${e.stats.lastError})`];
    if (!last) return ["listening", `listening on this device${note}`];
    const since = (performance.now() - d.lastAt) / 1000, allowed = STALE_HOPS * e.c.hop_s + (e.stats.inferMs.at(-1) ?? 0) / 1000;
    if (since > allowed) return ["stale", `stale: no result for ${Math.round(since)} s`];
    if (last.silent) return ["quiet", `quiet${note}`];
    return ["listening", `listening on this device${note}`];
  };

  // A check for tests and diagnostics: PCM (float32 at `rate`) through a fresh engine in chunks of
  // one hop, waiting for each window's readout, as the Python engine does with background=False.
  // (d.paused = true keeps the microphone's engine from sharing the Worker meanwhile.)
  d.replay = async (pcm, rate = 16000, settings = {}) => {
    const e = d.model.engine({ ...urlSettings(params), ...settings });
    const out = [], step = Math.round(e.c.hop_s * rate);
    e.onResult = (r) => out.push(r);
    for (let i = 0; i < pcm.length; i += step) {
      e.feed(pcm.subarray(i, Math.min(pcm.length, i + step)), rate);
      await e.idle();
    }
    return out;
  };
  return d;
}

// Slow devices: when the model takes most of a hop, windows pile up (the engine skips them). Step
// down once to a 2 s hop, then to one network, and say so on screen.
function keepUp(d) {
  const e = d.engine, ms = e.stats.inferMs;
  if (ms.length < SLOW_WINDOWS) return;
  const recent = ms.slice(-SLOW_WINDOWS).sort((a, b) => a - b)[Math.floor(SLOW_WINDOWS / 2)];
  if (recent < SLOW_RATIO * e.c.hop_s * 1000) return;
  if (e.c.hop_s < HOP_FALLBACK_S) {
    e.setHop(HOP_FALLBACK_S);
    d.fallback = `${HOP_FALLBACK_S} s hop`;
  } else if (e.nets.length > 1) {
    e.useNets(e.nets.slice(0, 1));
    d.fallback = `${HOP_FALLBACK_S} s hop, one network`;
  } else {
    return;
  }
  e.stats.inferMs.length = 0;  // judge the new setting on its own windows
}

function reportUrl(params, name) {
  const url = new URL("v1/device/readouts", location.href);
  const q = new URLSearchParams();
  if (params.has("token")) q.set("token", params.get("token"));
  q.set("name", name || params.get("name") || "device");
  url.search = q.toString();
  return url.toString();
}

async function post(d, r) {  // readouts only, never audio; a failure is counted, never retried
  try {
    const res = await fetch(d.reportUrl, { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(r), keepalive: true });
    if (res.ok) d.posted++;
    else d.postFailed++;
  } catch (e) {
    d.postFailed++;
  }
}
