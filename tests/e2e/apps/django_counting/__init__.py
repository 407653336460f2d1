"""A Django project that is not instrumented in code (opentelemetry-instrument does it): its own counter on ``/``.
Run with ``DJANGO_SETTINGS_MODULE=django_counting.settings``, application ``django_counting.wsgi:application``."""
