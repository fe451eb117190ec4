"""Moved: the Ray Serve deployment is `ui.net.ray_model`, its command line `genre-serve-ray`
(or `python -m ui.net.ray_cli`).

This shim keeps `python -m stream.serve ...` working: it says so in one line on stderr and runs
the new command with the same arguments. It names its target as a string (runpy), so the engine
package holds no import of a front end; importing this module does nothing.
"""
import runpy
import sys

if __name__ == "__main__":
    print("stream.serve has moved: running `genre-serve-ray` (python -m ui.net.ray_cli) instead", file=sys.stderr,
          flush=True)
    runpy.run_module("ui.net.ray_cli", run_name="__main__", alter_sys=True)
