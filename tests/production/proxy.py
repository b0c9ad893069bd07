"""A real nginx in front of a gRPC server, for tests.

``NginxProxy(upstream_port)`` writes a minimal nginx.conf under a fresh
temporary prefix: one HTTP/2 cleartext listener on a free loopback port, an
``echo_backend`` upstream pointing at the given port, the shipped
``deploy/nginx/snippets/echo-grpc.conf`` location included verbatim and the
shipped site's stream limit, so the tests exercise the settings operators
install. nginx runs in the foreground
(``daemon off;``) as a child process that ``stop`` ends and reaps.

Run as root (as CI is), nginx's workers switch to ``nobody``; every path
they touch lives under the prefix, which is world-readable.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy" / "nginx" / "snippets" / "echo-grpc.conf"
SITE = ROOT / "deploy" / "nginx" / "echo.conf"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_ATTEMPTS = 3  # a free port found may be taken before nginx binds it


class ProxyError(RuntimeError):
    """nginx is missing, or did not start; the message holds its error log."""


def nginx_binary() -> str:
    """The nginx executable; ``ProxyError`` says how to install it if absent."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise ProxyError(
            "nginx is not installed; scripts/install_system.sh installs it "
            "(apt-get install nginx)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shipped_max_streams() -> int:
    """``http2_max_concurrent_streams`` of the shipped site, used here too."""
    found = re.search(
        r"^\s*http2_max_concurrent_streams\s+(\d+);", SITE.read_text(), re.M
    )
    if found is None:
        raise ProxyError(f"{SITE} sets no http2_max_concurrent_streams")
    return int(found[1])


def _user_line() -> str:
    if os.geteuid() != 0:
        return ""  # workers keep our own user; a `user` line would be ignored
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    return f"user nobody {group};"


class NginxProxy:
    """nginx proxying gRPC from ``127.0.0.1:port`` to ``upstream_port``.

    Args:
        upstream_port: the gRPC server's port on ``upstream_host``.
        snippet: the location file to include; the shipped one by default.
        server_extra: more directives for the ``server`` block.
        max_streams: concurrent streams per client connection; the shipped
            site's value by default.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        snippet: Path = SNIPPET,
        server_extra: str = "",
        max_streams: int | None = None,
    ) -> None:
        self._upstream = f"{upstream_host}:{upstream_port}"
        self._snippet = snippet
        self._server_extra = server_extra
        self._max_streams = (
            shipped_max_streams() if max_streams is None else max_streams
        )
        self._binary = nginx_binary()
        self.prefix = Path(tempfile.mkdtemp(prefix="echo-nginx-"))
        self.prefix.chmod(0o755)
        self.error_log_path = self.prefix / "error.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._final_log: str | None = None
        self.port = 0

    @property
    def target(self) -> str:
        """Where a client dials the proxy."""
        return f"127.0.0.1:{self.port}"

    def error_log(self) -> str:
        """nginx's error log so far; after ``stop``, as it was at the end."""
        if self._final_log is not None:
            return self._final_log
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _config(self, port: int) -> Path:
        prefix = self.prefix
        text = f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {self.error_log_path} info;
{_user_line()}
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream echo_backend {{
        server {self._upstream};
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        http2_max_concurrent_streams {self._max_streams};
        {self._server_extra}
        include {self._snippet};
    }}
}}
"""
        path = prefix / "nginx.conf"
        path.write_text(text)
        return path

    def check(self) -> None:
        """``nginx -t`` on the generated config; ``ProxyError`` if invalid."""
        config = self._config(_free_port())
        result = subprocess.run(
            [
                self._binary,
                "-t",
                "-p",
                str(self.prefix),
                "-c",
                str(config),
                "-e",
                str(self.error_log_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProxyError(f"nginx -t failed:\n{result.stderr}")

    def start(self) -> NginxProxy:
        for _ in range(_ATTEMPTS):
            port = _free_port()
            config = self._config(port)
            process = subprocess.Popen(
                [
                    self._binary,
                    "-p",
                    str(self.prefix),
                    "-c",
                    str(config),
                    "-e",
                    str(self.error_log_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_listening(process, port):
                self._process, self.port = process, port
                return self
            process.wait()
            if "Address already in use" not in self.error_log():
                break
        raise ProxyError(f"nginx did not start:\n{self.error_log()}")

    @staticmethod
    def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
        """Wait until nginx accepts on ``port``, or has exited (False)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                pass
            try:
                process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            return False
        process.kill()
        return False

    def stop(self) -> None:
        """Fast shutdown (SIGTERM: open streams are cut), reap, clean up."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._final_log = self.error_log()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
