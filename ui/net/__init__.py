"""The network front end: the genre readout over a WebSocket, for kiosks in any language.

`settings` (ServerSettings: what the flags set), `api` (the FastAPI app: protocol, access checks,
one engine per connection), `cli` (its command line: `genre-serve`, `python -m ui.net`),
`ray_model` (a model as a Ray Serve deployment), `ray_ingress` (the app as a Ray Serve ingress in
front of it), `ray_cli` (`genre-serve-ray`: deploy a model), `client` (`RemoteEngine`, the Python
client that looks like a StreamEngine). Imports run cli -> ray_ingress -> api, ray_model ->
stream/; the client needs only the engine. Importing this package imports nothing.
"""
