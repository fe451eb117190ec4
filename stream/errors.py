"""Exception types of the engine. Each message says what went wrong and what to do."""


class ModelLoadError(RuntimeError):
    """A model spec could not be turned into a working `AudioModel`.

    The message names the spec, the cause and what to try instead (a local checkpoint
    directory, or the bundled offline model ``"musicnn"``).
    """

    def __init__(self, spec, cause, advice=None):
        self.spec = spec
        self.cause = cause
        advice = advice or (
            "Pass a local checkpoint directory (a folder with config.json and model weights), "
            "or use the bundled offline model: load_model('musicnn')."
        )
        super().__init__(f"Could not load model {spec!r}: {cause}. {advice}")


class EngineClosedError(RuntimeError):
    """`feed` was called on an engine after `close()`."""


class AudioDecodeError(ValueError):
    """A file could not be decoded as audio (corrupt, empty, unknown format)."""
