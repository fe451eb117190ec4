"""ui/options and ui/report: the flags and the wording every front end shares."""
import argparse
import json

import pytest

from stream.engine import EngineConfig, EngineStats, Result, SessionSummary
from ui import options, report


def parse(argv, ranges=None):
    p = argparse.ArgumentParser()
    options.add_model_flag(p)
    options.add_engine_flags(p, ranges)
    args = p.parse_args(argv)
    return args, options.problems(args, ranges)


def test_help_comes_from_engine_config_docs():
    p = argparse.ArgumentParser()
    options.add_engine_flags(p)
    text = p.format_help()
    assert "seconds of audio per classification" in text  # EngineConfig.window_s
    assert "EMA time constant in seconds (0 = off)" in text
    assert "(default: the model's" not in text  # the flag states its default once
    for name in ("window_s", "hop_s", "smoothing_s", "top_k"):
        assert options.field_help(name) != name, name


def test_defaults_are_engine_config_defaults():
    args, bad = parse([])
    assert bad == [] and args.model == "auto"
    cfg, ref = options.engine_config(args), EngineConfig()
    assert (cfg.window_s, cfg.hop_s, cfg.smoothing_s, cfg.top_k, cfg.silence_dbfs, cfg.min_window_s) == \
        (ref.window_s, ref.hop_s, ref.smoothing_s, ref.top_k, ref.silence_dbfs, ref.min_window_s)


def test_flags_set_engine_config():
    args, bad = parse(["-w", "2", "--hop", "0.5", "-s", "0", "-k", "0", "--silence-dbfs", "-40", "-m", "musicnn"])
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
    argv = ["-w", "40", "-k", "0"]
    assert parse(argv)[1] == []
    _, bad = parse(argv, options.PAGE_RANGES)
    assert "--window 40 is outside 3..30" in bad and "--top-k 0 is outside 1..10" in bad
    _, bad = parse(["--hop", "-1"], options.PAGE_RANGES)
    assert bad == ["--hop -1 must be a positive number of seconds"]  # one message per flag
    p = argparse.ArgumentParser()
    options.add_engine_flags(p, options.PAGE_RANGES)
    assert "0 = all" not in p.format_help() and "1-10" in p.format_help()


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


def test_terminal_panel_and_lines_say_when_a_server_connection_is_down(capsys):
    """cli_listen.py --server --reconnect: the panel marks the last readout as from before the
    outage; --json prints the connection events; the summary says how much audio was lost."""
    import io

    from rich.console import Console

    from ui.terminal.sources import LevelMeter
    from ui.terminal.view import Lines, LiveView

    class Engine:  # a RemoteEngine after one outage
        disconnects, lost_s = 1, 3.456
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
