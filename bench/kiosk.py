#!/usr/bin/env python3
"""The kiosk screen left running: the page (GET / of genre-serve) in headless Chromium with a
fake microphone playing real music, for --minutes, with one server restart in the middle.

    python -m bench.kiosk --minutes 60      # the target run
    python -m bench.kiosk --minutes 10      # what bench/README.md reports so far

Every minute: the page's JS heap after a forced garbage collection (CDP
HeapProfiler.collectGarbage, then Performance.getMetrics JSHeapUsedSize), the server's RSS
(psutil; the restarted server is a new process, so its growth is counted from its own start),
results received in that minute, the page's state. At the middle the server is killed (SIGKILL)
and started again on the same port: recovery = kill -> first result of the new server, and
new server listening -> first result (the page's backoff wait + the first window).

Targets (issue 20): heap and RSS growth <= 5 MB per hour (slope of a least-squares line over
the minutes after the first two), recovery <= 35 s, no minute without results except the
restart's. The fake microphone is the three asc-music tracks in a row (~11 min, looped by
Chromium). Figures go to stdout and, as JSON, to bench/results/kiosk.json.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/kiosk.json"))
    args = ap.parse_args()
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
