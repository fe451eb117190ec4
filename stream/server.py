"""Moved: the network API is the front end `ui.net` (`genre-serve`, or `python -m ui.net`).

This shim keeps `python -m stream.server ...` working: it says so in one line on stderr and runs
the new command with the same arguments. It names its target as a string (runpy), so the engine
package holds no import of a front end; importing this module does nothing.
"""
import runpy
import sys

if __name__ == "__main__":
    print("stream.server has moved: running `genre-serve` (python -m ui.net) instead", file=sys.stderr, flush=True)
    runpy.run_module("ui.net", run_name="__main__", alter_sys=True)
