#!/usr/bin/env python3
"""The kiosk screen left running: the page (GET / of genre-serve) in headless Chromium with a
fake microphone playing real music, for --minutes, with one server restart in the middle.

    python -m bench.kiosk --minutes 60      # the target run
    python -m bench.kiosk --minutes 10      # a shorter look

Every minute: the page's JS heap after a forced garbage collection (CDP
HeapProfiler.collectGarbage, then Performance.getMetrics JSHeapUsedSize), the server's RSS
(psutil; the restarted server is a new process, so its growth is counted from its own start),
results received in that minute, the page's state. At the middle the server is killed (SIGKILL)
and started again on the same port: recovery = kill -> first result of the new server, split
into kill -> /readyz 200 (the server's own start), ready -> the page's new session (its readiness
probe) and ready -> first result (+ the first window). The load average is sampled every minute.

Targets (issue 20): heap and RSS growth <= 5 MB per hour (slope of a least-squares line over
the minutes after the first two), recovery <= 35 s, no minute without results except the
restart's. The fake microphone is the three asc-music tracks in a row (~11 min, looped by
Chromium). Figures go to stdout and, as JSON, to bench/results/kiosk.json.

    python bench/kiosk.py --device --minutes 30   # device mode (?compute=device)

--device: the screen classifies in the browser (onnxruntime-web in a Worker). Measured: the CPU of all of
Chromium's processes per minute (psutil, user + system time: one screen, so this is the CPU per screen), at a 1 s
hop, with the page's own readouts per minute and its state (a slow device shows its fallback there); Chromium's
total RSS and the page's JS heap per minute (growth as a least-squares slope); and the time from opening the
page to the first genre, cold (a fresh browser profile: runtime and model downloaded) and cached (the same
profile, reloaded: the HTTP cache revalidates). The server only serves files; its genre_audio_seconds_total is
read at the end (0: it heard nothing). Targets (issue 36): CPU <= 40 % of one core, memory flat, first genre
<= 5 s cached, <= 10 s cold. Figures to bench/results/kiosk-device.json.

    python -m bench.kiosk --device --first 4 --compare DIR   # only the first genre, interleaved with DIR's server
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
from harness.browser import browser_page
from harness.music import at_level, loopable, music_excerpt, write_wav
from harness.proc import free_port
from harness.server import ServerProcess

TRACKS = [("machine_wars", 290), ("frontiers", 200), ("time_to_strike", 180)]  # (name, seconds used): 11 min
STATE_JS = "() => ({results: kiosk.results, state: kiosk.state, connects: kiosk.connects, micRequests: kiosk.micRequests})"


def slope_mb_per_hour(minutes: list[float], values: list[float]) -> float | None:
    if len(minutes) < 3:
        return None
    return float(np.polyfit(minutes, values, 1)[0] * 60 / 1e6)


def rss(srv) -> int:
    import psutil

    return psutil.Process(srv.proc.pid).memory_info().rss


def sample(page, cdp, srv) -> dict:
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {"heap": metrics["JSHeapUsedSize"], "rss": rss(srv), "load1": round(os.getloadavg()[0], 2),
            **page.evaluate(STATE_JS)}


def ready(port) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def restart(page, srv, port) -> tuple[ServerProcess, dict]:
    before = page.evaluate(STATE_JS)["results"]
    srv.stop(kill=True)
    t_kill = time.monotonic()
    saw_reconnecting = False
    srv = ServerProcess(port=port).wait_ready(300)
    t_up = time.monotonic()
    t_ready = ready_wall = None
    while True:
        if t_ready is None and ready(port):  # readiness as an operator's probe sees it (GET /readyz)
            t_ready, ready_wall = time.monotonic(), time.time()
        st = page.evaluate(STATE_JS)
        saw_reconnecting |= st["state"] == "reconnecting"
        if st["results"] > before and t_ready is not None:
            break
        if time.monotonic() - t_kill > 600:
            raise RuntimeError("the page did not recover within 10 minutes")
        page.wait_for_timeout(50)
    t_back = time.monotonic()
    reconnected = page.evaluate("kiosk.readyAt")  # the page's wall clock when the new session said ready
    return srv, {"kill_to_result_s": round(t_back - t_kill, 1), "server_up_to_result_s": round(t_back - t_up, 1),
                 "server_ready_to_result_s": round(t_back - t_ready, 1),
                 "server_ready_to_reconnected_s": round(reconnected / 1000 - ready_wall, 2) if reconnected else None,
                 "server_down_s": round(t_ready - t_kill, 1), "reconnecting_shown": saw_reconnecting}


def chromium_procs(exclude: set[int]) -> list:
    """Chromium's processes: the descendants of this process (Playwright's driver starts the browser) that
    are not the server's."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in exclude and "chrom" in p.name().lower():
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def chromium_usage(exclude: set[int], by_type: dict | None = None) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of Chromium's processes now; by_type (if given) gets the RSS per process
    type (browser, renderer, gpu-process, utility, ...: where a growth sits)."""
    import psutil

    cpu = mem = 0
    for p in chromium_procs(exclude):
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss = p.memory_info().rss
            mem += rss
            if by_type is not None:
                kind = next((a.split("=", 1)[1] for a in p.cmdline() if a.startswith("--type=")), "browser")
                by_type[kind] = by_type.get(kind, 0) + rss
        except psutil.NoSuchProcess:
            pass
    return cpu, mem


def first_genre_s(page, url: str) -> float:
    t0 = time.monotonic()
    page.goto(url)
    page.wait_for_function("() => window.kiosk && kiosk.results >= 1 && kiosk.lastResults.at(-1).genre",
                           timeout=300_000, polling=50)
    return round(time.monotonic() - t0, 2)


TIMELINE_JS = "() => (kiosk.device && kiosk.device.timeline) || null"


def run_first(args) -> int:
    """--first N: only the time to the first genre. N rounds; each opens the page in a fresh browser profile
    (cold), then reloads it twice (cached). --compare DIR: each round does the same against a server run
    from another checkout (e.g. the previous commit), interleaved, so both see the same load. Medians, and
    the page's own timeline (ms from navigation: worker created, microphone's first block, model loaded)."""
    from playwright.sync_api import sync_playwright

    runs = {"this": {"cold": [], "cached": [], "timelines": []}}
    if args.compare:
        runs["compare"] = {"cold": [], "cached": [], "timelines": []}
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        # steady music from its first second (the track's intro reads "no music" to both detectors for 1-7 s)
        wav = write_wav(Path(tmp) / "music.wav", at_level(loopable(music_excerpt("machine_wars", 40, 60)), -20.0))
        servers = {"this": ServerProcess().wait_ready(300)}
        if args.compare:
            servers["compare"] = ServerProcess(root=Path(args.compare)).wait_ready(300)
        loads = [os.getloadavg()[0]]
        try:
            with sync_playwright() as p:
                for i in range(args.first):
                    for name, srv in servers.items():
                        r = runs[name]
                        url = f"http://127.0.0.1:{srv.port}/?compute=device&hop=1&adapt=0"
                        with browser_page(p, wav, viewport=(1920, 1080)) as page:
                            r["cold"].append(first_genre_s(page, url))
                            r["timelines"].append({"cold": True, **(page.evaluate(TIMELINE_JS) or {})})
                            for _ in range(2):
                                r["cached"].append(first_genre_s(page, url))
                                r["timelines"].append({"cold": False, **(page.evaluate(TIMELINE_JS) or {})})
                        print(f"round {i + 1} {name}: cold {r['cold'][-1]} s, cached {r['cached'][-2:]} s, "
                              f"load {os.getloadavg()[0]:.2f}", flush=True)
                    loads.append(os.getloadavg()[0])
        finally:
            for srv in servers.values():
                srv.stop()
    report = {"mode": "device-first-genre", "cpu": platform_cpu(), "load1": [round(x, 2) for x in loads],
              "compare": args.compare}
    for name, r in runs.items():
        report[name] = {**r, "cold_median_s": float(np.median(r["cold"])), "cached_median_s": float(np.median(r["cached"]))}
    out = Path(args.out if args.out else ROOT / "bench/results/kiosk-device-first.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    for name in runs:
        print(f"{name}: cold median {report[name]['cold_median_s']} s {report[name]['cold']}, "
              f"cached median {report[name]['cached_median_s']} s {report[name]['cached']}")
        for t in runs[name]["timelines"][:3]:
            print("  ", {k: round(v) if isinstance(v, float) else v for k, v in t.items()})
    print(f"load average {report['load1']}")
    return 0


def run_device(args) -> int:
    import urllib.request

    import psutil
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        x = np.concatenate([music_excerpt(name, 0, secs) for name, secs in TRACKS])
        wav = write_wav(Path(tmp) / "music.wav", at_level(loopable(x), -20.0))
        srv = ServerProcess().wait_ready(300)
        exclude = {srv.proc.pid, *(c.pid for c in psutil.Process(srv.proc.pid).children(recursive=True))}
        # adapt=0: the figure is for a 1 s hop with both networks, even where this machine falls behind
        url = f"http://127.0.0.1:{srv.port}/?compute=device&hop=1&adapt=0"
        rows = []
        try:
            with sync_playwright() as p, browser_page(p, wav, viewport=(1920, 1080)) as page:
                cold = first_genre_s(page, url)
                cached = first_genre_s(page, url)  # the same profile: its HTTP cache holds runtime and model
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                t0 = time.monotonic()
                cpu0, _ = chromium_usage(exclude)
                last = {"results": page.evaluate("kiosk.results")}
                for minute in range(1, int(args.minutes) + 1):
                    while time.monotonic() < t0 + 60 * minute:
                        page.wait_for_timeout(1000)
                    kinds = {}
                    cpu, mem = chromium_usage(exclude, kinds)
                    cdp.send("HeapProfiler.collectGarbage")
                    heap = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["JSHeapUsedSize"]
                    st = page.evaluate("() => ({results: kiosk.results, state: document.getElementById('state')"
                                       ".textContent, infer: kiosk.device.engine.stats.inferMs.slice(-5), "
                                       "skipped: kiosk.device.engine.stats.skipped, hop: kiosk.device.engine.c.hop_s})")
                    row = {"minute": minute, "cpu_share_of_one_core": round((cpu - cpu0) / 60.0, 3), "rss": mem,
                           "rss_by_type": kinds,
                           "heap": heap, "results_in_minute": st["results"] - last["results"], "state": st["state"],
                           "hop_s": st["hop"], "skipped": st["skipped"],
                           "infer_ms_median": round(float(np.median(st["infer"])), 1) if st["infer"] else None,
                           "load1": round(os.getloadavg()[0], 2)}
                    cpu0, last = cpu, st
                    rows.append(row)
                    print(f"min {minute:3d}: Chromium CPU {100 * row['cpu_share_of_one_core']:5.1f} % of a core  "
                          f"RSS {mem / 1e6:7.1f} MB  heap {heap / 1e6:6.2f} MB  results {row['results_in_minute']:3d}  "
                          f"model {row['infer_ms_median']} ms/window  {st['state']}  load {row['load1']}  "
                          + " ".join(f"{k} {v / 1e6:.0f}" for k, v in sorted(kinds.items())), flush=True)
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=30) as r:
                audio_s = [float(line.split()[1]) for line in r.read().decode().splitlines()
                           if line.startswith("genre_audio_seconds_total ")][0]
        finally:
            srv.stop()
    steady = [r for r in rows if r["minute"] > 1]
    report = {
        "mode": "device", "minutes": args.minutes, "samples": rows, "first_genre_cold_s": cold,
        "first_genre_cached_s": cached,
        "cpu_share_of_one_core_median": float(np.median([r["cpu_share_of_one_core"] for r in rows])) if rows else None,
        "rss_growth_mb_per_hour": slope_mb_per_hour([r["minute"] for r in steady], [r["rss"] for r in steady]),
        "heap_growth_mb_per_hour": slope_mb_per_hour([r["minute"] for r in steady], [r["heap"] for r in steady]),
        "server_genre_audio_seconds_total": audio_s,
        "cpu": platform_cpu(), "load1_mean": round(float(np.mean([r["load1"] for r in rows])), 1) if rows else None,
    }
    out = Path(args.out if args.out else ROOT / "bench/results/kiosk-device.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    return 0


def platform_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", default=None, help="JSON report (default bench/results/kiosk.json, kiosk-device.json)")
    ap.add_argument("--device", action="store_true", help="device mode: the screen runs the model (see above)")
    ap.add_argument("--first", type=int, default=0, metavar="N",
                    help="with --device: only the first genre, N cold opens each reloaded twice (medians)")
    ap.add_argument("--compare", default=None, metavar="DIR",
                    help="with --first: also (interleaved) a server run from the checkout in DIR")
    args = ap.parse_args()
    if args.device and args.first:
        return run_first(args)
    if args.device:
        return run_device(args)
    args.out = args.out or str(ROOT / "bench/results/kiosk.json")
    import psutil  # noqa: F401  (fail early: the dev extra has it)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        x = np.concatenate([music_excerpt(name, 0, secs) for name, secs in TRACKS])
        wav = write_wav(Path(tmp) / "music.wav", at_level(loopable(x), -20.0))
        port = free_port()
        srv = ServerProcess(port=port).wait_ready(300)
        rows, recovery, rss_base = [], None, None
        try:
            with sync_playwright() as p, browser_page(p, wav, viewport=(1920, 1080)) as page:
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto(f"http://127.0.0.1:{port}/")
                t0 = time.monotonic()
                last = {"results": 0}
                restart_at = args.minutes / 2
                minute = 0
                while minute < args.minutes:
                    minute += 1
                    while time.monotonic() < t0 + 60 * minute:
                        page.wait_for_timeout(1000)
                    s = sample(page, cdp, srv)
                    s.update(minute=minute, results_in_minute=s["results"] - last["results"], server=1 if recovery is None else 2)
                    rows.append(s)
                    last = s
                    print(f"min {minute:3.0f}: heap {s['heap'] / 1e6:7.2f} MB  server RSS {s['rss'] / 1e6:7.1f} MB  "
                          f"results {s['results_in_minute']:3d}  state {s['state']}  load {s['load1']}", flush=True)
                    if recovery is None and minute >= restart_at:
                        srv, recovery = restart(page, srv, port)
                        print(f"restart: {recovery}", flush=True)
                        rss_base = minute
                        # the restart's own minute runs on from here
        finally:
            srv.stop()

    steady = [r for r in rows if r["minute"] > 2]
    heap = slope_mb_per_hour([r["minute"] for r in steady], [r["heap"] for r in steady])
    rss_rows = [r for r in steady if r["server"] == 1]
    rss_rows2 = [r for r in rows if rss_base is not None and r["minute"] > rss_base + 2]
    report = {
        "minutes": args.minutes, "samples": rows, "recovery": recovery,
        "heap_growth_mb_per_hour": heap,
        "rss_growth_mb_per_hour_first_server": slope_mb_per_hour([r["minute"] for r in rss_rows], [r["rss"] for r in rss_rows]),
        "rss_growth_mb_per_hour_second_server": slope_mb_per_hour([r["minute"] for r in rss_rows2], [r["rss"] for r in rss_rows2]),
        "minutes_without_results": [r["minute"] for r in rows if r["results_in_minute"] == 0],
        "mic_requests": rows[-1]["micRequests"] if rows else None,
        "load1_mean": round(float(np.mean([r["load1"] for r in rows])), 1) if rows else None,
        "load1_max": max((r["load1"] for r in rows), default=None),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
