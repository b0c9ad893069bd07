"""Echo's gRPC face: the servicer, status mapping, health, reflection, drain.

``build_server`` is the production factory used by the CLI and by tests.
"""

from echo_service.server._app import SERVICE_NAME, EchoServer, build_server

__all__ = ["SERVICE_NAME", "EchoServer", "build_server"]
