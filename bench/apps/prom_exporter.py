"""prometheus_client's multiprocess exposition served by a small process of its own: ``python prom_exporter.py PORT``.

As prometheus_client's documentation sets it up: a fresh CollectorRegistry with a MultiProcessCollector reading
``PROMETHEUS_MULTIPROC_DIR``, served on 127.0.0.1:PORT (any path). Every scrape reads and merges every file in the
directory. Stops on SIGTERM.
"""

import signal
import sys

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=registry)
print("serving", flush=True)
while True:
    signal.pause()
