"""What played when: the genre history (a SQLite file) that the page, the terminal listener and the
network server write with --history, and `genre-history` reads (see README: 'History').

Not a front end of its own but a library the front ends share (like ui/report.py): `store`
records and queries, `flags` the command-line flags they all take, `cli` is `genre-history`.
"""
