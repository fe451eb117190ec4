"""The terminal listener: input devices (PortAudio), audio sources, the rich view, and `listener`,
which strings them together with an engine (here, or a server's through `stream.client`).

`cli_listen.py` is its entry point (flags only); nothing here imports the page (`ui/web`)."""
