"""Console script `genre-app` (pyproject.toml [project.scripts]).

app.py builds its page at import time from the command line it sees when run as a script (that is how a
Hugging Face Space and `python3 app.py ...` start it). A console script imports its target module, which would
build the page from the defaults first; so `genre-app ARGS` runs app.py as `__main__`, exactly like
`python3 app.py ARGS`. sys.argv is left as it is, so usage lines say `genre-app`. The entry point is named
as a string: no module imports an entry point.
"""
import runpy


def app() -> None:
    runpy.run_module("app", run_name="__main__")
