"""A Django application configured in code (no settings module): ``items/<int:item_id>``, ``health``, ``ready``, and
``v1/items/<int:item_id>`` through an ``include("v1/", ...)``. ``application`` is Django's WSGI handler,
``asgi_application`` its ASGI handler, both over the same URLs."""

from django.conf import settings
from django.http import HttpResponse
from django.urls import include, path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="routes-test-only",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)


def item(_request: object, item_id: int) -> HttpResponse:
    return HttpResponse(f"{item_id}\n")


def health(_request: object) -> HttpResponse:
    return HttpResponse("ok\n")


urlpatterns = [
    path("items/<int:item_id>", item),
    path("health", health),
    path("ready", health),
    path("v1/", include([path("items/<int:item_id>", item)])),
]

from django.core.asgi import get_asgi_application  # noqa: E402 - after settings.configure
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
asgi_application = get_asgi_application()
