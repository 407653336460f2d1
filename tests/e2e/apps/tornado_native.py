"""Test application: a ``tornado.web.Application``, which gunicorn's tornado worker serves as it is and otel_gunicorn
cannot wrap (it is neither WSGI nor ASGI): that worker measures no requests."""

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("ok\n")


app = tornado.web.Application([(r"/ready", Hello), (r"/", Hello)])
