#!/usr/bin/env python3
"""How many live streams one machine holds in real time, before and after patch reuse
(issue 10), plus the per-hop compute behind it.

    python -m bench.streams --quick    # ~5 min: per-hop compute, streams held (short trials)
    python -m bench.streams            # ~15-20 min: longer trials, finer search
    python -m bench.streams --quality  # + patch-grid vs whole-window readouts on real music
    python -m bench.streams --engines 1 2 4 8   # the issue-6 table: fixed N, DistilHuBERT-shaped
    python -m bench.streams --only capacity --cap 64   # per backend (float32 ORT, OpenVINO bf16):
        # network CPU per patch and GFLOP/s vs the core's peak, per-hop CPU, streams held, interleaved

Set-up: N engines on one shared worker, each fed real music (asc-music recordings, 16 kHz)
in 100 ms chunks every 100 ms of wall clock, hops staggered (listeners arrive at different
moments); default EngineConfig of each model (bundled MusiCNN: 9 s window, 1 s hop;
DistilHuBERT-shaped: 10 s window, 1 s hop, accel auto).

A trial of N streams *holds* when, over the measured period: <= 5 % of windows are skipped,
the p95 latency (window complete -> readout) is <= 1.5 s, and every stream got >= 80 % of
the readouts its hop asks for. "streams held" = the largest N that held (search: 1, 2, 4, ...
doubling until a trial fails, then bisection).

Configurations, measured in the same run (the machine may be shared: compare within a run):
  bundled before   patch_reuse=False, torch kernels (the behaviour before issue 10)
  bundled after    patch_reuse=True, kernels chosen at load (ONNX Runtime where installed)
  DistilHuBERT     no patches; exact float32 under torch (before) and under ONNX Runtime
                   (after: what CPUs without bf16 run), then accel auto (bf16 autocast on a
                   CPU with bf16: faster, not exact)

Per-hop compute: CPU ms one stream costs per hop once its window is full (inline engine,
interleaved before/after rounds), the figure streams held scales with.
"""
from __future__ import annotations

import argparse
import os
import threading
import time
import warnings

import numpy as np

from bench import common as C

warnings.filterwarnings("ignore")

CHUNK_S = 0.1
SETTLE_S = 6.0  # real time fed before each trial's measured period (run)


def run(model, n: int, seconds: float, audio: np.ndarray, max_batch: int | None = None, cfg=None,
        deliver_apart: bool = True) -> dict:
    """N engines in real time for `seconds`; the trial's figures (see HEADER / `holds`).
    deliver_apart=False: readouts built on the forward's thread (the worker before its delivery thread)."""
    from stream import EngineConfig, StreamEngine
    from stream.worker import InferenceWorker

    rate = C.RATE
    if max_batch is not None:
        model.max_batch = max_batch
    # a fresh shared worker (with this max_batch)
    model._stream_worker = InferenceWorker(model, getattr(model, "max_batch", 8), deliver_apart=deliver_apart)
    results: list[list[float]] = [[] for _ in range(n)]
    latencies: list[float] = []
    measuring = threading.Event()

    def cb(i):
        def on_result(res):
            if measuring.is_set() and not res.silent:
                results[i].append(time.perf_counter())
                latencies.append(res.latency_ms)
        return on_result

    cfg = cfg or EngineConfig(window_s=10.0, hop_s=1.0, min_window_s=10.0)
    engines = [StreamEngine(model, cfg, on_result=cb(i)) for i in range(n)]
    win_s, hop_s = engines[0].config.window_s, engines[0].config.hop_s
    pos = [0] * n

    def feed(i, seconds_):
        k = int(round(seconds_ * rate))
        out = np.take(audio, np.arange(pos[i], pos[i] + k), mode="wrap")
        pos[i] += k
        engines[i].feed(out, rate)

    for i, e in enumerate(engines):  # prefill, staggered phases
        pos[i] = int(i * 37.3 * rate) % len(audio)
        feed(i, win_s + hop_s * i / n)
    worker = engines[0]._worker
    t_wait = time.perf_counter()
    while (worker.pending() or any(e.latest is None for e in engines)) and time.perf_counter() - t_wait < 120:
        time.sleep(0.05)
    # Settle: the prefill scored each window's patches at once, so for two patch spacings the hops
    # would score patches a live stream scored long before (more rows per hop, none a streaming step).
    C.paced(SETTLE_S, CHUNK_S, lambda tick: [feed(i, CHUNK_S) for i in range(n)])
    base = [e.stats for e in engines]
    b0, w0, r0 = worker.batches, worker.windows, worker.rows
    lags: list[list[float]] = [[] for _ in range(n)]
    def step(tick):
        for i in range(n):
            feed(i, CHUNK_S)
        if tick % 5 == 4:
            for i, e in enumerate(engines):  # stats.lag_s without building the stats (their sort is CPU the engines would not spend)
                lags[i].append(max(e._ring.total / rate - e.latest.time_s, 0.0) if e.latest else 0.0)

    measuring.set()
    c0 = time.process_time()
    t0, elapsed = C.paced(seconds, CHUNK_S, step)
    cpu = time.process_time() - c0
    measuring.clear()
    end = [e.stats for e in engines]
    for e in engines:
        e.close()
    C.wait_idle(model)
    worker.stop()  # wait for a running forward: the next trial starts on a quiet worker
    batches, windows, rows = worker.batches - b0, worker.windows - w0, worker.rows - r0
    counts = [len(r) for r in results]
    intervals = np.concatenate([np.diff(r) for r in results if len(r) > 1] or [np.array([np.nan])])
    # the longest wait of each engine, including from the start and to the end of the period
    gaps = [max(np.diff([t0] + r + [t0 + elapsed])) for r in results]
    skipped = sum(e.windows_skipped - b.windows_skipped for e, b in zip(end, base))
    classified = sum(e.windows_classified - b.windows_classified for e, b in zip(end, base))
    emitted = skipped + classified
    all_lags = np.concatenate([np.array(l) for l in lags]) if any(lags) else np.array([np.nan])
    expected = elapsed / hop_s
    return {
        "n": n, "max_batch": worker.max_batch, "seconds": elapsed,
        "interval_med": float(np.nanmedian(intervals)), "interval_max": float(np.nanmax(intervals)),
        "max_gap": float(max(gaps)),
        "lag_mean": float(np.nanmean(all_lags)), "lag_max": float(np.nanmax(all_lags)),
        "skipped_frac": skipped / emitted if emitted else 0.0,
        "fairness": min(counts) / max(counts) if max(counts) else 0.0,
        "counts": counts,
        "batch_mean": windows / batches if batches else 0.0,
        "rows_per_batch": rows / batches if batches else 0.0,
        "win_per_s": windows / elapsed,
        "infer_ms": float(np.mean([e.inference_ms_mean for e in end])),
        "p95_latency_s": float(np.percentile(latencies, 95)) / 1000.0 if latencies else float("inf"),
        "min_readouts": min(counts) / expected if expected else 0.0,
        "cpu_share": cpu / elapsed,
        # everything the process spent (feeding, front end, networks, readouts) per readout delivered
        "cpu_ms_per_result": cpu * 1000.0 / max(1, sum(counts)),
    }


def holds(r: dict) -> bool:
    """The issue-10 criteria for a trial."""
    return r["skipped_frac"] <= 0.05 and r["p95_latency_s"] <= 1.5 and r["min_readouts"] >= 0.8


def streams_held(model, cfg, audio, seconds: float, cap: int, bisect_steps: int, log) -> tuple[int, list]:
    """Largest N that holds: 1, 2, 4, ... until a failure (or `cap`), then bisection."""
    trials, good, bad = [], 0, None
    n = 1
    while n <= cap:
        r = run(model, n, seconds, audio, cfg=cfg)
        trials.append(r)
        log(r)
        if not holds(r):
            bad = n
            break
        good = n
        n = min(2 * n, cap) if n < cap else cap + 1
    steps = 0
    while bad is not None and bad - good > 1 and steps < bisect_steps:
        mid = (good + bad) // 2
        r = run(model, mid, seconds, audio, cfg=cfg)
        trials.append(r)
        log(r)
        good, bad = (mid, bad) if holds(r) else (good, mid)
        steps += 1
    return good, trials


def per_hop_cpu(models: dict, audio: np.ndarray, rounds: int) -> dict:
    """CPU ms per hop of one inline stream with a full window, interleaved rounds per config:
    {name: [ms per round]}."""
    from stream import StreamEngine

    rate = C.RATE
    out = {k: [] for k in models}
    wall = {k: [] for k in models}
    engines = {}
    for name, (model, cfg) in models.items():
        e = StreamEngine(model, cfg, background=False)
        e.feed(audio[: int((e.config.window_s + 1) * rate)], rate)  # fill the window
        engines[name] = [e, int((e.config.window_s + 1) * rate)]
    hops = 4
    for _ in range(rounds):
        for name, st in engines.items():
            e, pos = st
            hop = int(e.config.hop_s * rate)
            chunk = np.take(audio, np.arange(pos, pos + hops * hop), mode="wrap")
            st[1] = pos + hops * hop
            c0, w0 = time.process_time(), time.perf_counter()
            for i in range(hops):
                e.feed(chunk[i * hop:(i + 1) * hop], rate)
            out[name].append((time.process_time() - c0) * 1000.0 / hops)
            wall[name].append((time.perf_counter() - w0) * 1000.0 / hops)
    for e, _ in engines.values():
        e.close()
    return out, wall


def quality(seconds_per_file: float = 60.0) -> list:
    """Patch-grid readouts vs whole-window readouts (same engine, inline, real music), and
    the whole-window readout vs itself 8 ms (half a frame) earlier as the network's own
    jitter. Rows: (comparison, windows, max |dp|, median max |dp|, genre-leader changes)."""
    from stream import EngineConfig, StreamEngine, load_model

    m = load_model("musicnn")
    gv = np.array([m.labels.index(l) for l in m.default_labels])
    rows = {"patch grid vs whole window": [], "whole window vs 8 ms earlier": []}
    flips = {k: 0 for k in rows}
    for name, y in C.real_music(seconds_per_file):
        res = {}
        for key, reuse in (("patch", True), ("whole", False)):
            got = []
            cfg = EngineConfig(patch_reuse=reuse, smoothing_s=0, allow=["*"], top_k=0)
            with StreamEngine(m, cfg, background=False, on_result=got.append) as e:
                for i in range(0, len(y), C.RATE // 10):
                    e.feed(y[i:i + C.RATE // 10], C.RATE)
            res[key] = [np.array([r.raw_scores[l] for l in m.labels]) for r in got if r.window_s >= 8.9]
        for a, b in zip(res["patch"], res["whole"]):
            rows["patch grid vs whole window"].append(np.abs(a - b).max())
            flips["patch grid vs whole window"] += a[gv].argmax() != b[gv].argmax()
        win = int(m.default_window_s * C.RATE)
        for end in range(win + 128, len(y) + 1, C.RATE):
            a, b = m.predict(np.stack([y[end - win:end], y[end - win - 128:end - 128]]))
            rows["whole window vs 8 ms earlier"].append(np.abs(a - b).max())
            flips["whole window vs 8 ms earlier"] += a[gv].argmax() != b[gv].argmax()
    return [(k, len(v), float(np.max(v)), float(np.median(v)), int(flips[k])) for k, v in rows.items() if v]


def model_gflop(model, streaming: bool = False) -> float:
    """GFLOP per patch of all the model's networks: 2 x the multiply-accumulates of their
    convolutions and linear layers, counted by hooks on one torch forward (the rest is < 1 %).
    streaming: what a live patch after the stream's first costs (the streaming front end's step
    and the rest of the network, stream/models/musicnn/streaming.py)."""
    import torch

    from stream.models.musicnn.streaming import CHANNELS, _Rest, _Step

    macs = 0

    def hook(mod, _inp, out):
        nonlocal macs
        if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d)):
            macs += out.numel() * (mod.in_channels // mod.groups) * int(np.prod(mod.kernel_size))
        elif isinstance(mod, torch.nn.Linear):
            macs += out.numel() * mod.in_features

    for net in model.nets.values():
        handles = [m.register_forward_hook(hook) for m in net.modules()]
        with torch.inference_mode():
            if streaming:
                _Step(net)(torch.zeros(1, 187, 96))
                _Rest(net)(torch.zeros(1, 187, 96 + CHANNELS))
            else:
                net(torch.zeros(1, 187, 96))
        for h in handles:
            h.remove()
    return 2 * macs / 1e9


def peak_gflops_per_core(precision: str, ghz: float | None = None) -> tuple[float, str]:
    """(GFLOP/s one core can reach at `precision`, how it was worked out) from /proc/cpuinfo:
    FLOP per cycle x the clock the kernel reports (a virtual machine's nominal clock).
    fp32: 2 FMA pipes x 16 lanes x 2 with AVX-512 on Intel (64); Zen 4 splits 512-bit ops
    into two 256-bit halves (32), as do AVX2 cores. bf16: AVX512-BF16 dot products double
    fp32's rate (Zen 4: 64); AMX: 1024 (16x16x32 multiply-accumulates per 16 cycles)."""
    from stream.models.accel import cpu_flags

    flags = cpu_flags()
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    amd = "AuthenticAMD" in info
    mhz = [float(l.split(":")[1]) for l in info.splitlines() if l.startswith("cpu MHz")]
    ghz = ghz or (max(mhz) / 1000 if mhz else 3.0)  # a VM reports its nominal clock: --ghz for the boost
    fp32 = 64 if "avx512f" in flags and not amd else 32
    if precision == "bf16":
        per = 1024 if "amx_bf16" in flags else 2 * fp32 if "avx512_bf16" in flags else fp32
    else:
        per = fp32
    return per * ghz, f"{per} FLOP/cycle x {ghz:.2f} GHz"


def network_cpu(models: dict, audio: np.ndarray, rounds: int, batch: int) -> dict:
    """CPU ms per patch of the networks alone (both checkpoints), `batch` streams' new patches per
    call, each round the patches one hop (1 s) on: the whole network on each patch, or, for a
    model with the streaming front end, its step (each stream's previous patch scored before the
    rounds). Interleaved rounds: {name: [ms per round]}."""
    import torch

    from stream.models.musicnn.frontend import PATCH_SAMPLES

    rate, grid = C.RATE, 256
    out = {k: [] for k in models}
    ends = [PATCH_SAMPLES + i * 7 * rate for i in range(batch)]  # each stream its own music

    def call(m, state, r):
        at = [e + r * rate - (e + r * rate) % grid for e in ends]
        x = m.logmel(np.stack([np.take(audio, np.arange(a - PATCH_SAMPLES, a), mode="wrap") for a in at]))
        c0 = time.process_time()
        with torch.inference_mode():
            if m.streaming is not None:
                m.streaming.logits(x, [(s, a) for s, a in zip(state, at)])
            else:
                for fwd in m.kernels.values():
                    fwd(x)
        return (time.process_time() - c0) * 1000.0 / batch

    states = {name: [m.new_stream() for _ in ends] for name, m in models.items()}
    for name, m in models.items():
        call(m, states[name], 0)  # warm; the streams' first patches
    for r in range(1, rounds + 1):
        for name, m in models.items():
            out[name].append(call(m, states[name], r))
    return out


def free_networks(model):
    """A second load of `model`'s spec and backend whose networks cost nothing: every call returns
    the logits the real networks gave one real-music patch (so the readouts downstream see music).
    What a trial of it costs is everything but the networks: feeding, log-mel, batching, the
    music detector, smoothing, confidence, callbacks."""
    import torch

    from stream.models.musicnn import load_bundled
    from stream.models.musicnn.frontend import PATCH_FRAMES, PATCH_SAMPLES

    free = load_bundled(model.name, backend=model.backend, streaming=model.streaming is not None)
    audio = C.music_windows(PATCH_SAMPLES / C.RATE, per_file=1)[0][1]
    with torch.inference_mode():
        rows = {ck: fwd(free.logmel(audio[None, :PATCH_SAMPLES])[:, :PATCH_FRAMES]) for ck, fwd in free.kernels.items()}
    free.kernels = {ck: (lambda x, r=r: r.expand(len(x), -1)) for ck, r in rows.items()}
    if free.streaming is not None:
        free.streaming.logits = lambda logmel, _context: {ck: r.expand(len(logmel), -1) for ck, r in rows.items()}
    return free


def held_interleaved(configs: dict, audio, seconds: float, cap: int, bisect_steps: int, log,
                     start: int = 1) -> tuple[dict, dict]:
    """`streams_held` for several configurations ({name: (model, cfg[, run()'s keywords])}), their trials interleaved (N = start, 2 start, ...
    for each in turn, then bisection in turn), so a change in the machine's load hits all alike.
    A configuration that fails at `start` is bisected from 0."""
    state = {k: [0, None] for k in configs}  # good, bad
    trials = {k: [] for k in configs}
    n = max(1, int(start))
    while n <= cap and any(b is None for _, b in state.values()):
        for name, (model, cfg, *opts) in configs.items():
            if state[name][1] is None:
                r = run(model, n, seconds, audio, cfg=cfg, **(opts[0] if opts else {}))
                trials[name].append(r)
                log(name, r)
                state[name][0 if holds(r) else 1] = n
        n = min(2 * n, cap) if n < cap else cap + 1
    for _ in range(bisect_steps):
        for name, (model, cfg, *opts) in configs.items():
            good, bad = state[name]
            if bad is not None and bad - good > 1:
                mid = (good + bad) // 2
                r = run(model, mid, seconds, audio, cfg=cfg, **(opts[0] if opts else {}))
                trials[name].append(r)
                log(name, r)
                state[name][0 if holds(r) else 1] = mid
    return {k: g for k, (g, _) in state.items()}, trials


def capacity(args, audio, seconds: float) -> dict:
    """Per backend (float32 ONNX Runtime, OpenVINO bf16, what auto picks): network CPU per patch and
    achieved GFLOP/s against the core's peak at that precision, per-hop CPU of one stream, and
    streams held, all interleaved in one run."""
    from stream import EngineConfig
    from stream.models.backends import openvino_available
    from stream.models.musicnn import load_bundled

    backends = ["onnxruntime"]
    if openvino_available()[0]:
        backends.append("openvino")
    models = {}
    for backend in backends:
        for streaming in (False, True):
            m = load_bundled("musicnn", backend=backend, streaming=streaming)
            label = "fp32 ORT" if backend == "onnxruntime" else f"OpenVINO {m.precision}"
            name = f"{label}, {'streaming' if m.streaming is not None else 'whole patches'}"
            if not args.configs or any(c in name for c in args.configs):
                models[name] = m
                if args.free_networks:
                    models[name + ", networks free"] = free_networks(m)
    auto = load_bundled("musicnn")
    print(f"auto on this CPU: {auto.backend} {auto.precision} ({next(iter(auto.kernels.values())).reason}), "
          f"streaming front end {'on' if auto.streaming is not None else 'off'}")
    gflop = {False: model_gflop(auto), True: model_gflop(auto, streaming=True)}
    out = {"gflop_per_patch": gflop[False], "gflop_per_step": gflop[True], "network": {}, "per_hop": {}}
    print(f"\nnetworks: {gflop[False]:.2f} GFLOP per whole patch, {gflop[True]:.2f} per streaming step (both "
          "checkpoints); CPU ms per patch (median of interleaved rounds)")
    for batch in args.net_batches:
        ms = network_cpu({k: m for k, m in models.items() if not k.endswith("networks free")}, audio,
                         5 if args.quick else 9, batch)
        for name, v in ms.items():
            m = models[name]
            peak, how = peak_gflops_per_core(m.precision, args.ghz)
            rate = gflop[m.streaming is not None] / (C.med(v) / 1000.0)
            out["network"][(name, batch)] = (C.med(v), rate, rate / peak)
            print(f"  {name:30s} batch {batch:2d}: {C.med(v):6.1f} CPU ms/patch, {rate:5.0f} GFLOP/s per core = "
                  f"{100 * rate / peak:3.0f} % of {peak:.0f} ({m.precision}: {how})", flush=True)
    cfg = EngineConfig()
    ms, wall = per_hop_cpu({k: (m, cfg) for k, m in models.items()}, audio, rounds=3 if args.quick else 6)
    print("\nper-hop CPU of one stream (inline engine, default settings, median of interleaved rounds):")
    for k, v in ms.items():
        out["per_hop"][k] = C.med(v)
        print(f"  {k:30s} {C.med(v):6.1f} CPU ms per hop", flush=True)
    trials_of = {}  # each model with its readouts built apart from the forward (the worker's way), or also on its thread
    for name, m in models.items():
        for apart in {"apart": (True,), "forward": (False,), "both": (True, False)}[args.delivery]:
            label = name if apart else name + ", readouts on the forward thread"
            trials_of[label] = (m, cfg, {"deliver_apart": apart})
    if args.fixed:  # a loaded machine holds too few streams to compare: the cost per readout at fixed N instead
        print("\nfixed N, real time (what a readout costs the process, all threads, batching included):")
        out["fixed"] = {}
        for n in args.fixed:
            for name, (m, _, opts) in trials_of.items():
                r = run(m, n, seconds, audio, cfg=cfg, **opts)
                out["fixed"][(name, n)] = r
                print(trial_line(name, r) + f"; {r['cpu_ms_per_result']:.1f} CPU ms per readout", flush=True)
        print(C.load_note().replace(" at start", " now"))
        return out
    cap = args.cap
    held, trials = held_interleaved(trials_of, audio, seconds, cap,
                                    1 if args.quick else 3, lambda name, r: print(trial_line(name, r), flush=True),
                                    start=args.start)
    rows = []
    for name, n in held.items():
        best = next((r for r in trials[name] if r["n"] == n), None)
        rows.append([name, n, f"{best['cpu_ms_per_result']:.1f}" if best else "-",
                     f"{100 * best['skipped_frac']:.1f} %" if best else "-",
                     f"{best['p95_latency_s']:.2f}" if best else "-"])
    print()
    print(C.table(rows, ["backend", "streams held", "process CPU ms per readout", "skipped", "p95 latency s"]))
    print(C.load_note().replace(" at start", " now"))
    out["held"], out["trials"] = held, trials
    return out


def row(r: dict) -> list:
    return [r["n"], r["max_batch"], f"{r['interval_med']:.2f} / {r['interval_max']:.2f}", f"{r['max_gap']:.1f}",
            f"{r['lag_mean']:.2f} / {r['lag_max']:.2f}", f"{100 * r['skipped_frac']:.0f} %", f"{r['fairness']:.2f}",
            f"{r['batch_mean']:.2f}", f"{r['win_per_s']:.2f}", f"{r['infer_ms']:.0f}"]


HEADER = ["engines", "max_batch", "interval s med/max", "max gap s", "lag s mean/max", "skipped", "fairness",
          "batch", "win/s", "forward ms"]


def trial_line(label: str, r: dict) -> str:
    return (f"  {label:16s} N={r['n']:3d}: skipped {100 * r['skipped_frac']:4.1f} %, p95 latency "
            f"{r['p95_latency_s']:.2f} s, fewest readouts {100 * r['min_readouts']:3.0f} %, batch {r['batch_mean']:.1f} "
            f"jobs / {r['rows_per_batch']:.1f} inputs, process CPU {100 * r['cpu_share']:.0f} %"
            f" -> {'holds' if holds(r) else 'fails'}")


def legacy(args, seconds: float) -> dict:
    """The issue-6 table: fixed engine counts, DistilHuBERT-shaped model."""
    ckpt = C.temp_checkpoint("distilhubert")
    model = C.load_engine_model(ckpt, args.accel)
    music = C.real_music(120.0)
    audio = np.concatenate([y for _, y in music]) if music else C.synthetic_music(120.0)
    print(f"== streams: N engines, one shared worker, real-time feed ==\n{C.cpu_note()}; {C.load_note()}; "
          f"forward: {model.accel.mode} ({model.accel.reason}); window 10 s, hop 1 s, {seconds:.0f} s measured per row")
    rows, out = [], []
    for n in args.engines:
        r = run(model, n, seconds, audio, max_batch=8)
        out.append(r)
        rows.append(row(r))
    print(C.table(rows, HEADER))
    return {"rows": out}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="~5 min: 8 s trials, coarse search")
    ap.add_argument("--seconds", type=float, default=None, help="measured real-time period per trial")
    ap.add_argument("--engines", type=int, nargs="+", default=None, help="fixed engine counts (issue-6 table)")
    ap.add_argument("--accel", default="auto", help="accelerate() mode of the DistilHuBERT-shaped model")
    ap.add_argument("--cap", type=int, default=48, help="largest N tried")
    ap.add_argument("--start", type=int, default=1, help="--only capacity: first N of the doubling search")
    ap.add_argument("--only", nargs="+", default=["cpu", "bundled", "distilhubert"],
                    choices=["cpu", "bundled", "distilhubert", "capacity"])
    ap.add_argument("--fixed", type=int, nargs="+", default=None,
                    help="--only capacity: fixed stream counts instead of the streams-held search")
    ap.add_argument("--configs", nargs="+", default=None,
                    help="--only capacity: only the backends whose name contains one of these (e.g. 'bf16, streaming')")
    ap.add_argument("--delivery", default="apart", choices=["apart", "forward", "both"],
                    help="--only capacity: readouts built on the worker's delivery thread (apart, the default), on "
                         "the forward's thread (before), or both interleaved")
    ap.add_argument("--net-batches", type=int, nargs="+", default=[1, 4],
                    help="--only capacity: streams' patches per network call in the networks' CPU figures")
    ap.add_argument("--free-networks", action="store_true",
                    help="--only capacity: also each backend with networks that cost nothing (a fixed real-music "
                         "output): what everything around the networks costs per readout")
    ap.add_argument("--ghz", type=float, default=None, help="core clock for the peak (default: /proc/cpuinfo's)")
    ap.add_argument("--quality", action="store_true", help="also compare patch-grid and whole-window readouts")
    args = ap.parse_args(argv)
    seconds = args.seconds or (8.0 if args.quick else 20.0)
    if args.engines:
        return legacy(args, seconds)
    from stream import EngineConfig
    from stream.models.musicnn import load_bundled

    music = C.real_music(120.0)
    audio = np.concatenate([y for _, y in music]) if music else C.synthetic_music(120.0)
    print(f"== streams held in real time (issue 10) ==\n{C.cpu_note()}; {C.load_note()}; "
          f"{seconds:.0f} s per trial; audio: {'real music' if music else 'synthetic'}", flush=True)
    if args.only == ["capacity"]:
        return capacity(args, audio, seconds)
    before = load_bundled("musicnn", backend="torch")
    after = load_bundled("musicnn")
    print(f"bundled after: kernels {after.backend} ({next(iter(after.kernels.values())).reason})", flush=True)
    configs = {"bundled before": (before, EngineConfig(patch_reuse=False)),
               "bundled after": (after, EngineConfig())}
    out: dict = {"rows": []}
    if "cpu" in args.only:
        # the two halves of "after" apart: patch reuse alone (torch kernels), then + ONNX Runtime
        ms, wall = per_hop_cpu({**configs, "patch reuse, torch": (before, EngineConfig())}, audio,
                               rounds=3 if args.quick else 6)
        out["per_hop"] = {k: (C.med(v), C.med(wall[k])) for k, v in ms.items()}
        b, bw = out["per_hop"]["bundled before"]
        print("\nper-hop compute of one stream (median of interleaved rounds; ratio = before / this):")
        for k, (c, w) in out["per_hop"].items():
            print(f"  {k:20s} CPU {c:6.0f} ms (all threads, x{b / c:.1f})   wall {w:6.0f} ms (x{bw / w:.1f})", flush=True)
    held = {}
    trials = {}
    cap = 24 if args.quick else args.cap
    steps = 1 if args.quick else 3
    if "bundled" in args.only:
        for name, (model, cfg) in configs.items():
            held[name], trials[name] = streams_held(model, cfg, audio, seconds, cap, steps,
                                                    lambda r, name=name: print(trial_line(name, r), flush=True))
    if "distilhubert" in args.only:
        from stream.models.hf import load_hf

        ckpt = C.temp_checkpoint("distilhubert")
        # exact: float32 under torch (before) and under ONNX Runtime (after; what CPUs without
        # bf16 run), then the default on this CPU (bf16 autocast where it has bf16: not exact)
        dhs = {"DistilHuBERT fp32 torch": C.counted(load_hf(ckpt, accel="fp32", backend="torch")),
               "DistilHuBERT fp32 ORT": C.counted(load_hf(ckpt, accel="fp32", backend="auto"))}
        dh = C.load_engine_model(ckpt, args.accel)
        dhs[f"DistilHuBERT {dh.accel.mode}"] = dh
        for name, m in dhs.items():
            held[name], trials[name] = streams_held(m, EngineConfig(window_s=10.0, hop_s=1.0), audio, seconds,
                                                    min(cap, 8), steps,
                                                    lambda r, name=name: print(trial_line(name, r), flush=True))
    rows = []
    for name, n in held.items():
        best = next((r for r in trials[name] if r["n"] == n), None)
        fail = min((r for r in trials[name] if not holds(r)), key=lambda r: r["n"], default=None)
        rows.append([name, n if n else "0", f"{100 * best['skipped_frac']:.1f} %" if best else "-",
                     f"{best['p95_latency_s']:.2f}" if best else "-", f"{100 * best['min_readouts']:.0f} %" if best else "-",
                     f"{fail['n']}: skipped {100 * fail['skipped_frac']:.0f} %, p95 {fail['p95_latency_s']:.1f} s" if fail
                     else "none up to the cap"])
        out["rows"].extend(trials[name])
    out["held"] = held
    if rows:
        print()
        print(C.table(rows, ["configuration", "streams held", "skipped", "p95 latency s", "fewest readouts",
                             "first N that failed"]))
        if "bundled before" in held and "bundled after" in held and held["bundled before"]:
            print(f"\nbundled model: {held['bundled after']} vs {held['bundled before']} streams held "
                  f"(x{held['bundled after'] / held['bundled before']:.1f}) in this run; {C.load_note().replace(' at start', ' now')}")
    if args.quality:
        q = quality(30.0 if args.quick else 90.0)
        out["quality"] = q
        print()
        print(C.table([[k, n, f"{mx:.4f}", f"{md:.4f}", fl] for k, n, mx, md, fl in q],
                      ["readouts compared (bundled, real music)", "windows", "max |dp|", "median max |dp|",
                       "genre leader changed"]))
    return out


if __name__ == "__main__":
    main()
