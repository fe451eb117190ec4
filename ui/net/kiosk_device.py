"""The kiosk's device mode, server side: the static files a screen needs to classify by itself.

    /kiosk/device/{engine,device,worker}.js   the engine in JavaScript, the page's glue, the model Worker
    /kiosk/device/ort/{name}                  onnxruntime-web, vendored by tools/vendor_ort_web.py
    /kiosk/device/model/{name}                the ONNX graphs and model.json (ui/net/device_model.py)

The graphs are built on the first request (the networks' export is cached on disk by
stream/models/backends.py) and kept in memory. Every file is sent with an ETag and
"Cache-Control: no-cache": a screen revalidates (a 304, no body) instead of downloading the
~22 MB again, and never keeps a model older than the server's.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from .settings import ServerSettings

DEVICE_DIR = Path(__file__).with_name("kiosk_assets") / "device"
ORT_DIR = DEVICE_DIR / "ort"
SCRIPTS = ("engine.js", "device.js", "worker.js")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".json": "application/json", "": "text/plain; charset=utf-8"}


def content_type(name: str) -> str:
    return TYPES.get(Path(name).suffix, "application/octet-stream")


class DeviceFiles:
    """The files of device mode, loaded once (the model's on first use, in a thread)."""

    def __init__(self, model, settings: ServerSettings):
        self.model, self.settings = model, settings
        self._model_files: dict[str, bytes] | None = None
        self._error: str | None = None
        self._lock = threading.Lock()
        self._static: dict[Path, bytes] = {}

    def static(self, folder: Path, name: str) -> bytes:
        path = folder / name
        if path in self._static:
            return self._static[path]
        try:
            body = self._static[path] = path.read_bytes()
            return body
        except OSError:
            if folder == ORT_DIR:
                raise HTTPException(503, "onnxruntime-web is not installed with this server: run "
                                         "python tools/vendor_ort_web.py (scripts/setup.sh does)") from None
            raise HTTPException(404, f"no such file {name!r}") from None

    def model_files(self) -> dict[str, bytes]:
        with self._lock:
            if self._model_files is None and self._error is None:
                from .device_model import DeviceModeUnavailable, device_files  # inside: onnx and torch, on first use
                try:
                    self._model_files = device_files(self.model, self.settings.engine)
                except (DeviceModeUnavailable, ImportError) as exc:
                    self._error = str(exc)
            if self._error:
                raise HTTPException(404, f"device mode is not available: {self._error}")
            return self._model_files


def _etag(body: bytes, _seen: dict = {}) -> str:  # noqa: B006 (a cache: the bodies are few and fixed)
    key = id(body)
    if key not in _seen or _seen[key][0] is not body:
        _seen[key] = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return _seen[key][1]


def _send(request: Request, body: bytes, name: str) -> Response:
    etag = _etag(body)
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=content_type(name), headers=headers)


def device_router(model, settings: ServerSettings) -> APIRouter:
    router = APIRouter()
    files = DeviceFiles(model, settings)

    @router.get("/kiosk/device/ort/{name}")
    async def ort_file(name: str, request: Request):
        if name not in ORT_FILES:
            raise HTTPException(404, f"no such file {name!r}")
        return _send(request, files.static(ORT_DIR, name), name)

    @router.get("/kiosk/device/model/{name}")
    async def model_file(name: str, request: Request):
        built = await asyncio.to_thread(files.model_files)
        if name not in built:
            raise HTTPException(404, f"no such model file {name!r}")
        return _send(request, built[name], name)

    @router.get("/kiosk/device/{name}")
    async def script(name: str, request: Request):
        if name not in SCRIPTS:
            raise HTTPException(404, f"no such file {name!r}")
        return _send(request, files.static(DEVICE_DIR, name), name)

    return router
