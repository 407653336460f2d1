"""``python -m otel_gunicorn._exporter PROTOCOL``: started by the arbiter, never by hand."""

import logging
import os
import sys

from otel_gunicorn._gunicorn_log import log_to_stderr

# Before the SDK's modules are imported: some log while they load (a bad OTEL_RESOURCE_ATTRIBUTES), and those lines
# must come out in the server's format, JSON included.
log_to_stderr(os.environ)

from otel_gunicorn._exporter.process import main  # noqa: E402

status = main(sys.argv[1:])
# The last push is made and the exporter shut down. The arbiter waits for this exit within its share of
# OTEL_GUNICORN_SHUTDOWN_TIMEOUT, and the interpreter's teardown (some 0.2 s with the OTLP libraries loaded, more on a
# busy machine) has nothing left to do: skip it, so that a push that went through is never cut short by the deadline.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
