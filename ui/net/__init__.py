"""The network front end: the genre readout over a WebSocket, for kiosks in any language.

`settings` (ServerSettings: what the flags set), `api` (the FastAPI app: protocol, one engine per
connection), `access` (token and origin checks), `ops` (probes, /metrics, readiness and the drain:
ServerOps), `metrics` (the Prometheus metrics), `logs` (text or JSON log lines, stream events),
`watch` (named streams: /v1/watch and its channels), `kiosk` (the kiosk screen at /),
`history` (a stream's recorder in --history, GET /v1/history),
`cli` (its command line: `genre-serve`, `python -m ui.net`; the drain on SIGTERM),
`ray_model` (a model as a Ray Serve deployment), `ray_ingress` (the app as a Ray Serve ingress in
front of it), `ray_cli` (`genre-serve-ray`: deploy a model). Imports run cli -> ray_ingress -> api,
ray_model -> stream/. The Python client of this API is a library module, `stream.client`
(`RemoteEngine`). Importing this package imports nothing.
"""
