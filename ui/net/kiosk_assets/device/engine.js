// The streaming engine of stream/ in JavaScript, for a kiosk screen that classifies on the device.
// It mirrors, step for step, what a server-side StreamEngine does for the bundled MusiCNN model:
// resampling to 16 kHz (resample.py: here a windowed-sinc filter of our own, not libsoxr), the ring
// buffer (buffer.py), hop boundaries and windows, the silence gate, patch reuse (one new 3 s patch
// per hop, averaged with the window's earlier grid patches), change re-anchoring, the two EMA
// smoothers with hysteresis (smoothing.py) and the genre level (genres.py). The numbers it needs
// (labels, visible labels, genres, settings) come from model.json, written by the server from its
// own engine (ui/net/device_model.py), and tests/test_kiosk_device.py holds the two together.
// The model itself runs elsewhere (a Worker): `runner(patches, k)` returns merged probabilities.

// ---- resampling ----------------------------------------------------------------------------
function gcd(a, b) { while (b) [a, b] = [b, a % b]; return a; }

function besselI0(x) {  // the Kaiser window's zeroth-order modified Bessel function
  let sum = 1, term = 1;
  for (let k = 1; k < 40; k++) { term *= (x / (2 * k)) ** 2; sum += term; if (term < 1e-12 * sum) break; }
  return sum;
}

// Streaming band-limited resampler: a Kaiser-windowed sinc (cut-off at 95 % of the lower Nyquist
// frequency, 16 zero crossings each side) tabulated for every phase of the rational ratio.
// Output does not depend on how the input is cut; it keeps back ~1 ms (16 output samples from 48 kHz),
// where libsoxr in the Python engine keeps back 6-40 ms, varying with its blocks (so at 48 kHz the
// two engines' windows end a few ms apart, and scores differ by a few hundredths at most).
export class Resampler {
  constructor(inRate, outRate, zeros = 16, beta = 8.6) {
    this.inRate = inRate; this.outRate = outRate;
    const g = gcd(inRate, outRate);
    this.a = inRate / g; this.b = outRate / g;  // output k sits at input position k * a / b
    if (this.b > 4096) throw new Error(`resampling ${inRate} -> ${outRate} Hz needs too many phases`);
    const fc = 0.5 * Math.min(1, outRate / inRate) * 0.95;  // cycles per input sample
    const w = zeros / (2 * fc);  // half-width in input samples
    this.J = Math.ceil(w);
    const taps = 2 * this.J;
    this.table = new Float32Array(this.b * taps);
    for (let ph = 0; ph < this.b; ph++) {
      let sum = 0;
      for (let i = 0; i < taps; i++) {
        const t = i - this.J + 1 - ph / this.b;
        const r = t / w;
        const v = Math.abs(r) >= 1 ? 0
          : (t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t)) * besselI0(beta * Math.sqrt(1 - r * r)) / besselI0(beta);
        this.table[ph * taps + i] = v;
        sum += v;
      }
      for (let i = 0; i < taps; i++) this.table[ph * taps + i] /= sum;  // unit gain at DC
    }
    this.reset();
  }

  reset() {
    this.bufStart = -this.J;  // absolute index of buf[0]; the stream starts after J zeros
    this.buf = new Float32Array(this.J);
    this.k = 0;  // next output sample computed
    this.inTotal = 0;  // input samples seen
    this.released = 0;  // output samples handed out
  }

  delay() {  // output samples held back now (what the newest input would have given)
    return Math.max(0, Math.floor(this.inTotal * this.b / this.a) - this.released);
  }

  process(x) {
    if (this.a === this.b) return Float32Array.from(x);
    this.inTotal += x.length;
    const joined = new Float32Array(this.buf.length + x.length);
    joined.set(this.buf); joined.set(x, this.buf.length);
    const end = this.bufStart + joined.length;  // absolute index after the newest input sample
    const taps = 2 * this.J, out = [];
    for (;;) {
      const pos = this.k * this.a, n0 = Math.floor(pos / this.b), ph = pos - n0 * this.b;
      if (n0 + this.J > end - 1) break;  // needs input up to n0 + J
      const base = n0 - this.J + 1 - this.bufStart, row = ph * taps;
      let acc = 0;
      for (let i = 0; i < taps; i++) acc += joined[base + i] * this.table[row + i];
      out.push(acc);
      this.k++;
    }
    this.released = this.k;
    const keep = Math.floor(this.k * this.a / this.b) - this.J + 1;  // first input the next output needs
    const drop = Math.max(0, Math.min(joined.length, keep - this.bufStart));
    this.buf = joined.slice(drop);
    this.bufStart += drop;
    return Float32Array.from(out);
  }
}

// ---- ring buffer ---------------------------------------------------------------------------
export class RingBuffer {  // buffer.py: every sample stored twice, so the newest n are one view
  constructor(capacity) { this.capacity = capacity; this.data = new Float32Array(2 * capacity); this.clear(); }
  clear() { this.pos = 0; this.total = 0; }
  get length() { return Math.min(this.total, this.capacity); }
  write(x) {
    const cap = this.capacity;
    this.total += x.length;
    if (x.length >= cap) {
      const tail = x.subarray(x.length - cap);
      this.data.set(tail, 0); this.data.set(tail, cap); this.pos = 0;
      return;
    }
    const first = Math.min(x.length, cap - this.pos);
    this.data.set(x.subarray(0, first), this.pos);
    this.data.set(x.subarray(0, first), this.pos + cap);
    const rest = x.length - first;
    if (rest) { this.data.set(x.subarray(first), 0); this.data.set(x.subarray(first), cap); }
    this.pos = (this.pos + x.length) % cap;
  }
  newest(n) { const end = this.pos + this.capacity; return this.data.subarray(end - n, end); }
}

// ---- smoothing -----------------------------------------------------------------------------
const NOVELTY = 0.35, ONSET = 0.5;

function novelty(a, b, idx) {  // cosine distance of the two score profiles over idx
  let ab = 0, aa = 0, bb = 0;
  for (const i of idx) {
    const x = Math.max(a[i], 0), y = Math.max(b[i], 0);
    ab += x * y; aa += x * x; bb += y * y;
  }
  const na = Math.sqrt(aa), nb = Math.sqrt(bb);
  return na <= 0 || nb <= 0 ? 0 : 1 - ab / (na * nb);
}

export class ScoreSmoother {  // smoothing.py
  constructor(tauS, switchMargin = 0, changeS = 0, recentS = 3) {
    Object.assign(this, { tauS, switchMargin, changeS, recentS });
    this.reset();
  }
  reset() {
    this.state = null; this.leader = null; this.changedAt = null; this.changed = false;
    this.lastT = null; this.novelSince = null;
  }
  update(scores, t, candidates = null, recent = null, restart = false) {
    scores = Float64Array.from(scores);
    recent = recent == null ? scores : Float64Array.from(recent);
    const idx = candidates == null ? [...scores.keys()] : candidates;
    this.changed = false;
    if (this.state == null || this.tauS <= 0 || this.lastT == null) {
      this.state = scores.slice(); this.novelSince = null;
    } else if (restart) {
      this.state = recent.slice(); this.novelSince = null; this.changed = true;
    } else {
      let changed = false;
      const nov = this.changeS > 0 ? novelty(recent, this.state, idx) : 0;
      if (nov > NOVELTY * ONSET) {
        if (this.novelSince == null) this.novelSince = t;
        changed = nov > NOVELTY && t - this.novelSince >= this.changeS - 1e-6;
      } else {
        this.novelSince = null;
      }
      if (changed) {
        this.state = recent.slice();
        this.changedAt = this.novelSince - this.recentS / 2;
        this.novelSince = null;
        this.changed = true;
      } else {
        const w = 1 - Math.exp(-Math.max(t - this.lastT, 0) / this.tauS);
        for (let i = 0; i < scores.length; i++) this.state[i] += w * (scores[i] - this.state[i]);
      }
    }
    this.lastT = t;
    this.updateLeader(idx);
    return this.state;
  }
  updateLeader(idx) {
    if (!idx.length) { this.leader = null; return; }
    let best = idx[0];
    for (const i of idx) if (this.state[i] > this.state[best]) best = i;  // first maximum, as np.argmax
    if (this.leader == null || !idx.includes(this.leader)) this.leader = best;
    else if (best !== this.leader && this.state[best] > this.state[this.leader] * (1 + this.switchMargin)) this.leader = best;
  }
}

function leaderFirst(idx, smooth, lead) {  // engine._leader_first: by score (stable), the leader first
  const order = [...idx].sort((x, y) => smooth[y] - smooth[x]);  // Array.prototype.sort is stable
  return lead == null ? order : [lead, ...order.filter((i) => i !== lead)];
}

function rmsDbfs(x) {
  if (!x.length) return -Infinity;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  const ms = s / x.length;
  return ms > 0 ? 10 * Math.log10(ms) : -Infinity;
}

// ---- is music playing? -------------------------------------------------------------------
// presence.py PresenceTracker: per-stream hysteresis, in stream time, over each hop's music probability
// (here the presence head's, stream/presence_head.py, on the hop's newest 3 s patch; the device hears no talk).
export class PresenceTracker {
  constructor({ off_s = 2, on_s = 1, tau_s = 1, threshold = 0.5, keep_threshold = 0.4, talk_threshold = 0.5,
                pause_weight = 0.34 } = {}) {
    Object.assign(this, { offS: off_s, onS: on_s, tauS: tau_s, threshold, keep: keep_threshold ?? threshold,
                          talkThreshold: talk_threshold, pauseWeight: pause_weight });
    this.reset();
  }
  reset(t = 0) {
    this.music = 0; this.noMusic = false; this.talk = false;
    this.t = null; this.t0 = t; this.quiet = 0; this.heard = false; this.on = 0; this.musicSince = null;
    this.first = true;
  }
  // presence.py's update without the detector's frames (the head scores whole patches): changes fall on hops
  update(music, speech, t, spanS) {
    const dt = this.t == null ? spanS : Math.max(t - this.t, 0);
    const since = this.t == null ? Math.max(t - this.t0, dt) : dt;  // the first readout counts from the start
    this.t = t;
    const w = this.first || this.tauS === 0 ? 1 : 1 - Math.exp(-dt / this.tauS);
    this.first = false;
    this.music += w * (music - this.music);
    this.talk = speech >= this.talkThreshold;
    if (music >= (this.noMusic ? this.threshold : this.keep)) {
      this.quiet = 0;
      const weight = this.talk ? 0.5 : 1;  // talk in the hop: half toward bringing a genre back
      if (this.musicSince == null) {
        this.musicSince = t - spanS;
        this.on = spanS * weight;
      } else {
        this.on += dt * weight;
      }
      if (this.on >= this.onS - 1e-9) { this.noMusic = false; this.heard = true; }
    } else {
      this.musicSince = null;
      // after established music, a hop with neither music nor talk (a quiet passage) counts pause_weight
      this.quiet += since * (this.heard && !this.talk ? this.pauseWeight : 1);
      if (!this.noMusic && this.quiet >= this.offS - 1e-9) this.noMusic = true;
    }
    return { music: this.music, no_music: this.noMusic, talk: this.talk };
  }
  silent(t, spanS) { return this.update(0, 0, t, spanS); }
}

// ---- the engine ----------------------------------------------------------------------------
// settings: model.json's "engine" block, optionally overridden (window_s, hop_s, smoothing_s, top_k).
// runner(patches: Float32Array[], nets: string[]) -> Promise<Float32Array[]>: merged probabilities per patch.
export class DeviceEngine {
  constructor(manifest, runner, settings = {}) {
    this.m = manifest;
    this.runner = runner;
    const c = this.c = { ...manifest.engine, ...settings };
    const rate = this.rate = manifest.sample_rate;
    const n = manifest.patch_samples;
    this.win = Math.max(Math.round(c.window_s * rate), n);
    this.hop = Math.max(1, Math.round(c.hop_s * rate));
    this.min = Math.min(this.win, Math.max(Math.round(c.min_window_s * rate), n));
    const spacing = this.hop * Math.max(1, Math.round(n / this.hop));
    this.plan = this.win >= n ? { n, spacing, count: 1 + Math.floor((this.win - n) / spacing) } : null;
    this.nets = manifest.nets.map((e) => e.name);
    this.ring = new RingBuffer(this.win);
    this.genreSmoother = new ScoreSmoother(c.smoothing_s, c.switch_margin, c.change_s, this.min / rate);
    this.smoother = new ScoreSmoother(c.smoothing_s, c.switch_margin, 0, this.min / rate);
    // "no music" (engine.py with its detector on): where model.json has the presence head and the
    // settings do not turn it off (presence: false)
    this.presence = manifest.presence && c.presence !== false ? new PresenceTracker(manifest.presence.tracker) : null;
    this.patchMusic = new Map();  // hop boundary -> its patch's music probability (the presence head)
    this.resampler = null;
    this.onResult = null;
    this.patchScores = new Map();  // hop boundary (stream sample) -> its patch's probabilities
    this.patchEnds = new Map();  // hop boundary -> where its patch's audio ends (an early window's)
    this.sinceHop = 0; this.anchor = null; this.seq = 0; this.gen = 0;
    this.running = null; this.pending = null;  // the job the model runs, the newest one waiting
    this.stats = { classified: 0, skipped: 0, silent: 0, errors: 0, lastError: null, inferMs: [] };
    this.latest = null;
  }

  // One or both networks (the slow-device fallback drops to the first one).
  useNets(names) {
    this.nets = names;
    this.patchScores.clear();
    this.patchMusic.clear();  // scores of another set of networks do not mix
  }

  setHop(hopS) {  // the slow-device fallback: a longer hop, from the next boundary on
    this.c.hop_s = hopS;
    this.hop = Math.max(1, Math.round(hopS * this.rate));
    const n = this.m.patch_samples, spacing = this.hop * Math.max(1, Math.round(n / this.hop));
    this.plan = this.win >= n ? { n, spacing, count: 1 + Math.floor((this.win - n) / spacing) } : null;
    this.patchScores.clear();
    this.patchMusic.clear();
    this.patchEnds.clear();
    this.sinceHop = 0;
  }

  // Audio at any rate: resampled to 16 kHz, cut at hop boundaries.
  feed(samples, sampleRate) {
    if (sampleRate !== this.rate) {
      if (!this.resampler || this.resampler.inRate !== sampleRate) {
        this.resampler = new Resampler(sampleRate, this.rate);
      }
      this.push(this.resampler.process(samples));
      this.emitEarly();
      return;
    }
    this.push(samples);
  }

  // engine.py _emit_early: when only the samples the resampler holds back are missing for a hop
  // boundary, classify now; the held-back samples then count towards the same hop.
  emitEarly() {
    const missing = this.hop - this.sinceHop, slack = this.resampler.delay() + 1;
    if (missing > 0 && missing <= slack && this.ring.length + missing >= this.min) {
      this.sinceHop -= this.hop;
      this.emit(missing);
    }
  }

  push(y) {
    let off = 0;
    while (off < y.length) {
      const n = Math.min(y.length - off, this.hop - this.sinceHop);
      this.ring.write(y.subarray(off, off + n));
      off += n;
      this.sinceHop += n;
      if (this.sinceHop >= this.hop) {
        this.sinceHop = 0;
        if (this.ring.length >= this.min) this.emit();
      }
    }
  }

  emit(early = 0) {
    let n = this.ring.length;
    if (this.anchor != null) n = Math.min(n, Math.max(this.ring.total - this.anchor, this.min));
    const window = this.ring.newest(n);
    const tEnd = (this.ring.total + early) / this.rate;
    const level = rmsDbfs(window);
    const c = this.c;
    const wantRecent = c.change_s > 0 && c.smoothing_s > 0 && n >= 2 * this.min && level >= c.silence_dbfs;
    const meta = { gen: this.gen, seq: ++this.seq, tEnd, level, duration: window.length / this.rate, wantRecent };
    if (level < c.silence_dbfs) {
      if (this.pending) { this.pending = null; this.stats.skipped++; }
      return this.deliverSilent(meta);
    }
    if (!this.plan || window.length < this.plan.n) return;  // (live, a window always holds a patch)
    // the grid patches: the newest ends at this hop boundary, each other one `spacing` earlier
    const { n: size, spacing, count } = this.plan;
    const have = this.ring.total, end = have + early, keys = [], rows = [], ends = this.patchEnds;
    // where each hop's patch ends, fixed when first cut: an early window's where its audio did; on the
    // model's frame grid where the window holds it (engine.py _patch_job)
    const grid = this.m.patch_grid || 0;
    ends.set(end, grid && window.length - (have % grid) >= size ? have - (have % grid) : have);
    for (const key of [...ends.keys()]) if (key < end - (count - 1) * spacing) ends.delete(key);
    for (let i = 0; i < count; i++) {
      const key = end - i * spacing;
      const at = ends.get(key) ?? (grid ? key - (key % grid) : key);  // a hop that cut no window: silence
      const stop = window.length - (have - at);
      if (stop < size) break;
      keys.push(key);
      if (!this.patchScores.has(key)) rows.push([key, window.slice(stop - size, stop)]);
    }
    const job = { meta, keys, rows, nets: this.nets, submitted: performance.now() };
    if (this.running) {
      if (this.pending) this.stats.skipped++;  // a newer window replaces one still waiting
      this.pending = job;
    } else {
      this.start(job);
    }
  }

  async start(job) {
    this.running = job;
    const t0 = performance.now();
    try {
      // patches of the grid scored meanwhile (by the job before) are not scored again
      const todo = job.rows.filter(([key]) => !this.patchScores.has(key));
      const probs = todo.length ? await this.runner(todo.map(([, x]) => x), job.nets) : [];
      this.deliver(job, todo.map(([key]) => key), probs, performance.now() - t0);
    } catch (e) {
      this.stats.errors++;
      this.stats.lastError = String(e && e.message || e);
    }
    this.running = null;
    const next = this.pending;
    this.pending = null;
    if (next) this.start(next);
    else if (this.idleWaiters) { this.idleWaiters.forEach((f) => f()); this.idleWaiters = null; }
  }

  idle() {  // resolves once no window waits for the model (tests feed hop by hop)
    if (!this.running && !this.pending) return Promise.resolve();
    return new Promise((resolve) => (this.idleWaiters ||= []).push(resolve));
  }

  deliverSilent(meta) {
    if (meta.gen !== this.gen) return;
    this.smoother.reset(); this.genreSmoother.reset();
    this.stats.silent++;
    const pr = this.presence && this.presence.silent(meta.tEnd, this.c.hop_s);
    this.publish({ event: "result", time_s: meta.tEnd, label: null, scores: {}, silent: true, level_dbfs: meta.level,
                   window_s: meta.duration, inference_ms: 0, latency_ms: 0, genre: null, genre_scores: {},
                   music: pr ? pr.music : null, no_music: !!(pr && pr.no_music), talk: false });
  }

  deliver(job, todo, probs, inferMs) {
    const { meta, keys } = job;
    if (meta.gen !== this.gen || job.nets !== this.nets) return;  // reset, or the networks changed meanwhile
    const cache = this.patchScores;
    todo.forEach((key, i) => {
      cache.set(key, probs[i]);
      if (probs[i].music != null) this.patchMusic.set(key, probs[i].music);
    });
    const oldest = keys[0] - (this.plan.count - 1) * this.plan.spacing;
    for (const key of [...cache.keys()]) if (key < oldest) cache.delete(key);
    for (const key of [...this.patchMusic.keys()]) if (key < oldest) this.patchMusic.delete(key);
    const got = keys.filter((key) => cache.has(key)).map((key) => cache.get(key));
    if (!got.length || meta.seq < (this.deliveredSeq ?? 0)) return;
    this.deliveredSeq = meta.seq;
    const L = got[0].length, mean = new Float32Array(L);
    for (let i = 0; i < L; i++) { let s = 0; for (const p of got) s += p[i]; mean[i] = s / got.length; }
    let recent = meta.wantRecent ? cache.get(keys[0]) ?? null : null;
    const m = this.m, gs = this.genreSmoother, st = this.smoother;
    let pr = null;
    if (this.presence) {
      const wasOff = this.presence.noMusic;
      pr = this.presence.update(this.patchMusic.get(keys[0]) ?? 0, 0, meta.tEnd, this.c.hop_s);
      if (wasOff && !pr.no_music) {
        // music is back: start the readout from it, not from what the voice scored (engine.py)
        st.reset(); gs.reset();
        const since = this.presence.musicSince;
        if (since != null) this.anchor = Math.max(Math.round(since * this.rate), 0);
        recent = null;
      }
    }
    const gSmooth = gs.update(this.genreScores(mean), meta.tEnd, null, recent && this.genreScores(recent));
    if (gs.changedAt != null) this.anchor = Math.round(gs.changedAt * this.rate);
    const smooth = st.update(mean, meta.tEnd, m.members[gs.leader], recent, gs.changed);
    const k = this.c.top_k || m.visible.length;
    const scores = {};
    for (const i of leaderFirst(m.visible, smooth, st.leader).slice(0, k)) scores[m.labels[i]] = smooth[i];
    const genreScores = {};
    for (const i of leaderFirst([...m.genres.keys()], gSmooth, gs.leader).slice(0, k)) genreScores[m.genres[i]] = gSmooth[i];
    this.stats.classified++;
    this.stats.lastError = null;  // (an error is shown until the model works again)
    this.stats.inferMs.push(inferMs);
    if (this.stats.inferMs.length > 64) this.stats.inferMs.shift();
    const none = !!(pr && pr.no_music);  // the headline is "no music"; the scores stay in the record
    this.publish({ event: "result", time_s: meta.tEnd, label: none ? null : m.labels[st.leader], scores, silent: false,
                   level_dbfs: meta.level, window_s: meta.duration, inference_ms: inferMs,
                   latency_ms: performance.now() - job.submitted, genre: none ? null : m.genres[gs.leader],
                   genre_scores: genreScores, music: pr ? pr.music : null, no_music: none, talk: false });
  }

  genreScores(probs) {  // genres.py GenreLevel.scores: each genre as its best style (or their sum)
    return this.m.members.map((idx) => this.m.pool === "sum" ? idx.reduce((s, i) => s + probs[i], 0)
      : Math.max(...idx.map((i) => probs[i])));
  }

  publish(r) {
    r.at = new Date().toISOString();
    this.latest = r;
    if (this.onResult) this.onResult(r);
  }

  reset() {
    this.gen++;
    this.ring.clear(); this.patchScores.clear(); this.patchMusic.clear(); this.patchEnds.clear(); this.sinceHop = 0;
    if (this.presence) this.presence.reset();
    if (this.resampler) this.resampler.reset();
    this.smoother.reset(); this.genreSmoother.reset();
    this.anchor = null; this.latest = null; this.pending = null;
  }
}

// Merged probabilities of one patch from each network's logits (model.py MusicnnModel.predict):
// a tag output by several networks gets the mean of their sigmoid probabilities.
export function mergeLogits(manifest, logitsByNet, nets) {
  const out = new Float32Array(manifest.labels.length);
  const counts = new Float64Array(manifest.labels.length);
  for (const e of manifest.nets) if (nets.includes(e.name)) for (const c of e.columns) counts[c]++;
  const acc = new Float64Array(manifest.labels.length);
  for (const e of manifest.nets) {
    if (!nets.includes(e.name)) continue;
    const z = logitsByNet[e.name];
    e.columns.forEach((c, j) => { acc[c] += 1 / (1 + Math.exp(-z[j])) / counts[c]; });
  }
  for (let i = 0; i < out.length; i++) out[i] = acc[i];
  return out;
}
