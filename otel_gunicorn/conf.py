"""A complete gunicorn configuration module: ``gunicorn -c python:otel_gunicorn.conf app:app``.

It only installs otel_gunicorn's hooks; every other setting keeps gunicorn's default or comes from the command line
and ``GUNICORN_CMD_ARGS``.
"""

from otel_gunicorn.hooks import *  # noqa: F403
from otel_gunicorn.hooks import __all__ as __all__
