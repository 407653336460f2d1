"""otel_gunicorn: every gunicorn worker's OpenTelemetry metrics, exact and in one place.

The public surface is small: :mod:`otel_gunicorn.hooks` (gunicorn hooks), :mod:`otel_gunicorn.conf` (a ready
gunicorn config module), :class:`Config` and :class:`ConfigError`.
"""

__version__ = "0.1.0"

from otel_gunicorn._config import Config, ConfigError  # noqa: E402

__all__ = ["Config", "ConfigError", "__version__"]
