"""Real processes on loopback for otel_gunicorn's end-to-end tests, chaos tests and benchmarks.

One harness for everything that starts a real gunicorn master (with or without ``-c python:otel_gunicorn.conf``),
the real Prometheus server and promtool, or the Rotel collector, and reads what they do from outside: HTTP on
loopback, the metrics exposition, ``/proc``.

* :mod:`harness.gunicorn` — a gunicorn master, its command line and environment;
* :mod:`harness.prometheus` — the Prometheus server and ``promtool check metrics``;
* :mod:`harness.collector` — the Rotel OTLP collector and a parser for what it prints;
* :mod:`harness.process` — a child process logging to a file, stopped for sure; a fleet of them;
* :mod:`harness.proc` — ``/proc`` readers (children, CPU, memory, threads, fds, accept queues);
* :mod:`harness.scrape` — fetching and parsing a Prometheus exposition;
* :mod:`harness.net` — free loopback ports and one plain HTTP GET;
* :mod:`harness.waiting` — bounded polling for a condition.

Hazards: ports are picked free at start, so another process may take one between the pick and the bind (the start
then fails loudly rather than talking to a stranger); every wait is bounded; every process is stopped by whoever
started it, also on failure. Linux only (``/proc``). The harness never imports ``otel_gunicorn``: the bench uses it
to measure another checkout's package (``--package-root``), and the tests use it while that package is being edited.
"""
