"""The page's own command-line flags (where it listens, upload limits) and the check that it can
listen there. No Gradio or torch here: `--help`, bad values and a busy port answer at once,
before the model loads. The model and engine flags are ui.options' (shared by every front end)."""
from __future__ import annotations

import argparse
import errno
import os
import socket

from ui.options import number


def add_page_flags(parser: argparse.ArgumentParser) -> None:
    """--host, --port, --share, --max-file-mb, --max-file-minutes (a Space sets them through
    Gradio's and this page's environment variables)."""
    env = os.environ.get
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on [default 127.0.0.1: this machine only]")
    parser.add_argument("--port", type=int, default=env("GRADIO_SERVER_PORT", "7860"), help="[default 7860]")
    parser.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (opt-in)")
    parser.add_argument("--max-file-mb", type=number, default=env("GENRE_MAX_FILE_MB", "50"),
                        help="upload size limit in MB [env GENRE_MAX_FILE_MB; default 50]")
    parser.add_argument("--max-file-minutes", type=number, default=env("GENRE_MAX_FILE_MINUTES", "20"),
                        help="longest recording the File tab analyses [env GENRE_MAX_FILE_MINUTES; default 20]")


def page_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the page's flags, one phrase each naming the flag (empty: all fine)."""
    out = [f"{flag} {value:g} must be a positive number" for flag, value in
           (("--max-file-mb", args.max_file_mb), ("--max-file-minutes", args.max_file_minutes)) if not value > 0]
    if not 0 < args.port < 65536:
        out.append(f"--port {args.port} is not a TCP port (1..65535)")
    return out


def port_problem(host: str, port: int) -> str | None:
    """Why the page could not listen on host:port (None if it can): tried by binding it the
    way the web server will, so a busy port is found before the model is loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on --host {host}: {exc.strerror}"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another server, or this page running "
                        f"already); choose another with --port")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None
