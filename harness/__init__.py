"""Real parts shared by tests/ and bench/: the server as a subprocess, real recordings, headless
Chromium, a tiny generated checkpoint, free ports. Not shipped (the wheel holds stream/ and ui/);
imported from a checkout's root (`python -m pytest`, `python -m bench.x`)."""
