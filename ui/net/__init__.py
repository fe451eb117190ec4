"""The network front end: the genre readout over a WebSocket, for kiosks in any language.

`api` (the FastAPI app: protocol, access checks, one engine per connection), `cli` (its command
line, `genre-serve` / `python -m ui.net`), `ray_app` (the model as a Ray Serve deployment and
the app as its ingress), `ray_cli` (`genre-serve-ray`: deploy a model on Ray Serve), `client`
(`RemoteEngine`, the Python client that looks like a StreamEngine). Imports run cli -> ray_app
-> api -> stream/; the client only needs the engine. Importing this package imports nothing.
"""
