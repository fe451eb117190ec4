"""Hygiene of Gradio's upload cache: the microphone is streamed as small WAV files that Gradio
writes to its cache, one folder per chunk. They are deleted as soon as they are decoded, and
those that never reached the page are swept up after a recording; nothing outside the cache
is ever touched."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from gradio.utils import get_upload_folder

log = logging.getLogger(__name__)

WAV_HEADER_BYTES = 44


def upload_root() -> Path:
    return Path(get_upload_folder()).resolve()  # GRADIO_TEMP_DIR, else <tmp>/gradio


def wav_header(path: str) -> bytes | None:
    """The file's 44-byte WAV header (None if it has none)."""
    try:
        with open(path, "rb") as f:
            head = f.read(WAV_HEADER_BYTES)
        return head if head[:4] == b"RIFF" and len(head) == WAV_HEADER_BYTES else None
    except OSError:
        return None


def wait_for_upload(path: str, timeout_s: float = 10.0) -> bool:
    """Whether the uploaded file `path` is there, waiting up to `timeout_s` for it.

    Gradio answers an upload with the file's place in its cache and moves it there in a
    background task after the answer: on a busy machine the stream event that names the file
    can reach the page's handler before the file does (it then read as "undecodable")."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def discard_upload(path: str) -> None:
    """Delete an uploaded file and its per-upload folder, if it lies in Gradio's upload cache."""
    try:
        p = Path(path).resolve()
        root = upload_root()
        if root not in p.parents:
            return
        p.unlink(missing_ok=True)
        if p.parent != root:
            p.parent.rmdir()  # fails harmlessly when another upload shares the folder
    except OSError:
        pass


def discard_when_it_arrives(path: str, give_up_s: float = 600.0, every_s: float = 1.0) -> None:
    """Delete an upload as soon as it reaches the cache: a chunk that `wait_for_upload` gave up on
    (a very busy machine) is not fed, but must not stay behind while the recording goes on."""
    deadline = time.monotonic() + give_up_s

    def check():
        if os.path.exists(path):
            discard_upload(path)
        elif time.monotonic() < deadline:
            _later(every_s, check)

    _later(every_s, check)


STALE_S = 30.0  # a chunk written this long before one just handled will never be handled


def sweep_stale_chunks(header: bytes, handled_mtime: float, stale_s: float = STALE_S) -> int:
    """Delete, while a recording goes on, its chunks (WAV `header`) written more than `stale_s`
    before the chunk just handled (`handled_mtime`): the page's queue takes chunks in order, one
    at a time, so such a chunk's stream event never came (its upload raced Record, or Gradio
    skipped it) and it would stay in the cache until the recording stops. Returns how many."""
    return _discard_chunks(header, written_before=handled_mtime - stale_s)


def _discard_chunks(header: bytes, written_from: float = 0.0, written_before: float = float("inf")) -> int:
    """Delete the cached chunks with this WAV header written in [written_from, written_before)."""
    n = 0
    for p in upload_root().glob("*/audio.wav"):
        try:
            if written_from <= p.stat().st_mtime < written_before and wav_header(str(p)) == header:
                discard_upload(str(p))
                n += 1
        except OSError:
            pass
    return n


def sweep_orphan_chunks(first_chunk: tuple[bytes, float] | None, delay_s: float = 5.0,
                        busy: Callable[[], set | None] = lambda: set(), give_up_s: float = 3600.0) -> None:
    """Delete, after `delay_s`, a recording's chunks that were uploaded but never handled.

    Gradio's recorder uploads a chunk, then skips the stream event when recording stopped
    meanwhile: that chunk would stay in the cache. Every chunk of one recording starts with the
    same WAV header (the browser's first chunk's), so `first_chunk` (that header and the wall
    time it arrived) finds them: cached WAV files with this header written since.

    Another recording in the same format (another tab, or this tab's next recording) has the
    same header, and its chunks may wait in the cache for their turn on a busy machine:
    deleting them would lose its audio ("could not be read"). So the sweep waits while `busy()`
    (the headers of the recordings streaming now; None: one whose format is not known yet)
    holds this header, trying again every `delay_s`, for at most `give_up_s` (Gradio's own
    cache cleaning takes what is left after that)."""
    if first_chunk is None:
        return
    header, since = first_chunk
    deadline = time.monotonic() + give_up_s

    def sweep():
        streaming = busy()
        if streaming is None or header in streaming:
            if time.monotonic() < deadline:
                _later(delay_s, sweep)
            return
        _discard_chunks(header, written_from=since - 1)

    _later(delay_s, sweep)


def _later(delay_s: float, fn) -> None:
    t = threading.Timer(delay_s, fn)
    t.daemon = True
    t.start()


class BrowserGone(logging.Filter):
    """A browser that goes away in the middle of an upload (a closed tab's last microphone
    chunk) is not a server error: one INFO line instead of uvicorn's traceback. Attach it to
    the "uvicorn.error" logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if type(exc).__name__ == "ClientDisconnect":
                log.info("a browser went away during an upload")
                return False
            exc = exc.__cause__ or exc.__context__
        return True
