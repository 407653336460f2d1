"""A worker class otel_gunicorn does not know: the sync worker's methods on a class that does not inherit from it.

For the utilisation signal's "unknown class: absent" rule (tests/e2e/test_utilization.py): otel_gunicorn matches
worker classes by name along their MRO, and this one's MRO holds only gunicorn's base ``Worker``.
"""

from gunicorn.workers.base import Worker
from gunicorn.workers.sync import SyncWorker

UnknownWorker = type(
    "UnknownWorker", (Worker,), {name: value for name, value in vars(SyncWorker).items() if not name.startswith("__")}
)
