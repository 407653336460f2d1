"""Every environment variable otel_gunicorn reads, as a constant with its documentation.

The docstring under each constant is the reference text: ``docs/environment.md`` is generated from it
(``python -m otel_gunicorn._docs``) and a test fails when the page is stale. Only :mod:`otel_gunicorn._config` reads
the environment (``Config.from_env``, and ``log_format`` for the logging configuration, which gunicorn builds
before any hook runs); everything else gets a ``Config``.
"""

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""Standard. ``true`` turns otel_gunicorn off completely: no threads, no sockets, no endpoint. Default ``false``."""

OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
"""Standard. ``service.name`` of the server's resource (shown in ``target_info``). Read by the OpenTelemetry SDK."""

OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
"""Standard. Extra resource attributes, ``key=value,key=value``. Read by the OpenTelemetry SDK. A pair that is not
``key=value`` is skipped, and said once per server, in the arbiter's log."""

OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""Standard. Comma-separated exporters for the merged metrics: ``prometheus`` (the endpoint in the arbiter),
``otlp`` (pushed by the arbiter every ``OTEL_METRIC_EXPORT_INTERVAL``, one stream per server), ``none``; e.g.
``prometheus,otlp`` for both. Unset means ``prometheus``: an endpoint that works with nothing else running. An
unknown value is warned about and ignored, as the OpenTelemetry specification asks."""

OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
"""Standard. Milliseconds between two OTLP pushes of the merged metrics by the arbiter
(``OTEL_METRICS_EXPORTER=otlp``). Default ``60000``. An invalid value is warned about and the default used."""

OTEL_METRICS_EXEMPLAR_FILTER = "OTEL_METRICS_EXEMPLAR_FILTER"
"""Standard. Which measurements may become exemplars (a value kept with the trace it was made in, see
docs/exemplars.md): ``trace_based`` (default) those made inside a sampled span — requests whose span is sampled, and
the application's measurements made while one is current; ``always_on`` every measurement (those outside a span
carry no trace id); ``always_off`` none, which also saves the per-measurement context lookup.
Case-insensitive. An invalid value is warned about and ``trace_based`` used."""

OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
"""Standard. Where each worker sends its request spans: ``otlp``, ``console`` (stdout, one JSON object per line) or
``none``. Default ``none`` (otel_gunicorn's choice: tracing costs, so it is opt-in); trace ids of requests arriving
with a ``traceparent`` still reach the logs. An unknown value is warned about and ``none`` used."""

OTEL_LOGS_EXPORTER = "OTEL_LOGS_EXPORTER"
"""Standard. ``otlp`` also sends every worker's log records (stdlib ``logging``, with their trace ids) to the
collector through the OpenTelemetry SDK; ``console`` prints them on stdout, one JSON object per line; ``none``
(default) keeps logs local. An unknown value is warned about and ``none`` used."""

OTEL_PROPAGATORS = "OTEL_PROPAGATORS"
"""Standard. Propagators each worker continues callers' traces with, e.g. ``tracecontext,baggage`` (the default) or
``b3``; read by the OpenTelemetry API. A name no installed package provides is dropped with one warning (the others
are kept; none left: the default) instead of stopping gunicorn with a traceback, as the OpenTelemetry API would."""

OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""Standard. ``http/protobuf`` (default) or ``grpc``, for every OTLP signal; the per-signal variables
``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``, ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` and ``OTEL_EXPORTER_OTLP_LOGS_PROTOCOL``
take precedence. Endpoint, headers, timeout, compression and certificate come from the standard
``OTEL_EXPORTER_OTLP_*`` variables, read by the OpenTelemetry exporters themselves."""

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""Standard. The collector's base URL for every OTLP signal, e.g. ``http://collector:4318`` (http/protobuf, to which
the exporter adds ``/v1/metrics``, ``/v1/traces``, ``/v1/logs``) or ``http://collector:4317`` (grpc). The arbiter
logs where it pushes the merged metrics, and where the workers export their spans and log records. A value that
cannot be right is corrected with one warning: without a scheme (``localhost:4318``) ``http://`` is added for
http/protobuf; a base URL ending in ``/v1/metrics`` (or ``/v1/traces``, ``/v1/logs``) loses that path, which the
exporter adds itself. Default ``http://localhost:4318`` (http/protobuf), ``http://localhost:4317`` (grpc)."""

OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
"""Standard. The full URL the merged metrics are pushed to, used as it is (http/protobuf: with its path, e.g.
``http://collector:4318/v1/metrics``); takes precedence over ``OTEL_EXPORTER_OTLP_ENDPOINT``. Without a scheme,
``http://`` is added for http/protobuf, with one warning."""

OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""Standard. The full URL the workers' spans are exported to (``OTEL_TRACES_EXPORTER=otlp``), used as it is
(http/protobuf: with its path, e.g. ``http://collector:4318/v1/traces``); takes precedence over
``OTEL_EXPORTER_OTLP_ENDPOINT``. Without a scheme, ``http://`` is added for http/protobuf, with one warning."""

OTEL_EXPORTER_OTLP_LOGS_ENDPOINT = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
"""Standard. The full URL the workers' log records are exported to (``OTEL_LOGS_EXPORTER=otlp``), used as it is
(http/protobuf: with its path, e.g. ``http://collector:4318/v1/logs``); takes precedence over
``OTEL_EXPORTER_OTLP_ENDPOINT``. Without a scheme, ``http://`` is added for http/protobuf, with one warning."""

OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
"""Standard. Temporality of the merged metrics pushed over OTLP (``OTEL_METRICS_EXPORTER=otlp``; the Prometheus
endpoint is always cumulative). ``cumulative`` (default): every push carries the totals since the arbiter started, so
a failed push loses nothing. ``delta``: counters and histograms carry the change since the last push the collector
accepted (a failed push is folded into the next one); up-down counters and gauges stay as they are. ``lowmemory``:
the same as ``delta`` here, because the merged stream no longer tells an application's asynchronous counters (which
the specification keeps cumulative under ``lowmemory``) from its synchronous ones. Case-insensitive. An invalid value
is warned about and ``cumulative`` used."""

OTEL_EXPORTER_PROMETHEUS_HOST = "OTEL_EXPORTER_PROMETHEUS_HOST"
"""Standard. Address the arbiter's Prometheus endpoint binds to. Default ``localhost``: nothing outside the
machine can scrape it unless you say so."""

OTEL_EXPORTER_PROMETHEUS_PORT = "OTEL_EXPORTER_PROMETHEUS_PORT"
"""Standard. TCP port of the arbiter's Prometheus endpoint, 0–65535 (0 picks a free port and logs it).
Default ``9464``. An invalid value is warned about and the default used."""

OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG = "OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG"
"""Path of a web-config file securing the arbiter's Prometheus endpoint, in the format Prometheus' own exporters take
with ``--web.config.file`` (https://prometheus.io/docs/prometheus/latest/configuration/https/):
``tls_server_config`` (``cert_file``, ``key_file``, ``client_ca_file``, ``client_auth_type``, ``min_version``,
``max_version``) makes the endpoint HTTPS only; ``basic_auth_users`` (user name: bcrypt hash) requires HTTP basic
authentication; ``http_server_config.headers`` adds security headers. Relative paths are relative to the file's
directory. Unset (default): plain HTTP, no authentication. Read once, in the arbiter: a renewed certificate or a
changed user takes a restart of the master. Differences from exporter-toolkit: ``VerifyClientCertIfGiven``,
``RequireAnyClientCert`` and ``RequireAndVerifyClientCert`` need ``client_ca_file`` and verify client certificates
against it; ``rate_limit``, ``cipher_suites``, ``curve_preferences``, ``client_allowed_sans`` and the inline ``cert``,
``key`` and ``client_ca`` are refused rather than ignored. A file that cannot be used (unknown key, missing file,
certificate and key that do not load, a user whose value is not a bcrypt hash, a file asking for neither TLS nor
basic auth) stops gunicorn before any worker
forks, without showing the offending secret."""

OTEL_GUNICORN_METRICS_INTERVAL = "OTEL_GUNICORN_METRICS_INTERVAL"
"""Seconds (a positive number, fractions allowed, at most 3600) between two reports of a worker to the arbiter.
Default ``5``. A metric recorded in a worker reaches the endpoint within one interval; a worker killed with
SIGKILL loses at most its last interval."""

OTEL_GUNICORN_SLOW_REQUEST_SECONDS = "OTEL_GUNICORN_SLOW_REQUEST_SECONDS"
"""Seconds (a positive number, fractions allowed, at most 86400) after which a request is slow: every request that
takes at least this long counts in ``gunicorn.requests.slow`` when it ends, and one still running at a check gets
one log line with the Python stack of the code serving it, its trace id and span id, while it still runs
(docs/troubleshooting.md, a worker timed out). Unset (default): no check. The check runs when the worker reports
(every ``OTEL_GUNICORN_METRICS_INTERVAL``): a request running longer than the threshold plus one interval always
gets its line, one that ends sooner may not (it is still counted); keep the interval below the threshold. A worker
stuck past gunicorn's ``--timeout`` logs the same line for each of its requests whether or not this is set."""

OTEL_GUNICORN_MAX_ROUTES = "OTEL_GUNICORN_MAX_ROUTES"
"""Most distinct ``http.route`` values (an integer, 1 to 100000) on otel_gunicorn's ``http.server.request.duration``
for the whole server. Default ``500``. Routes are the framework's templates (``/items/<int:item_id>``, never the raw
path), so an application has as many as it declares. The arbiter admits routes in the order the workers' reports
first bring them; past the bound, every other route is recorded as ``http.route="_OTHER"``, counted by
``otel_gunicorn.http.route.overflow`` and logged once. Each worker holds the same bound on its own (what it keeps in
memory and names its request spans with, ``METHOD route``): a span's route is bounded per worker, not per server."""

OTEL_GUNICORN_MAX_FRAME_BYTES = "OTEL_GUNICORN_MAX_FRAME_BYTES"
"""Largest report (bytes, 1024 to 268435456) the arbiter accepts from one worker. Default ``16777216`` (16 MiB).
A larger report is dropped and counted; raise this only for applications with a very large number of series."""

OTEL_GUNICORN_SHUTDOWN_TIMEOUT = "OTEL_GUNICORN_SHUTDOWN_TIMEOUT"
"""Seconds (a positive number, fractions allowed, at most 3600) a graceful stop may spend on telemetry in all, however
slow or unreachable the collector: the time to add to your grace period. With ``OTEL_METRICS_EXPORTER=otlp``, each
exiting worker gets the first half for its spans, log records and final report together, and the arbiter, once its
workers are gone, the second half for its last push of the merged metrics (then the exporter process is killed);
without it, the workers get it all. Whatever has not reached the collector by then is lost, and a warning says so.
Default ``1``: with metrics, spans and log records all pointed at a collector that never answers, SIGTERM → exit
takes about 2 s (gunicorn's own stop, the processes' teardown included, adds about a second, more on a busy
machine); raise it for a distant collector that needs longer to take a last batch. Requests in flight are not
affected: their time counts against gunicorn's ``--graceful-timeout``, before any telemetry is flushed."""

OTEL_GUNICORN_LOG_FORMAT = "OTEL_GUNICORN_LOG_FORMAT"
"""Format of otel_gunicorn's structured logs (``otel_gunicorn.logs.logconfig_dict()``, used by
``python:otel_gunicorn.conf``, and ``configure_structlog()``): ``console``, a readable line, coloured only on a
terminal, or ``json``, one JSON object per line, on every line the server writes, the OTLP exporter process's
included. Default ``console``; case-insensitive. Set it in gunicorn's environment or with gunicorn's ``--env``
(``raw_env``), which ``GunicornLogger`` applies although gunicorn sets it only after reading its configuration;
``logconfig_dict("json")`` in a configuration file fixes the format and the variable is then not used. A bad value
stops gunicorn with one line."""

OTEL_GUNICORN_CHANNEL_DIR = "OTEL_GUNICORN_CHANNEL_DIR"
"""Existing directory in which the arbiter creates its private (mode 0700) directory holding the unix socket
workers report through. Default: the system temporary directory."""

OTEL_GUNICORN_TOP_PASSWORD = "OTEL_GUNICORN_TOP_PASSWORD"
"""Read by ``otel-gunicorn top`` only, never by the server: the basic-auth password for ``--user`` (instead of
``--password-file``), so it stays out of the process list and the shell history."""
