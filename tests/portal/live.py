"""The real app served on a free loopback port for the browser tests, in a
thread of the test process, stopped when the block ends."""

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server


@contextmanager
def served(app):
    """Yields the base URL (http://127.0.0.1:PORT)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
