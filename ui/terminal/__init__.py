"""The terminal listener's parts: input devices (PortAudio), audio sources, the rich view.

`cli_listen.py` strings them together; nothing here imports the page (`ui/web`)."""
