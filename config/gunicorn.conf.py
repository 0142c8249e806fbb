"""gunicorn's configuration for Relink: `gunicorn config.wsgi -c config/gunicorn.conf.py …`.

Its one job is that gunicorn's own logs — the access log's request lines (a connection link's
path is its token; an OAuth callback's query holds a code and state) and its error log — are
redacted like every other log of Relink (config/logsafe.py), in the master process as in the
workers, whether or not the app is preloaded. Everything else (bind, workers, threads, log
files) is given on the command line as usual.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # gunicorn runs this file by path

from config import logsafe  # noqa: E402

logsafe.install()
