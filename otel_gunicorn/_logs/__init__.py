"""Structured logs for gunicorn, behind the public :mod:`otel_gunicorn.logs`.

Everything here runs in whichever process logs: the arbiter formats its own records, each worker formats the records
of its application and its access log. Nothing here starts threads or holds locks, so fork needs no care; the one piece
of process state (the worker's slot) is set by the worker after the fork.
"""
