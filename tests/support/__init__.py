"""What the tests share, each helper defined once:

- `support.polling`: `wait_for` (poll a condition; waits end a wrong test, never time a right one)
- `support.music`: real recordings (Debian packages) and the marks that need them
- `support.server`: the network server per fixture (`served`), WebSocket clients, /metrics
- `support.browser`: the page (app.py) as a subprocess, headless Chromium, test audio
- `support.pulse`: a private PulseAudio server with a null sink (a virtual microphone)
- `support.models`: small real models for engine tests (`BandModel`), test tones
- `support.ray_child`: the plugin of the child pytest that drives an in-process Ray

The parts bench/ uses too (server process, music, Chromium, tiny checkpoint, ports) live in
the top-level `harness` package; these modules re-export them. Markers (`browser`, `server`,
`ray`, `slow`) are set in tests/conftest.py from the fixtures a test uses.
"""
