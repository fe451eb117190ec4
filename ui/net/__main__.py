"""`python -m ui.net`: the network API (the same as the console script `genre-serve`)."""
import sys

from .cli import main

sys.exit(main())
