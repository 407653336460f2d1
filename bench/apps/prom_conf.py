"""gunicorn configuration for prometheus_client's multiprocess mode, as its documentation sets it up.

``PROMETHEUS_MULTIPROC_DIR`` must name an empty directory before gunicorn starts; the arbiter marks each exited
worker dead (``child_exit``), which removes its live-gauge files. Its counters' and histograms' files stay (they
carry totals), which is what makes the scrape grow with recycles.
"""

from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
