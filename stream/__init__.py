"""Live music-genre classification: a streaming engine for microphones and files.

    from stream import load_model, StreamEngine, EngineConfig
    model = load_model("auto")
    with StreamEngine(model, EngineConfig(hop_s=1.0)) as engine:
        engine.feed(chunk, 48000)       # any rate/dtype/channels; returns at once
        print(engine.latest)            # newest Result (smoothed scores, leading label)
"""
from .engine import EngineConfig, EngineStats, Result, SessionSummary, StreamEngine
from .errors import AudioDecodeError, EngineClosedError, ModelLoadError
from .files import AudioInfo, FileAnalysis, analyze_file, decode_blocks, probe_file
from .models import AudioModel, load_model

__all__ = [
    "AudioModel", "load_model", "StreamEngine", "EngineConfig", "EngineStats", "Result", "SessionSummary",
    "analyze_file", "FileAnalysis", "decode_blocks", "probe_file", "AudioInfo", "ModelLoadError", "EngineClosedError", "AudioDecodeError",
]
