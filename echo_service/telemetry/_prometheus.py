"""A small HTTP server for Prometheus to scrape ``/metrics`` from.

prometheus_client's own server polls for its stop every half second and
answers any path; this one stops within a tenth of a second, answers only
``/metrics`` (and ``/`` for convenience), and never writes access lines to
stderr, where Echo's structured logs go.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["MetricsServer"]

logger = logging.getLogger(__name__)

_PATHS = frozenset({"/metrics", "/"})


class _Server(ThreadingHTTPServer):
    # Scrape handlers are short; the server does not wait for them on close.
    daemon_threads = True


class MetricsServer:
    """Serves one registry over HTTP on a thread it owns.

    ``start`` binds at once, so a taken port fails the caller's start;
    ``stop`` shuts the loop down, closes the socket and joins the thread.
    """

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in _PATHS:
                    self.send_error(404, "only /metrics is served here")
                    return
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        _Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._httpd = _Server((host, port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="echo-metrics-http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout)
        self._httpd.server_close()
