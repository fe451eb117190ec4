"""Live music-genre classification: a streaming engine for microphones and files.

    from stream import load_model, StreamEngine, EngineConfig
    model = load_model("auto")
    with StreamEngine(model, EngineConfig(hop_s=1.0)) as engine:
        engine.feed(chunk, 48000)       # any rate/dtype/channels; returns at once
        print(engine.latest)            # newest Result (smoothed scores, leading label)

Names are imported on first use, so `import stream.config` (a front end's --help) stays
free of numpy and torch.
"""
import importlib

_WHERE = {
    "EngineConfig": "config",
    "StreamEngine": "engine",
    "EngineStats": "records", "Result": "records", "SessionSummary": "records", "ShareTally": "records",
    "AudioDecodeError": "errors", "EngineClosedError": "errors", "ModelLoadError": "errors",
    "AudioInfo": "files", "FileAnalysis": "files", "analyze_file": "files", "decode_blocks": "files",
    "probe_file": "files", "read_segment": "files",
    "AudioModel": "models", "load_model": "models",
    "Engine": "protocol", "RemoteEngine": "client", "ServerError": "client",
}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # next time without __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
