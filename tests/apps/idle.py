"""A test app that does its one thing, then waits until it is stopped.

argv: [--marker DIR] [--one-row DB_PATH]
--marker DIR      create DIR/<pid>, so a test can count how many apps ever started
--one-row PATH    create the ``rows`` table with one row, then write nothing more
"""

import os
import signal
import sqlite3
import sys

args = sys.argv[1:]
if "--marker" in args:
    folder = args[args.index("--marker") + 1]
    open(os.path.join(folder, str(os.getpid())), "w").close()
if "--one-row" in args:
    db = sqlite3.connect(args[args.index("--one-row") + 1])
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
    db.execute("INSERT INTO rows VALUES (1, 0, 'x')")
    db.commit()
    db.close()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
