"""The test applications gunicorn serves in tests/e2e and tests/chaos; gunicorn imports them from this directory."""

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
