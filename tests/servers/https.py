"""Serving a test's own Flask app (the OAuth2 and Microsoft Graph stand-ins) over HTTPS on
loopback with the session's throwaway CA, in a thread, without a log line per request."""

from __future__ import annotations

import ssl
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from .process import HOST
from .tls import TlsFiles


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # a line per request drowns the test output
        pass


class HttpsApp:
    def __init__(self, app, tls: TlsFiles, port: int):
        self.app, self.tls, self.port = app, tls, port
        self._server = None

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self._server = make_server(HOST, self.port, self.app, threaded=True, ssl_context=context,
                                   request_handler=_QuietHandler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
