"""The kiosk screen: GET / of the network API serves a full-screen live genre display.

The page (ui/net/kiosk_assets/: index.html, kiosk.js, kiosk.css, capture.js) is static, shipped
as package data, and needs no CDN, no Gradio and no internet. It captures the microphone (no
speech processing) through an AudioWorklet and streams it to /v1/listen of the same server,
or with ?watch=NAME shows a named stream from /v1/watch and asks for no microphone. The
server embeds one thing in the page: the genre colours (ui/colours.py, the same definition
the Gradio page draws with) for this model's genre order, so a screen that only ever sees a
summary still colours it right; every stream's `ready` event carries its own as well.

Settings in the page's URL: token (passed on to the WebSocket), window, hop, smoothing, top_k,
watch, mic (a substring of the microphone's label). README: "Kiosk".

With ?compute=device (or the server's --kiosk-compute device) the page classifies on the device
itself and sends no audio: the files it needs (the engine in JavaScript, the model Worker, the
vendored onnxruntime-web, the ONNX graphs) are served under /kiosk/device/ (ui/net/kiosk_device.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

from stream.engine import StreamEngine
from ui.colours import SILENCE_COLOUR, genre_colours

from .kiosk_device import device_router
from .settings import ServerSettings

ASSETS = Path(__file__).with_name("kiosk_assets")
# the files the page may load, and their types: nothing else under the folder is served
FILES = {"kiosk.js": "text/javascript", "capture.js": "text/javascript", "kiosk.css": "text/css"}
# a restarted server may ship a new page: browsers check back instead of keeping an old copy
NO_STORE = {"Cache-Control": "no-cache"}


def genre_order(model, settings: ServerSettings) -> list[str]:
    """The genres a stream with the server's default settings ranks, in order."""
    engine = StreamEngine(model, settings.engine, background=False)
    try:
        return engine.genres
    finally:
        engine.close()


def page_html(model, settings: ServerSettings) -> str:
    config = {"colours": genre_colours(order := genre_order(model, settings), order), "silence": SILENCE_COLOUR}
    if getattr(settings, "kiosk_compute", "server") == "device":  # the default for / (?compute= overrides)
        config.update(compute="device", device_report=True)
    # "</" cannot end the script element early: the JSON sits inside <script type=application/json>
    embedded = json.dumps(config).replace("</", "<\\/")
    return (ASSETS / "index.html").read_text(encoding="utf-8").replace("{{CONFIG}}", embedded)


def kiosk_router(model, settings: ServerSettings) -> APIRouter:
    router = APIRouter()
    html = page_html(model, settings)  # once: the model and its genres are fixed for the app's life
    assets = {name: (ASSETS / name).read_bytes() for name in FILES}

    @router.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(html, headers=NO_STORE)

    @router.get("/favicon.ico")
    async def favicon():  # none: an empty answer keeps a browser's console free of 404s
        return Response(status_code=204)

    @router.get("/kiosk/{name}")
    async def asset(name: str):
        if name not in assets:
            raise HTTPException(404, f"no such kiosk file {name!r}")
        return Response(assets[name], media_type=FILES[name], headers=NO_STORE)

    router.include_router(device_router(model, settings))
    return router
