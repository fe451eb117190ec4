"""ui/options and ui/report: the flags and the wording every front end shares."""
import argparse
import json

import pytest

from stream.config import RANGES
from stream.engine import EngineConfig, EngineStats, Result, SessionSummary
from ui import options, report


def parse(argv, ranges=None):
    """(args, problems) of the shared flags; ranges=None: the ranges every front end uses."""
    p = argparse.ArgumentParser()
    options.add_model_flag(p)
    given = [] if ranges is None else [ranges]
    options.add_engine_flags(p, *given)
    args = p.parse_args(argv)
    return args, options.problems(args, *given)


def test_help_comes_from_the_settings_table():
    from stream.config import FACE_SETTINGS

    p = argparse.ArgumentParser()
    options.add_engine_flags(p)
    text = " ".join(p.format_help().split())
    for s in FACE_SETTINGS:
        assert " ".join(options.flag_help(s.key).split()) in text, s.key
        assert options.flag_help(s.key).startswith(s.help)
    assert "seconds of audio per classification" in text and "(default: the model's" not in text


def test_defaults_are_engine_config_defaults():
    args, bad = parse([])
    assert bad == [] and args.model == "auto"
    cfg, ref = options.engine_config(args), EngineConfig()
    assert (cfg.window_s, cfg.hop_s, cfg.smoothing_s, cfg.top_k, cfg.silence_dbfs, cfg.min_window_s) == \
        (ref.window_s, ref.hop_s, ref.smoothing_s, ref.top_k, ref.silence_dbfs, ref.min_window_s)


def test_flags_set_engine_config():
    args, bad = parse(["-w", "2", "--hop", "0.5", "-s", "0", "-k", "0", "--silence-dbfs", "-40", "-m", "musicnn"],
                      ranges={})
    assert bad == [] and args.model == "musicnn"
    cfg = options.engine_config(args)
    assert (cfg.window_s, cfg.hop_s, cfg.smoothing_s, cfg.top_k, cfg.silence_dbfs) == (2, 0.5, 0, 0, -40)
    assert cfg.min_window_s == 2  # a window shorter than the first readout's shortens that


def test_model_default_from_environment(monkeypatch):
    monkeypatch.setenv("GENRE_MODEL", "musicnn")
    p = argparse.ArgumentParser()
    options.add_model_flag(p, env="GENRE_MODEL")
    assert p.parse_args([]).model == "musicnn" and "GENRE_MODEL" in p.format_help()


def test_problems_name_each_flag():
    _, bad = parse(["-w", "0", "--hop", "-1", "-s", "-2", "-k", "-1", "--silence-dbfs", "3"])
    text = "; ".join(bad)
    for flag in ("--window 0", "--hop -1", "--smoothing -2", "--top-k -1", "--silence-dbfs 3"):
        assert flag in text, text


def test_ranges_are_enforced_only_when_given():
    argv = ["-w", "40", "-k", "11"]
    assert parse(argv, {})[1] == []
    _, bad = parse(argv)
    assert "--window 40 is outside 3..30 s" in bad and "--top-k 11 is outside 0..10 (0 = all)" in bad
    assert parse(["-k", "0"])[1] == []  # 0 = every genre, on every face
    _, bad = parse(["--hop", "-1"])
    assert bad == ["--hop -1 must be a positive number of seconds"]  # one message per flag
    p = argparse.ArgumentParser()
    options.add_engine_flags(p)
    assert "0 = all" in p.format_help() and "0-10" in p.format_help() and "3-30" in p.format_help()


# The one set of ranges (stream.config.SETTINGS' spans), and (value, accepted) for each setting: its edges and beyond
SPANS = {"window": (3, 30), "hop": (0.25, 5), "smoothing": (0, 20), "top_k": (0, 10)}
EDGES = {"window": [(1, False), (3, True), (30, True), (100, False)],
         "hop": [(0.1, False), (0.25, True), (5, True), (30, False)],
         "smoothing": [(0, True), (20, True), (25, False)],
         "top_k": [(0, True), (10, True), (11, False)]}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_every_front_end_accepts_the_same_ranges(name, capsys):
    """The page (app.py's flags and sliders), the terminal listener, genre-serve's flags and the
    network API's query take the same values of each setting and refuse the same others,
    each with a sentence naming the value and the range."""
    from starlette.datastructures import QueryParams

    from ui.net import api
    from ui.net import cli as serve_cli

    import cli_listen

    flag, (lo, hi) = "--" + name.replace("_", "-"), SPANS[name]
    for value, ok in EDGES[name]:
        argv = [flag, f"{value:g}"]
        # the page: its command line (app.py checks with options.problems)
        assert (parse(argv)[1] == []) is ok, (name, value)
        # the terminal listener
        try:
            cli_listen.parse_args(argv + ["--file", "x.wav"])
            refused = None
        except SystemExit as exc:
            refused = capsys.readouterr().err
            assert exc.code == 2
        assert (refused is None) is ok, (name, value, refused)
        if not ok:
            assert f"{flag} {value:g} is outside {lo:g}..{hi:g}" in refused, refused
        # genre-serve's flags
        args = serve_cli.build_parser().parse_args(argv)
        assert (options.problems(args) == []) is ok
        # the network API's query
        query = QueryParams({"sample_rate": "48000", name: f"{value:g}"})
        try:
            api.parse_stream_params(query, EngineConfig())
            refused = None
        except api.BadParameter as exc:
            refused = str(exc)
        assert (refused is None) is ok, (name, value, refused)
        if not ok:
            assert f"{name}={value:g} is out of range; accepted: {lo:g}..{hi:g}" in refused, refused
    # ... and the page's sliders span the same range (ui/web/page.py builds them from it)
    assert options.RANGES[name] == SPANS[name] == RANGES[name if name == "top_k" else f"{name}_s"]


@pytest.mark.parametrize("text", ["nan", "inf", "abc"])
def test_non_numbers_are_refused(text, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--hop", text])
    assert exc.value.code == 2 and repr(text) in capsys.readouterr().err


def test_duration():
    assert report.duration(0.04) == "0.0 s" and report.duration(42) == "42.0 s"
    assert report.duration(65.3) == "1:05.3" and report.duration(-1) == "0.0 s"


def test_model_error_speaks_of_the_flag():
    from stream.errors import ModelLoadError

    msg = report.model_error(ModelLoadError("nosuch/model", "the Hub is unreachable"), "-m")
    assert msg.startswith("Could not load model 'nosuch/model': the Hub is unreachable. Give -m a local")
    assert msg.endswith("or use the bundled offline model: -m musicnn.") and "load_model(" not in msg


def test_model_line():
    class M:
        name, notice = "musicnn", None
    assert report.model_line(M()) == "Model: musicnn."
    M.notice = "Model: bundled offline musicnn (no network)."
    assert report.model_line(M()) == M.notice


STATS = EngineStats(10, 1, 2, 0, None, 120.0, 150.0, 0.12, 0, 66.0, 0, 0.3)


def test_summary_text_and_markdown_say_the_same():
    s = SessionSummary(65.3, 2.0, {"electronic": 0.62, "techno": 0.3}, "electronic")
    plain = report.summary_text(s, STATS, "interrupted", overflows=0)
    md = report.summary_text(s, received_s=66.2, markdown=True)
    assert plain.startswith("Session summary (interrupted): 1:05.3 classified (2.0 s of it silent).")
    assert "Dominant genre: electronic." in plain and "electronic 62 %, techno 30 %" in plain
    assert plain.splitlines()[1] == ("Windows: 10 classified, 2 silent, 1 skipped; inference 120 ms mean "
                                     "(p95 150 ms), real-time factor 0.12, overflows 0.")
    assert md.startswith("**Session summary:** 1:06.2 of audio received, 1:05.3 classified")
    assert "Dominant genre: **electronic**." in md and "\n" not in md


def test_summary_without_readouts():
    empty = SessionSummary(0.0, 0.0, {}, None)
    assert report.summary_text(None) == "Session summary: nothing was heard."
    short = report.summary_text(empty, received_s=1.0, too_short="musicnn needs at least 2.98 s")
    assert short == ("Session summary: 1.0 s of audio received, too little for a readout "
                     "(musicnn needs at least 2.98 s).")
    silent = report.summary_text(SessionSummary(12.0, 12.0, {}, None))
    assert silent == "Session summary: 12.0 s classified, all of it silence."


def test_result_line_and_record():
    res = Result({"electronic": 0.5, "techno": 0.2}, {}, "electronic", 12.0, False, -20.04, 9.0, 130.0, 140.0)
    line = report.result_line(res, STATS, overflows=3)
    assert line.startswith("   12.0s  electronic") and "electronic 0.50  techno 0.20" in line
    assert "level  -20.0 dBFS" in line and line.endswith("silent 2  overflows 3")
    quiet = Result({}, {}, None, 13.0, True, -70.0, 9.0, 0.0, 0.0)
    assert "(silence)" in report.result_line(quiet)
    rec = json.loads(report.dumps(res.to_json(overflows=3)))
    assert rec["event"] == "result" and rec["label"] == "electronic" and rec["overflows"] == 3
    back = Result.from_json(rec, offset_s=1.0)  # the client's way back (raw scores do not travel)
    assert back.label == "electronic" and back.scores == res.scores and back.time_s == 13.0 and back.raw_scores == {}


def test_records_carry_wall_clock_time_through_a_round_trip():
    """`at`: when a readout was ready, ISO-8601 UTC; a network client keeps the server's."""
    res = Result({"rock": 0.5}, {}, "rock", 12.0, False, -20.0, 9.0, 130.0, 140.0, "Rock", {"Rock": 0.5},
                 at=1796217901.25)
    rec = res.to_json()
    assert rec["at"] == "2026-12-02T13:25:01.250Z" and rec["time_s"] == 12.0
    assert Result.from_json(json.loads(report.dumps(rec))).at == pytest.approx(1796217901.25, abs=1e-3)
    summary = SessionSummary(60.0, 0.0, {"rock": 1.0}, "rock").to_json(STATS, "end")
    from datetime import datetime

    assert summary["at"].endswith("Z") and datetime.fromisoformat(summary["at"].replace("Z", "+00:00"))


def test_result_line_and_summary_say_genre_then_style():
    res = Result({"techno": 0.3, "electronic": 0.25}, {}, "techno", 12.0, False, -20.0, 9.0, 130.0, 140.0,
                 "Electronic", {"Electronic": 0.3, "Pop": 0.1})
    assert report.result_line(res).startswith("   12.0s  Electronic (techno)  Electronic 0.30  Pop 0.10")
    s = SessionSummary(60.0, 0.0, {"techno": 0.5, "pop": 0.3, "electronic": 0.2}, "techno",
                       {"Electronic": 0.7, "Pop": 0.3}, "Electronic",
                       {"Electronic": {"techno": 0.5, "electronic": 0.2}, "Pop": {"pop": 0.3}})
    text = report.summary_text(s)
    assert "Dominant genre: Electronic." in text
    assert "Electronic 70 % (techno 50 %, electronic 20 %), Pop 30 % (pop 30 %)." in text


def test_terminal_panel_has_a_bar_per_genre_and_the_style_beside_the_leader():
    import io

    from rich.console import Console

    from ui.terminal.view import LiveView

    class Level:
        genre_of = {"techno": "Electronic", "electronic": "Electronic", "pop": "Pop"}
        has_styles = True

    class Engine:
        genres = ["Electronic", "Pop"]
        visible_labels = ["techno", "electronic", "pop"]
        genre_level = Level()

    class Source:
        title = "test"

    console = Console(file=io.StringIO(), width=80, height=24, force_terminal=True, color_system=None)
    view = LiveView(Engine(), Source(), console=console)
    view.latest = Result({"techno": 0.3, "electronic": 0.25, "pop": 0.1}, {}, "techno", 12.0, False, -20.0, 9.0,
                         130.0, 140.0, "Electronic", {"Electronic": 0.3, "Pop": 0.1})
    head, rows, more = view._scores(40)
    console.print(head)
    console.print(rows)
    lines = [l.rstrip() for l in console.file.getvalue().splitlines()]
    assert lines[0] == "Leading genre: Electronic   style: techno"
    assert lines[1].lstrip().startswith("Electronic █") and lines[1].endswith("0.30 techno")
    assert lines[2].lstrip().startswith("Pop █") and lines[2].endswith("0.10") and more is None


def test_one_colour_per_genre_for_every_front_end_and_run():
    """ui.colours: a fixed colour per genre name (any spelling), distinct among the bundled
    model's genres and GTZAN's; a genre it does not name gets the same colour in every process
    (no per-run hash), and the page draws with it."""
    import subprocess
    import sys
    from pathlib import Path

    from ui.colours import genre_colour, genre_colours
    from ui.web.render import genre_styles

    bundled = json.loads((Path(__file__).resolve().parents[1] / "stream/models/musicnn/genres.json").read_text())
    nine = genre_colours(bundled["genres"])
    assert len(set(nine.values())) == 9, nine
    gtzan = genre_colours(["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"])
    assert len(set(gtzan.values())) == 10, gtzan
    assert genre_colour("Hip hop") == genre_colour("hip-hop") == gtzan["hiphop"]
    assert genre_colour("Electronic") == genre_colour("electronic") == "#4e79a7"
    # the page: the same colours whatever the tab saw first
    order = bundled["genres"]
    one, two = genre_styles({}, ["Classical", "Electronic"], order), genre_styles({}, ["Pop"], order[::-1])
    assert one["Electronic"][0] == two["Electronic"][0] == nine["Electronic"]
    assert one["Classical"][0] == two["Classical"][0] == nine["Classical"]
    # a genre the table does not name: by its place in the model's order, or a stable hash
    assert genre_colour("zydeco", ["zydeco", "polka"]) != genre_colour("polka", ["zydeco", "polka"])
    code = "from ui.colours import genre_colour; print(genre_colour('zydeco'), genre_colour('Electronic'))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           cwd=Path(__file__).resolve().parents[1], env={"PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2", "3")}
    assert len(runs) == 1 and runs.pop().split() == [genre_colour("zydeco"), "#4e79a7"]


def test_terminal_panel_and_lines_say_when_a_server_connection_is_down(capsys):
    """cli_listen.py --server --reconnect: the panel marks the last readout as from before the
    outage; --json prints the connection events; the summary says how much audio was lost."""
    import io

    from rich.console import Console

    from ui.terminal.sources import LevelMeter
    from ui.terminal.view import Lines, LiveView

    class Engine:  # a RemoteEngine after one outage
        disconnects, lost_s = 1, 3.456
        genres, visible_labels, genre_level = [], [], None
        stats = EngineStats(4, 0, 0, 0, None, 120.0, 130.0, 0.12, 160000, 10.0, 0, 0.5)

        def summary(self):
            return SessionSummary(7.0, 0.0, {"techno": 1.0}, "techno", {"Electronic": 1.0}, "Electronic")

    class Source:
        title, seconds, overflows, dropped = "test", 10.0, 0, 0
        meter = LevelMeter()

    console = Console(file=io.StringIO(), width=80, height=24, force_terminal=True, color_system=None)
    view = LiveView(Engine(), Source(), console=console)
    view.show(Result({"techno": 0.3}, {}, "techno", 6.0, False, -20.0, 9.0, 130.0, 140.0, "Electronic",
                     {"Electronic": 0.3}))
    view.show({"event": "disconnected", "reason": "connection lost", "time_s": 6.5})
    with view:
        view.render()
    assert "disconnected — reconnecting" in console.file.getvalue()
    view.show({"event": "reconnected", "session": 2, "outage_s": 4.0, "lost_s": 3.46})
    assert view.link is None and view.latest.time_s == 6.0

    lines = Lines(Engine(), Source(), json_lines=True)
    lines.show({"event": "disconnected", "reason": "connection lost", "time_s": 6.5})
    lines.summary("end of file")
    out, err = capsys.readouterr()
    records = [json.loads(l) for l in out.splitlines()]
    assert records[0] == {"event": "disconnected", "reason": "connection lost", "time_s": 6.5}
    assert records[1]["event"] == "summary" and records[1]["disconnects"] == 1 and records[1]["audio_lost_s"] == 3.46
    assert "Disconnected 1 time: 3.5 s of audio lost while disconnected." in err


def test_live_plot_band_shows_no_music_apart_from_silence():
    """A stretch the engine read as "no music" (a voice) is its own grey in the page's lead band and
    legend, not "silence" and not a genre line."""
    import re

    from ui.colours import NO_MUSIC_COLOUR, SILENCE_COLOUR
    from ui.report import NO_MUSIC
    from ui.web.render import live_plot
    from ui.web.session import Readout

    sc = {"Electronic": 0.4, "Rock": 0.2}
    hist = [Readout(float(t), sc, NO_MUSIC if 20 < t <= 30 else "Electronic") for t in range(1, 41)]
    res = Result(scores=sc, raw_scores=sc, label="Electronic", time_s=40.0, silent=False, level_dbfs=-20.0,
                 window_s=9.0, inference_ms=50.0, latency_ms=60.0, genre="Electronic", genre_scores=sc)
    html = live_plot(hist, res, 5, 1.0, {})
    band = re.findall(r"<rect class='lead' data-genre='([^']*)' x='[\d.]+' y='[\d.]+' width='[\d.]+' "
                      r"height='[\d.]+' fill='([^']+)'", html)
    assert [g for g, _ in band] == ["Electronic", NO_MUSIC, "Electronic"], band
    assert band[1][1] == NO_MUSIC_COLOUR != SILENCE_COLOUR
    legend = re.findall(r"class='legend-item([^']*)'", html)
    assert " no-music" in legend and " silence" not in legend, legend
    assert f"data-genre='{NO_MUSIC}'><path" not in html  # no score line for it
