// The kiosk's model Worker (device mode): the log-mel front end and the MusiCNN networks as ONNX
// graphs under onnxruntime-web (WebAssembly, vendored beside this file: no CDN). The page's
// thread only captures and keeps the engine's state; a forward (~100 ms per network and patch)
// never blocks it.
//
// Messages in:  {type: "load", base}                   base: URL of the folder with model.json
//               {type: "run", id, patches, nets}        patches: Float32Array[] of 47616 samples
// Messages out: {type: "loaded", manifest, threads, ms} | {type: "result", id, logits: {net: Float32Array[]}, ms}
//               | {type: "error", id, message}
import * as ort from "./ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
// WebAssembly threads need a cross-origin isolated page (COOP/COEP headers); else one thread.
const THREADS = self.crossOriginIsolated ? Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1)) : 1;
ort.env.wasm.numThreads = THREADS;

let manifest = null, frontend = null;
const nets = {};

async function session(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return ort.InferenceSession.create(new Uint8Array(await r.arrayBuffer()),
                                     { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
}

async function load(base) {
  const t0 = performance.now();
  const r = await fetch(new URL("model.json", base));
  if (!r.ok) throw new Error(`model.json: HTTP ${r.status}`);
  manifest = await r.json();
  const manifestMs = performance.now() - t0;
  const [fe, ...loaded] = await Promise.all([session(new URL(manifest.frontend, base)),
                                             ...manifest.nets.map((e) => session(new URL(e.file, base)))]);
  frontend = fe;
  manifest.nets.forEach((e, i) => { nets[e.name] = loaded[i]; });
  // (no warm-up forward of silence: measured, it delayed the first readout more than it sped up the
  // first forward; bench/README.md "Kiosk screen on the device")
  return { manifest, threads: THREADS, ms: performance.now() - t0, steps: { manifestMs } };
}

async function run(patches, which) {
  const n = manifest.patch_samples, k = patches.length, t0 = performance.now();
  const audio = new Float32Array(k * n);
  patches.forEach((p, i) => audio.set(p, i * n));
  const { logmel } = await frontend.run({ audio: new ort.Tensor("float32", audio, [k, n]) });
  const logits = {};
  const head = manifest.presence, first = manifest.nets[0].name;
  for (const name of head && !which.includes(first) ? [first, ...which] : which) {
    const { y } = await nets[name].run({ x: logmel });
    const per = y.dims[1];
    logits[name] = Array.from({ length: k }, (_, i) => y.data.slice(i * per, (i + 1) * per));
  }
  const music = head ? logits[first].map((z, i) => musicProbability(head, logmel, i, z)) : null;
  return { logits, music, ms: performance.now() - t0 };
}

// stream/presence_head.py: the log-mel's mean and standard deviation over time per band and the first
// network's logits, standardised, into a logistic regression: P(music) of patch i.
function musicProbability(head, logmel, i, logits) {
  const [, frames, bands] = logmel.dims, x = logmel.data, off = i * frames * bands;
  const { mean, scale, weights } = head;
  let z = head.bias;
  for (let b = 0; b < bands; b++) {
    let s = 0, ss = 0;
    for (let f = 0; f < frames; f++) { const v = x[off + f * bands + b]; s += v; ss += v * v; }
    const mu = s / frames, sd = Math.sqrt(Math.max(ss / frames - mu * mu, 0));
    z += (mu - mean[b]) / scale[b] * weights[b] + (sd - mean[bands + b]) / scale[bands + b] * weights[bands + b];
  }
  for (let j = 0; j < logits.length; j++) z += (logits[j] - mean[2 * bands + j]) / scale[2 * bands + j] * weights[2 * bands + j];
  return 1 / (1 + Math.exp(-z));
}

let queue = Promise.resolve();  // one call at a time: two screens' engines share one worker
self.onmessage = (e) => { queue = queue.then(() => handle(e.data)); };

async function handle(msg) {
  try {
    if (msg.type === "load") self.postMessage({ type: "loaded", ...(await load(msg.base)) });
    else if (msg.type === "run") self.postMessage({ type: "result", id: msg.id, ...(await run(msg.patches, msg.nets)) });
  } catch (err) {
    self.postMessage({ type: "error", id: msg.id, message: String(err && err.message || err) });
  }
}
