"""Who may use the network API, and every refusal it gives, decided in one place.

A refusal has a reason (one of REFUSALS: origin, token, bad_parameter, capacity, draining,
name_in_use, watchers), a close code, and a message that says what to do. `refuse` is the one
function that sends one, counts it by reason (the app's Prometheus counter
genre_rejected_total, ui/net/metrics.py) and logs it (a `reject` event, ui/net/logs.py),
whichever endpoint refuses. The token travels as `Authorization: Bearer TOKEN` or `?token=TOKEN`
on every route alike (browsers cannot set headers on a WebSocket, so the query form must stay).

How a refusal reaches the client depends on when, and to whom:

- At the handshake (origin, token): a client without an Origin header (Python, any
  non-browser client) gets the HTTP status (401, 403) with the message as the body, as
  before. A browser always sends Origin, and a failed handshake shows it only "closed 1006",
  the same as a server that is down: a kiosk page would retry a wrong token forever. So a
  browser's handshake is accepted and closed at once with 4401 / 4403 (the HTTP status +
  4000) and the message as the close reason; nothing it sends is read.
- After the handshake: an `error` event (message, reason, retry), then the close code with
  "REASON: message" as the close reason (cut to the 123 bytes a close frame holds).

capacity, draining and watchers close with 1013 (try again later / elsewhere); the others are permanent.
"""
from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketState

from .logs import event
from .settings import ServerSettings

log = logging.getLogger("ui.net.server")


@dataclass(frozen=True)
class Refusal:
    reason: str  # the name it is counted (and logged) by
    close_code: int
    http_status: int | None = None  # the handshake answer to a client without Origin
    retry: bool = False  # worth trying again later


ORIGIN = Refusal("origin", 4403, 403)
TOKEN = Refusal("token", 4401, 401)
BAD_PARAMETER = Refusal("bad_parameter", 1008)
CAPACITY = Refusal("capacity", 1013, retry=True)  # --max-streams reached
DRAINING = Refusal("draining", 1013, retry=True)  # shutting down: connect elsewhere
NAME_IN_USE = Refusal("name_in_use", 1008)
WATCHERS = Refusal("watchers", 1013, retry=True)
REFUSALS = {r.reason: r for r in (ORIGIN, TOKEN, BAD_PARAMETER, CAPACITY, DRAINING, NAME_IN_USE, WATCHERS)}
# what a request without the right token is told, on every route
TOKEN_REQUIRED = "a valid token is required: send 'Authorization: Bearer TOKEN' or the query parameter token=TOKEN"


def token_of(headers, query) -> str | None:
    """The token a request carries: the Bearer header first, else ?token=."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get("token")


def token_ok(settings: ServerSettings, headers, query) -> bool:
    if not settings.token:
        return True
    given = token_of(headers, query)
    # constant time: the comparison must not reveal how many leading characters matched
    return given is not None and hmac.compare_digest(given.encode(), settings.token.encode())


def origin_ok(settings: ServerSettings, headers) -> bool:
    """Browsers always send Origin on a WebSocket handshake; other clients usually do not.
    Without an allow-list entry, any page the user visits could otherwise open a stream to a
    server running on their machine."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if "*" in settings.allow_origins or origin.rstrip("/") in settings.allow_origins:
        return True
    host = headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()  # a page of this server


def client_of(ws) -> str:
    """"host:port" of a connection's peer, as the logs name it ("?" when unknown)."""
    c = ws.client
    return f"{c.host}:{c.port}" if c else "?"


def fit_close(text: str) -> str:
    """`text` cut to fit a close frame's reason (123 bytes of UTF-8, not characters)."""
    return text.encode()[:123].decode(errors="ignore")


def close_reason(refusal: Refusal, message: str) -> str:
    """"REASON: message", cut to fit a close frame."""
    return fit_close(f"{refusal.reason}: {message}")


async def refuse(ws: WebSocket, refusal: Refusal, message: str) -> None:
    """Refuse `ws` (accepted or not yet) for `refusal`, saying `message`; see the module doc."""
    ops = getattr(getattr(ws.scope.get("app"), "state", None), "ops", None)  # (ui/net/ops.py, when mounted)
    if ops is not None:
        ops.metrics.reject(refusal.reason)
    client = client_of(ws)
    http = ws.application_state == WebSocketState.CONNECTING and refusal.http_status and "origin" not in ws.headers
    event(log, "reject", message, level=logging.WARNING if refusal.http_status else logging.INFO,
          client=client, reason=refusal.reason, code=refusal.http_status if http else refusal.close_code)
    if ws.application_state == WebSocketState.CONNECTING:
        if http:
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                headers = {"WWW-Authenticate": "Bearer"} if refusal.http_status == 401 else None
                return await ws.send_denial_response(Response(message + "\n", status_code=refusal.http_status,
                                                              headers=headers, media_type="text/plain"))
            return await ws.close(code=1008)  # servers without the denial extension answer 403
        await ws.accept()
    if ws.application_state != WebSocketState.CONNECTED:
        return
    try:
        record = {"event": "error", "message": message, "reason": refusal.reason}
        if refusal.retry:
            record["retry"] = True
        await ws.send_text(json.dumps(record))
        await ws.close(code=refusal.close_code, reason=close_reason(refusal, message))
    except Exception:  # the client is gone already
        pass


async def check_access(ws: WebSocket, settings: ServerSettings) -> bool:
    """The origin and token checks every WebSocket endpoint makes first; False: refused."""
    if not origin_ok(settings, ws.headers):
        await refuse(ws, ORIGIN, f"origin {ws.headers.get('origin')!r} is not allowed; "
                                 "start the server with --allow-origin ORIGIN")
        return False
    if not token_ok(settings, ws.headers, ws.query_params):
        await refuse(ws, TOKEN, TOKEN_REQUIRED)
        return False
    return True


def require_token(request: Request) -> None:
    """FastAPI dependency of the routes that say more than "alive": 401 without the token
    (when the server has one), with the same two ways to pass it as the WebSocket."""
    settings: ServerSettings = request.app.state.settings
    if not token_ok(settings, request.headers, request.query_params):
        raise HTTPException(status_code=401, detail=TOKEN_REQUIRED, headers={"WWW-Authenticate": "Bearer"})
