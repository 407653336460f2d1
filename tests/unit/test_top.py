"""``otel-gunicorn top``'s pure parts: parsing captured scrapes, rates and percentiles, the frame state, rendering.

The fixtures under tests/fixtures/top/ are real scrapes of ``counting:app`` with 2 workers and requests held open:
``sync.txt`` (one request in slot 0) and ``gthread.txt`` (``--threads 2``, six requests: both pools full, two
waiting in slot 1's queue). ``routes.txt``: tests/e2e/apps/routes_flask.py with 2 sync workers after 40 requests to
``/items/<int:item_id>``, 10 to ``/health`` and 5 to unknown paths (404, no route). ``health.txt``:
tests/e2e/apps/health.py with 2 sync workers, the report interval 1 s, after ``/grow?100`` (slot 1), ``/burn?0.5``
and ``/garbage?1000``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from otel_gunicorn import _instruments
from otel_gunicorn.__main__ import main
from otel_gunicorn._top import cli, errors, model, rates, scrape, view
from otel_gunicorn._top import watch as watch_module
from otel_gunicorn._top.model import Histogram, Scrape
from otel_gunicorn._top.watch import Watch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "top"
SYNC = (FIXTURES / "sync.txt").read_text()
GTHREAD = (FIXTURES / "gthread.txt").read_text()
ROUTES = (FIXTURES / "routes.txt").read_text()
HEALTH = (FIXTURES / "health.txt").read_text()
WALL = datetime.datetime(2025, 1, 1, 12, 0, 0)
INF = math.inf


def histogram(bounds: tuple[float, ...], counts: tuple[float, ...]) -> Histogram:
    """A histogram from per-bucket (not cumulative) counts; the last bound is +Inf."""
    cumulative, total = [], 0.0
    for count in counts:
        total += count
        cumulative.append(total)
    return Histogram((*bounds, INF), tuple(cumulative))


def scrape_with(duration: Histogram | None = None, exits: dict[str, float] | None = None) -> Scrape:
    return Scrape((), (), None, None, duration, exits)


def rendered(frame: view.Frame, width: int = 100) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(view.render(frame))
    return console.export_text()


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "instrument"),
    [
        (model.ACTIVE_REQUESTS, _instruments.ACTIVE_REQUESTS),
        (model.ACTIVE_CONNECTIONS, _instruments.ACTIVE_CONNECTIONS),
        (model.CONNECTION_LIMIT, _instruments.CONNECTION_LIMIT),
        (model.THREADS, _instruments.THREADS),
        (model.THREAD_LIMIT, _instruments.THREAD_LIMIT),
        (model.POOL_QUEUE, _instruments.THREAD_QUEUE),
        (model.HEARTBEAT_AGE, _instruments.HEARTBEAT_AGE),
        (model.LISTENER_QUEUED, _instruments.LISTENER_QUEUED),
        (model.LISTENER_LIMIT, _instruments.LISTENER_LIMIT),
        (model.WORKERS, _instruments.WORKER_COUNT),
        (model.WORKER_LIMIT, _instruments.WORKER_LIMIT),
        (model.EXITS, _instruments.WORKER_EXITS),
        (model.DURATION, _instruments.REQUEST_DURATION),
        (model.MEMORY, _instruments.PROCESS_MEMORY_USAGE),
        (model.CPU_TIME, _instruments.PROCESS_CPU_TIME),
        (model.PROCESS_READS, _instruments.PROCESS_READS),
    ],
)
def test_metric_names_follow_the_catalogue(name, instrument):
    """Each Prometheus name the view reads is the one the exporter gives the catalogue's instrument."""
    assert _instruments.prometheus_name(instrument) == name


@pytest.mark.parametrize(
    ("label", "instrument"),
    [
        (model.THREAD_STATE, _instruments.THREADS),
        (model.WORKER_STATE, _instruments.WORKER_COUNT),
        (model.EXIT_REASON, _instruments.WORKER_EXITS),
        (model.LISTENER, _instruments.LISTENER_QUEUED),
        (model.TRANSPORT, _instruments.LISTENER_QUEUED),
        (model.SLOT, _instruments.HEARTBEAT_AGE),
    ],
)
def test_label_names_follow_the_catalogue(label, instrument):
    """Each label the view reads is an attribute of the catalogue's instrument, dots made underscores."""
    assert label in {attribute.replace(".", "_") for attribute in instrument.attributes}


# ---------------------------------------------------------------- parsing


def test_sync_scrape_has_one_busy_slot():
    """The sync capture: slot 0 busy with one request, slot 1 idle."""
    slots = model.parse(SYNC).slots
    assert [("0", True, 1.0), ("1", False, 0.0)] == [(s.slot, s.busy, s.in_flight) for s in slots]


def test_sync_workers_have_no_connection_or_thread_metrics():
    """sync workers measure no connections or threads: those stay None, not 0."""
    row = model.parse(SYNC).slots[0]
    assert (None, None, None, None, None) == (
        row.connections,
        row.connection_limit,
        row.threads_busy,
        row.thread_limit,
        row.pool_queue,
    )


HEARTBEATS = "".join(
    f'gunicorn_worker_heartbeat_age_seconds{{gunicorn_worker_slot="{slot}",otel_scope_name="otel_gunicorn"}} 1\n'
    for slot in (0, 1)
)


def test_a_slot_that_has_served_nothing_yet_is_idle():
    """With request metrics on the endpoint, a slot with no in-flight series yet has 0 requests in flight."""
    text = HEARTBEATS + 'http_server_active_requests{gunicorn_worker_slot="0",otel_scope_name="otel_gunicorn"} 1\n'
    assert [("0", True), ("1", False)] == [(row.slot, row.busy) for row in model.parse(text).slots]


def test_without_request_metrics_busy_is_unknown():
    """No in-flight series anywhere (a worker class without request metrics): busy and in flight stay None."""
    assert [(None, None), (None, None)] == [(row.busy, row.in_flight) for row in model.parse(HEARTBEATS).slots]


def test_gthread_scrape_reads_threads_connections_and_pool_queue():
    """The gthread capture: both pools full, slot 1 with four connections and two requests waiting."""
    slots = model.parse(GTHREAD).slots
    expected = [("0", 2.0, 2.0, 1000.0, 2.0, 2.0, 0.0), ("1", 2.0, 4.0, 1000.0, 2.0, 2.0, 2.0)]
    actual = [
        (s.slot, s.in_flight, s.connections, s.connection_limit, s.threads_busy, s.thread_limit, s.pool_queue)
        for s in slots
    ]
    assert expected == actual


def test_heartbeat_age_per_slot():
    """Heartbeat ages are read per slot."""
    assert [2.001178323999966, 2.087499346999948] == [s.heartbeat_age for s in model.parse(SYNC).slots]


def test_listener_row_against_its_limit():
    """The TCP listener with its queue and its backlog limit."""
    expected = (model.ListenerRow("http://127.0.0.1:18000", "tcp", None, 0.0, 2048.0),)
    assert expected == model.parse(SYNC).listeners


def test_totals():
    """Busy workers, the worker limit, every exit reason and the request count of the capture."""
    parsed = model.parse(SYNC)
    exits = {"timeout": 0.0, "killed": 0.0, "error": 0.0, "normal": 0.0}
    assert (1.0, 2.0, exits, 5.0) == (parsed.workers_busy, parsed.worker_limit, parsed.exits, parsed.duration.count)


def test_duration_buckets_are_summed_in_bound_order_ending_with_inf():
    """The duration histogram's bounds are the semantic-convention buckets, then +Inf."""
    assert (*_instruments.DURATION_BUCKETS, INF) == model.parse(SYNC).duration.bounds


def test_series_of_another_scope_are_ignored():
    """The same metric name under the application's scope does not add to the server's requests."""
    theirs = "\n".join(
        line.replace('otel_scope_name="otel_gunicorn"', 'otel_scope_name="opentelemetry.instrumentation.wsgi"')
        for line in SYNC.splitlines()
        if line.startswith("http_server_request_duration_seconds_")
    )
    text = SYNC.replace("# HELP gunicorn_listener_queued", theirs + "\n# HELP gunicorn_listener_queued")
    assert 5.0 == model.parse(text).duration.count


def test_reuse_port_listeners_get_one_row_per_slot():
    """Under reuse_port each worker's listener queue is its own row, keyed by slot."""
    text = (
        'gunicorn_listener_queued_connections{gunicorn_listener="http://127.0.0.1:8000",network_transport="tcp",'
        'gunicorn_worker_slot="1",otel_scope_name="otel_gunicorn"} 3.0\n'
        'gunicorn_listener_queued_connections{gunicorn_listener="http://127.0.0.1:8000",network_transport="tcp",'
        'gunicorn_worker_slot="0",otel_scope_name="otel_gunicorn"} 1.0\n'
    )
    assert [("0", 1.0), ("1", 3.0)] == [(row.slot, row.queued) for row in model.parse(text).listeners]


def test_slots_sort_as_numbers():
    """Slot 10 comes after slot 9, not after slot 1."""
    text = "".join(
        f'gunicorn_worker_heartbeat_age_seconds{{gunicorn_worker_slot="{slot}",otel_scope_name="otel_gunicorn"}} 1\n'
        for slot in (10, 9, 1)
    )
    assert ["1", "9", "10"] == [row.slot for row in model.parse(text).slots]


def test_absent_families_are_none():
    """An endpoint with only a heartbeat: no listeners, no totals, no histogram, no exits."""
    text = 'gunicorn_worker_heartbeat_age_seconds{gunicorn_worker_slot="0",otel_scope_name="otel_gunicorn"} 1\n'
    assert Scrape(model.parse(text).slots, (), None, None, None, None) == model.parse(text)


def test_an_exposition_without_our_scope_is_not_an_otel_gunicorn_endpoint():
    """Only the application's metrics: TopError with the not-otel_gunicorn exit code."""
    with pytest.raises(errors.TopError) as caught:
        model.parse('app_requests_total{otel_scope_name="tests.counting"} 5.0\n')
    assert errors.NOT_OTEL_GUNICORN == caught.value.exit_code


def test_html_is_not_an_exposition():
    """An HTML page gives the not-otel_gunicorn error, with a one-line message."""
    with pytest.raises(errors.TopError) as caught:
        model.parse("<!DOCTYPE HTML>\n<html>\n<body>hello</body>\n</html>\n")
    assert (errors.NOT_OTEL_GUNICORN, 1) == (caught.value.exit_code, len(caught.value.message.splitlines()))


# ---------------------------------------------------------------- percentiles and rates


def test_quantile_interpolates_inside_the_bucket():
    """Ten observations in (0.1, 0.2]: the median is estimated halfway through that bucket."""
    assert 0.15 == pytest.approx(rates.quantile(0.5, histogram((0.1, 0.2), (0, 10, 0))))


def test_quantile_in_the_first_bucket_starts_at_zero():
    """The first bucket's lower bound is 0."""
    assert 0.05 == pytest.approx(rates.quantile(0.5, histogram((0.1, 0.2), (10, 0, 0))))


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    """Everything above the last finite bound: the estimate is that bound, as in Prometheus."""
    assert 0.2 == rates.quantile(0.99, histogram((0.1, 0.2), (0, 0, 4)))


def test_quantile_of_an_empty_histogram_is_none():
    """No observation, no percentile."""
    assert rates.quantile(0.5, histogram((0.1, 0.2), (0, 0, 0))) is None


BOUNDS = st.lists(st.floats(0.001, 100, allow_nan=False), min_size=1, max_size=8, unique=True).map(sorted)


def bucketed(bounds: list[float], observations: list[float]) -> Histogram:
    return Histogram((*bounds, INF), tuple(float(sum(o <= b for o in observations)) for b in (*bounds, INF)))


@given(BOUNDS, st.lists(st.floats(0, 200, allow_nan=False), min_size=1, max_size=50), st.sampled_from(rates.QUANTILES))
def test_quantile_lies_in_the_bucket_of_the_true_quantile(bounds, observations, q):
    """The estimate lies within the bounds of the bucket holding the exact q-quantile observation (capped at the
    highest finite bound, as histogram_quantile is)."""
    exact = sorted(observations)[max(math.ceil(q * len(observations)) - 1, 0)]
    edges = [0.0, *bounds, INF]
    index = next(i for i in range(1, len(edges)) if exact <= edges[i])
    lower, upper = edges[index - 1], min(edges[index], bounds[-1])
    estimate = rates.quantile(q, bucketed(bounds, observations))
    # linear interpolation inside the bucket may land one rounding step past its edge
    slack = 4 * math.ulp(max(abs(lower), abs(upper), 1.0))
    assert lower - slack <= estimate <= upper + slack


@given(BOUNDS, st.lists(st.floats(0, 200, allow_nan=False), max_size=30), st.lists(st.floats(0, 200), max_size=30))
def test_increase_is_the_histogram_of_the_new_observations(bounds, before, after):
    """Buckets of (before + after) minus buckets of before are the buckets of after."""
    assert bucketed(bounds, after) == rates.increase(bucketed(bounds, before), bucketed(bounds, before + after))


def test_increase_after_a_reset_is_the_current_histogram():
    """Fewer observations than before: the arbiter restarted, everything now is new."""
    before, now = histogram((0.1,), (5, 5)), histogram((0.1,), (1, 0))
    assert now == rates.increase(before, now)


def samples(*points: tuple[float, float, tuple[float, ...]]) -> tuple[rates.Sample, ...]:
    """Samples of ``(time, reports, per-bucket counts)`` with bounds (0.1, 0.2); two worker slots."""
    slots = tuple(model.SlotRow(str(i), 0.0, None, None, None, None, None, None) for i in range(2))
    return tuple(
        rates.Sample(Scrape(slots, (), None, None, histogram((0.1, 0.2), counts), None, reports), at)
        for at, reports, counts in points
    )


def test_first_frame_has_no_rate_and_cumulative_latency():
    """Without a window of whole reports: no request rate, latency over everything since the server started."""
    history = samples((0.0, 4, (0, 10, 0)))
    derived = rates.compare(history, history[0].scrape)
    assert (None, True, pytest.approx(0.15)) == (derived.request_rate, derived.cumulative, derived.latency[0.5])


def test_rates_span_two_refreshes_that_saw_a_report_of_every_worker():
    """Reports seen at 1 s and 6 s (two each, two workers): twenty requests, all in (0, 0.1], are 4/s over 5 s."""
    history = samples((0.0, 2, (0, 10, 0)), (1.0, 4, (0, 10, 0)), (6.0, 6, (20, 10, 0)), (7.0, 6, (20, 10, 0)))
    derived = rates.compare(history, history[0].scrape)
    assert (4.0, False, pytest.approx(0.05), 5.0, 1.0) == (
        derived.request_rate,
        derived.cumulative,
        derived.latency[0.5],
        derived.window,
        derived.window_age,
    )


def test_one_worker_reporting_is_not_yet_a_window():
    """With two workers, one new report between two refreshes does not span every worker: no rate yet."""
    history = samples((0.0, 2, (0, 0, 0)), (1.0, 3, (5, 0, 0)), (2.0, 4, (9, 0, 0)))
    assert (None, None) == (rates.report_window(history), rates.compare(history, history[0].scrape).request_rate)


def test_a_quiet_window_has_a_zero_rate_and_no_latency():
    """Reports but no request in the window: rate 0 and no percentile (not the old ones)."""
    history = samples((0.0, 0, (3, 0, 0)), (1.0, 2, (3, 0, 0)), (6.0, 4, (3, 0, 0)))
    derived = rates.compare(history, history[0].scrape)
    assert (0.0, {0.5: None, 0.9: None, 0.99: None}) == (derived.request_rate, derived.latency)


def test_a_reset_of_the_reports_counter_starts_the_window_over():
    """The arbiter restarted (reports went down): nothing before it makes a window."""
    history = samples((0.0, 2, (0, 0, 0)), (5.0, 4, (9, 0, 0)), (6.0, 1, (1, 0, 0)), (7.0, 2, (2, 0, 0)))
    assert rates.report_window(history) is None


def test_without_the_reports_counter_the_window_spans_request_count_changes():
    """An endpoint without the reports counter: changes of the request count at least 5 s apart."""
    at = [rates.Sample(scrape_with(histogram((0.1,), (n, 0))), t) for t, n in ((0, 0), (1, 10), (3, 20), (6, 60))]
    window = rates.report_window(at)
    assert (1, 6) == (window.start.at, window.end.at)


def test_without_request_metrics_rate_and_latency_are_none():
    """A worker class without request metrics: rate and latency unknown."""
    history = (rates.Sample(scrape_with(), 0.0), rates.Sample(scrape_with(), 1.0))
    derived = rates.compare(history, history[0].scrape)
    assert (None, None, False) == (derived.request_rate, derived.latency, derived.cumulative)


def steady_traffic(phases: tuple[float, ...], period: float, rate: float, at: float) -> Scrape:
    """What the endpoint shows at ``at`` when each worker (first report at its phase, then every ``period``) serves
    ``rate / workers`` requests a second: the counts as of each worker's latest report, and the reports so far."""
    slots = tuple(model.SlotRow(str(i), 0.0, None, None, None, None, None, None) for i in range(len(phases)))
    requests = reports = 0.0
    for phase in phases:
        done = math.floor((at - phase) / period) + 1 if at >= phase else 0
        reports += done
        requests += rate / len(phases) * (phase + (done - 1) * period) if done else 0.0
    return Scrape(slots, (), None, None, histogram((0.1,), (requests, 0)), None, reports)


@pytest.mark.parametrize("phases", [(0.3,), (0.3, 2.7), (0.1, 1.4, 2.2, 4.9), (0.5, 0.6)])
def test_steady_traffic_reads_true_on_every_refresh_at_the_default_intervals(phases):
    """Workers report every 5 s, ``top`` refreshes every 1 s, 25 requests/s: after warm-up (every worker reported
    twice, 11 s) every frame's rate is within 30 % of 25/s (not 0, 0, 0, 0, 125 as differencing refreshes reads)."""
    watch = Watch("http://x/metrics", 1.0)
    read = [
        watch.observe(steady_traffic(phases, 5.0, 25.0, second + 0.05), second + 0.05, WALL).rates.request_rate
        for second in range(60)
    ]
    assert all(r is not None and abs(r - 25.0) <= 0.3 * 25.0 for r in read[11:]), read


def test_exits_since_start_of_top():
    """Exits are counted from the first scrape; a reason first seen later counts from 0."""
    assert {"timeout": 2.0, "killed": 1.0} == rates.exits_since({"timeout": 3.0}, {"timeout": 5.0, "killed": 1.0})


def test_exits_after_an_arbiter_restart_count_from_zero():
    """A counter lower than at start means a reset: its value is the increase."""
    assert {"normal": 1.0} == rates.exits_since({"normal": 7.0}, {"normal": 1.0})


# ---------------------------------------------------------------- frames


def test_a_failure_before_any_frame_has_no_frame():
    """Nothing to keep on screen before the first good scrape."""
    assert Watch("http://x/metrics", 1.0).failed("cannot reach", WALL) is None


def test_a_failed_refresh_keeps_the_last_frame_with_the_error():
    """After a failure the frame is the last good one, with the error and its time."""
    watch = Watch("http://x/metrics", 1.0)
    good = watch.observe(model.parse(SYNC), 10.0, WALL)
    later = WALL + datetime.timedelta(seconds=1)
    failed = watch.failed("cannot reach http://x/metrics", later)
    assert (good.scrape, good.taken_at, "cannot reach http://x/metrics", later) == (
        failed.scrape,
        failed.taken_at,
        failed.error,
        failed.failed_at,
    )


def test_a_good_refresh_clears_the_error_and_rates_span_the_gap():
    """The next good scrape has no error; its window spans the failed refresh."""
    watch = Watch("http://x/metrics", 1.0)
    for at, reports, count in ((9.0, 0, 0), (10.0, 2, 0)):
        watch.observe(Scrape((), (), None, None, histogram((0.1,), (count, 0)), None, reports), at, WALL)
    watch.failed("boom", WALL)
    frame = watch.observe(Scrape((), (), None, None, histogram((0.1,), (8, 0)), None, 4), 14.0, WALL)
    assert (None, 2.0, 4.0) == (frame.error, frame.rates.request_rate, frame.rates.window)


def test_watch_forgets_scrapes_older_than_its_history():
    """Only the last ``HISTORY`` seconds of scrapes are kept."""
    watch = Watch("http://x/metrics", 1.0)
    for at in range(0, 300, 10):
        watch.observe(scrape_with(), float(at), WALL)
    assert watch.history[0].at >= 290 - watch_module.HISTORY


def test_render_shows_busy_and_idle_slots_and_absent_values_as_dashes():
    """The sync frame: a busy and an idle row, "—" for the connections sync workers do not measure."""
    watch = Watch("http://127.0.0.1:9464/metrics", None)
    text = rendered(watch.observe(model.parse(SYNC), 0.0, WALL))
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert [
        ["0", "busy", "1", "—", "—", "—", "2.0", "s", "—", "—"],
        ["1", "idle", "0", "—", "—", "—", "2.1", "s", "—", "—"],
    ] == rows


def test_render_labels_the_first_frames_latency_as_cumulative():
    """A single snapshot says its percentiles are since the server started and that the rate needs reports."""
    text = rendered(Watch("http://127.0.0.1:9464/metrics", None).observe(model.parse(SYNC), 0.0, WALL))
    assert ("since the server started" in text, "waiting for every worker to report" in text) == (True, True)


def test_render_says_the_window_of_rates_and_latency():
    """A frame with a window says how long it is and how long ago the latest report was seen."""
    watch = Watch("http://127.0.0.1:9464/metrics", 1.0)
    for at in range(0, 15):
        frame = watch.observe(steady_traffic((0.3, 2.7), 5.0, 25.0, at + 0.05), at + 0.05, WALL)
    assert "over the last 5.0 s of worker reports, up to 1 s ago" in rendered(frame, width=120)


def test_render_shows_the_error_of_a_failed_refresh():
    """A failed refresh is on the status line, with the time of the frame still shown."""
    watch = Watch("http://127.0.0.1:9464/metrics", 1.0)
    watch.observe(model.parse(SYNC), 0.0, WALL)
    text = rendered(watch.failed("cannot reach it", WALL + datetime.timedelta(seconds=5)), width=120)
    assert "refresh failed 12:00:05: cannot reach it (showing 12:00:00)" in text


def test_render_without_worker_rows_says_so():
    """An endpoint whose workers have not reported yet shows a note, not an empty table alone."""
    assert "no worker has reported yet" in rendered(
        view.Frame("u", WALL, scrape_with(), rates.Rates(None, None, False, None))
    )


# ---------------------------------------------------------------- the command line


def test_url_without_scheme_or_path_gets_http_and_metrics():
    """``localhost:9464`` means http://localhost:9464/metrics."""
    target = scrape.endpoint("localhost:9464", user=None, password=None, tls=scrape.TlsOptions())
    assert "http://localhost:9464/metrics" == target.url


def test_credentials_in_the_url_are_used_and_not_shown():
    """``user:pass@`` becomes the Authorization header and leaves the displayed URL."""
    target = scrape.endpoint(
        "http://me:s%3Dcret@127.0.0.1:1/metrics", user=None, password=None, tls=scrape.TlsOptions()
    )
    assert ("http://127.0.0.1:1/metrics", "Basic bWU6cz1jcmV0") == (target.url, target.authorization)


def test_user_option_takes_the_password_given():
    """``--user`` with a password from a file or the environment overrides the URL's credentials."""
    target = scrape.endpoint("http://a:b@127.0.0.1:1/", user="me", password="pw", tls=scrape.TlsOptions())
    assert "Basic bWU6cHc=" == target.authorization


def test_a_user_without_password_is_a_usage_error():
    """``--user`` and no password anywhere: one line naming where the password comes from."""
    with pytest.raises(errors.TopError) as caught:
        scrape.endpoint("http://127.0.0.1:1/", user="me", password=None, tls=scrape.TlsOptions())
    assert (errors.USAGE, True) == (caught.value.exit_code, cli.PASSWORD_VARIABLE in caught.value.message)


def test_tls_options_need_https():
    """``--cacert`` with an http:// URL is a usage error."""
    with pytest.raises(errors.TopError) as caught:
        scrape.endpoint("http://127.0.0.1:1/", user=None, password=None, tls=scrape.TlsOptions(cacert="ca.pem"))
    assert errors.USAGE == caught.value.exit_code


def test_password_file_first_line_wins_over_the_environment(tmp_path):
    """The password file's first line, without its newline, is used even when the variable is set."""
    path = tmp_path / "pw"
    path.write_text("from-file\nignored\n")
    args = argparse.Namespace(password_file=str(path))
    assert "from-file" == cli.password(args, {cli.PASSWORD_VARIABLE: "from-env"})


def test_password_from_the_environment():
    """Without a file the variable is the password."""
    assert "from-env" == cli.password(argparse.Namespace(password_file=None), {cli.PASSWORD_VARIABLE: "from-env"})


def test_bad_option_exits_1(capsys):
    """An unknown option exits with the usage code 1, not 2 (which means unreachable)."""
    with pytest.raises(SystemExit) as caught:
        main(["top", "--no-such-option"])
    assert errors.USAGE == caught.value.code


def test_without_rich_top_says_how_to_install_it_and_help_still_works() -> None:
    """rich is an optional dependency (the `top` extra): a server's installation may not have it."""
    import subprocess
    import sys

    hide_rich = (
        "import sys; sys.modules['rich'] = None\n"
        "from otel_gunicorn.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    top = subprocess.run(
        [sys.executable, "-c", hide_rich, "top", "--once"], capture_output=True, text=True, timeout=60, check=False
    )
    helped = subprocess.run(
        [sys.executable, "-c", hide_rich, "top", "--help"], capture_output=True, text=True, timeout=60, check=False
    )

    needs_rich = (
        "otel-gunicorn top needs rich: pip install 'rich>=13' "
        "(or otel_gunicorn with its top extra: pip install '/path/to/otel-gunicorn[top]')\n"
    )
    assert (errors.USAGE, needs_rich, "") == (
        top.returncode,
        top.stderr,
        top.stdout,
    )
    assert 0 == helped.returncode and "--password-file" in helped.stdout


# ---------------------------------------------------------------- routes


def test_routes_are_read_per_template_with_the_404s_apart():
    """The routes capture: 40 under the items template, 10 under health, 5 without a route; capacity 2 workers."""
    scrape = model.parse(ROUTES)
    counts = {route: series.duration.count for route, series in scrape.routes.items()}
    assert ({"/items/<int:item_id>": 40.0, "/health": 10.0, "": 5.0}, 2.0) == (counts, scrape.capacity)


def test_once_prints_the_routes_table_since_the_server_started():
    """A single snapshot: each route's requests and p99 since the server started, no rate and no share yet."""
    text = rendered(Watch("http://127.0.0.1:9464/metrics", None).observe(model.parse(ROUTES), 0.0, WALL), width=120)
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["/items/<int:item_id>"], ["(no"])]
    assert "Routes (since the server started)" in text
    assert [["/items/<int:item_id>", "40", "—", "8", "ms", "0.0", "%", "—"], ["(no", "route)", "5"]] == [
        rows[0],
        rows[1][:3],
    ]


def route_scrape(reports: float, items: float, items_seconds: float, failed: float) -> Scrape:
    """Two workers' endpoint: ``items`` requests of /items (``failed`` of them failed) served in ``items_seconds``."""
    routes = {"/items": model.RouteSeries(histogram((0.1,), (items, 0)), items_seconds, failed)}
    return Scrape((), (), None, 4.0, histogram((0.1,), (items, 0)), None, reports, routes, 4.0)


def test_routes_over_the_window_have_rate_errors_and_capacity_share():
    """Over a 5 s window: 50 requests (10/s), 5 failed, 10 s of serving out of 4 x 5 s of capacity: a half."""
    history = tuple(
        rates.Sample(route_scrape(*values), at)
        for at, values in ((0.0, (0, 0, 0, 0)), (1.0, (4, 10, 2, 0)), (6.0, (8, 60, 12, 5)))
    )
    row = rates.compare(history, history[0].scrape).routes[0]
    assert ("/items", 50.0, 10.0, 0.1, 0.5) == (row.route, row.requests, row.rate, row.error_ratio, row.share)


def test_the_routes_table_keeps_the_largest_shares():
    """More routes than the table shows: the ones with the largest capacity share, largest first."""
    routes = {
        f"/r{i}": model.RouteSeries(histogram((0.1,), (1, 0)), float(i), 0.0) for i in range(rates.ROUTES_SHOWN + 5)
    }
    before = {route: model.RouteSeries(histogram((0.1,), (0, 0)), 0.0, 0.0) for route in routes}
    start = rates.Sample(Scrape((), (), None, None, None, None, 0, before, 1.0), 0.0)
    end = rates.Sample(Scrape((), (), None, None, None, None, 1, routes, 1.0), 1.0)
    shown = [row.route for row in rates.route_rows(end.scrape, rates.Window(start, end))]
    assert [f"/r{i}" for i in range(rates.ROUTES_SHOWN + 4, 4, -1)] == shown


def test_a_route_without_requests_in_the_window_is_left_out():
    """A route seen before but not served in the window has no row (nor has a server with no request yet)."""
    history = tuple(
        rates.Sample(route_scrape(*values), at) for at, values in ((0.0, (0, 5, 1, 0)), (1.0, (4, 5, 1, 0)))
    )
    assert ((), ()) == (
        rates.route_rows(history[-1].scrape, rates.Window(*history)),
        rates.route_rows(route_scrape(0, 0, 0, 0), None),
    )


@pytest.mark.parametrize(("height", "routes_left"), [(40, 3), (30, 1), (24, 0)])
def test_a_short_terminal_drops_routes_before_the_status_line(height: int, routes_left: int) -> None:
    """The live screen crops at the terminal's height: fit() gives way on routes (the least busy first), the table
    goes when not even one fits, and the exits and status line stay on screen."""
    frame = Watch("http://127.0.0.1:9464/metrics", 1.0).observe(model.parse(ROUTES), 0.0, WALL)
    console = Console(width=120, height=height, record=True, file=io.StringIO())
    console.print(view.fit(frame, console))
    text = console.export_text()
    left = [route for route in ("/items/<int:item_id>", "/health", "(no route)") if route in text]
    assert (height >= len(text.splitlines()), left, "refreshing every 1 s" in text) == (
        True,
        ["/items/<int:item_id>", "/health", "(no route)"][:routes_left],
        True,
    )


# ---------------------------------------------------------------- worker health: memory and CPU per slot


def test_memory_and_cpu_time_per_slot_and_the_arbiters_memory():
    """Each slot's resident memory and CPU seconds (both modes); the series without a slot is the arbiter's."""
    scrape = model.parse(HEALTH)
    assert [("0", 36245504.0, 0.01), ("1", 141819904.0, 0.68)] == [
        (row.slot, row.memory, pytest.approx(row.cpu_seconds)) for row in scrape.slots
    ]
    assert (44208128.0, 12.0) == (scrape.arbiter_memory, scrape.process_reads)


def cpu_scrape(reads: float, cpu: dict[str, float]) -> Scrape:
    slots = tuple(
        model.SlotRow(slot, 0.0, None, None, None, None, None, None, 1e8, seconds) for slot, seconds in cpu.items()
    )
    return Scrape(slots, (), None, None, None, None, process_reads=reads)


def test_cpu_is_a_share_of_a_core_over_rounds_of_reads_at_least_ten_seconds_apart():
    """Rounds seen at 1 s, 6 s and 11 s (reads 3 each): slot 0 used 5 s of CPU in the 10 s between the first and the
    last, slot 1 none."""
    history = [
        rates.Sample(cpu_scrape(reads, {"0": used, "1": 0.5}), at)
        for at, reads, used in ((0.0, 3, 1.0), (1.0, 6, 2.0), (6.0, 9, 4.5), (11.0, 12, 7.0), (12.0, 12, 7.0))
    ]
    assert {"0": 0.5, "1": 0.0} == rates.compare(history, history[0].scrape).cpu


def test_cpu_is_unknown_before_two_rounds_of_reads():
    """One round seen since top started: no share yet, shown as a dash."""
    watch = Watch("http://x/metrics", 1.0)
    frames = [watch.observe(cpu_scrape(reads, {"0": 1.0}), at, WALL) for at, reads in ((0.0, 3), (1.0, 6), (2.0, 6))]
    assert {} == frames[-1].rates.cpu
    [row] = [line.split() for line in rendered(frames[-1], width=120).splitlines() if line.split()[:1] == ["0"]]
    assert ["95", "MiB", "—"] == row[-3:]


def steady_cpu(phase: float, period: float, cores: float, at: float) -> Scrape:
    """What the endpoint shows at ``at`` when the arbiter reads every ``period`` s from ``phase`` on, and the slot
    uses ``cores`` all along: its CPU time as of the latest round (in /proc's 10 ms ticks)."""
    rounds = math.floor((at - phase) / period) + 1 if at >= phase else 0
    last = phase + (rounds - 1) * period
    used = math.floor(cores * last * 100) / 100 if rounds else 0.0
    return cpu_scrape(3.0 * rounds, {"0": used})


@pytest.mark.parametrize("phase", [0.3, 2.7, 4.9])
def test_steady_cpu_reads_true_on_every_refresh_at_the_default_intervals(phase):
    """Reads every 5 s, refreshes every 1 s, a slot using 60 % of a core: once there is a window (two rounds more than
    10 s apart), every frame reads within 12 % of 60 % (not 0, 0, 0, 0, 300 % as differencing refreshes reads)."""
    watch = Watch("http://x/metrics", 1.0)
    read = [
        watch.observe(steady_cpu(phase, 5.0, 0.6, second + 0.05), second + 0.05, WALL).rates.cpu.get("0")
        for second in range(60)
    ]
    assert all(r is not None and abs(r - 0.6) <= 0.12 * 0.6 for r in read[16:]), read


def test_render_shows_memory_and_cpu_per_slot_and_the_arbiters_memory():
    """The worker table ends with each slot's memory in MiB and its CPU share; the summary gives the arbiter's."""
    watch = Watch("http://127.0.0.1:9464/metrics", None)
    frame = watch.observe(model.parse(HEALTH), 0.0, WALL)
    frame = dataclasses.replace(frame, rates=dataclasses.replace(frame.rates, cpu={"1": 0.253}))
    text = rendered(frame, width=120)
    first, second = [line.split() for line in text.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert (["35", "MiB", "—"], ["135", "MiB", "25.3", "%"]) == (first[-3:], second[-4:])
    assert "arbiter 42 MiB" in text
