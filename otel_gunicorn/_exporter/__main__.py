"""``python -m otel_gunicorn._exporter PROTOCOL``: started by the arbiter, never by hand."""

import sys

from otel_gunicorn._exporter.process import main

sys.exit(main(sys.argv[1:]))
