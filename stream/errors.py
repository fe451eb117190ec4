"""Exception types of the engine. Each message says what went wrong and what to do."""


class ModelLoadError(RuntimeError):
    """A model spec could not be turned into a working `AudioModel`.

    The message names the spec, the cause and what to try instead (a local checkpoint
    directory, or the bundled offline model ``"musicnn"``). Front ends that phrase the advice
    their own way (a CLI says ``-m musicnn``, not ``load_model('musicnn')``) use the parts:
    `spec`, `cause`, `advice` (what to do, without API syntax) and `fallback` (a spec that
    loads offline, or None where it would not help, e.g. a bad device).
    """

    DEFAULT_ADVICE = ("Pass a local checkpoint directory (a folder with config.json and model weights) "
                      "or a Hugging Face Hub id that is cached or reachable")

    def __init__(self, spec, cause, advice=None, *, fallback="musicnn"):
        self.spec = spec
        self.cause = cause
        self.advice = (advice or self.DEFAULT_ADVICE).rstrip(".")
        self.fallback = fallback
        super().__init__(f"Could not load model {spec!r}: {cause}. {self.advice}"
                         + (f", or use the bundled offline model: load_model({fallback!r})." if fallback else "."))


class EngineClosedError(RuntimeError):
    """`feed` was called on an engine after `close()`."""


class AudioDecodeError(ValueError):
    """A file could not be decoded as audio (corrupt, empty, unknown format)."""
