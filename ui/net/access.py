"""Who may use the server: the token and browser-origin checks, shared by the WebSocket route
(ui/net/api.py) and the HTTP routes for operators (ui/net/ops.py).

The token travels as `Authorization: Bearer TOKEN` or `?token=TOKEN` on every route alike
(browsers cannot set headers on a WebSocket, so the query form must stay); it is compared in
constant time and never logged (ui/net/logs.py hides `token=` in every line).
"""
from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from .settings import ServerSettings


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


def require_token(request: Request) -> None:
    """FastAPI dependency of the routes that say more than "alive": 401 without the token
    (when the server has one), with the same two ways to pass it as the WebSocket."""
    settings: ServerSettings = request.app.state.settings
    if not token_ok(settings, request.headers, request.query_params):
        raise HTTPException(status_code=401, detail="a valid token is required: send 'Authorization: Bearer "
                                                    "TOKEN' or the query parameter token=TOKEN",
                            headers={"WWW-Authenticate": "Bearer"})
