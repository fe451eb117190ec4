"""Put on PYTHONPATH (with the repository after it) by end-to-end tests: every Python process they
start then keeps its history in 5 s "minutes" (ui.history.store.MINUTE_S; the tests' MINUTE_S), so
a test sees several rows per stream in seconds. Production code has no switch for this."""
from ui.history import store

store.MINUTE_S = 5
