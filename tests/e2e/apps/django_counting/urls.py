"""``/`` counts, ``/ready`` answers the harness's readiness probe."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from opentelemetry import metrics

hits = metrics.get_meter("django_counting").create_counter("app.hits", unit="{hit}")


def index(request: HttpRequest) -> HttpResponse:
    hits.add(1)
    return HttpResponse("ok\n")


def ready(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ready\n")


urlpatterns = [path("", index), path("ready", ready)]
